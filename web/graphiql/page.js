// GraphiQL on this server's /graphql. index.html loads React, ReactDOM, GraphiQL (window.GraphiQL, with graphql-js as
// GraphiQL.GraphQL) and the graphql-ws client (window.graphqlWs) from this directory first.
//
// Queries and mutations go over HTTP POST, subscriptions over a WebSocket (graphql-transport-ws) on the same URL,
// both on the page's own origin. The headers typed in the Headers editor go with every HTTP request and, since a
// browser cannot set headers on a WebSocket, as the socket's connection_init payload, where the server takes
// {"Authorization": "Bearer <token>"} from.
"use strict";

const endpoint = new URL("/graphql", location.href);
const socketEndpoint = new URL(endpoint);
socketEndpoint.protocol = location.protocol === "https:" ? "wss:" : "ws:";

const overHttp = GraphiQL.createFetcher({ url: endpoint.href });

/** A subscription on a socket of its own, authenticated with `headers`, as the Observable GraphiQL shows results of.
 * The socket is not retried: a refused token (4403) shows at once rather than after the client's back-off. */
function overSocket(params, headers) {
  return {
    subscribe(observer) {
      const client = graphqlWs.createClient({ url: socketEndpoint.href, connectionParams: headers, retryAttempts: 0 });
      const stop = client.subscribe(params, {
        next: (result) => observer.next(result),
        error: (error) => {
          client.dispose();
          const closed = error instanceof CloseEvent ? `socket closed: ${error.code} ${error.reason}`.trim() : null;
          observer.error(closed ? new Error(closed) : error instanceof Event ? new Error("socket error") : error);
        },
        complete: () => {
          client.dispose();
          observer.complete();
        },
      });
      return {
        unsubscribe: () => {
          stop();
          client.dispose();
        },
      };
    },
  };
}

/** HTTP or the socket, by the operation run. The document is parsed here: GraphiQL parses the editor's text 100 ms
 * after each change, so a Run right after a paste would otherwise go by the previous document. */
function fetcher(params, options) {
  let document;
  try {
    document = GraphiQL.GraphQL.parse(params.query);
  } catch {
    return overHttp(params, options); // the server reports the syntax error
  }
  const operations = document.definitions.filter((d) => d.kind === "OperationDefinition");
  const operation = operations.find((o) => o.name?.value === params.operationName) ?? operations[0];
  const run = { ...params, operationName: operation?.name?.value ?? null };
  if (operation?.operation === "subscription") {
    return overSocket(run, options?.headers ?? {});
  }
  return overHttp(run, { ...options, documentAST: document });
}

const DEFAULT_QUERY = `# TailTrail Realtime
#
# 1. In Headers below, set {"Authorization": "Bearer <token>"}
#    (\`make run\` prints a token for each demo user).
#    Queries and mutations send it as an HTTP header; a subscription
#    sends it as its WebSocket's connection_init payload.
# 2. Run (Ctrl-Enter). This subscription shows each event of all your
#    chats as it arrives (the newest one in the result pane). A query
#    to try instead: { me { id email } }

subscription {
  chatEvents {
    __typename
    ... on NewMessage { chatId message { seq content sender { email } } }
    ... on MessagesRead { chatId userId lastReadSeq }
    ... on UserTyping { chatId userId }
    ... on ChatCreated { chatId name memberIds }
    ... on GlobalNotification { payload }
  }
}
`;

ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: DEFAULT_QUERY,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: true,
    defaultEditorToolsVisibility: "headers",
    inputValueDeprecation: true,
  }),
);
