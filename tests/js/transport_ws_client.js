// subscriptions-transport-ws (npm), the client of the older `graphql-ws` subprotocol: a query, a mutation and a
// chatEvents subscription on one socket. Prints one JSON line per thing that happens:
//   {"connected": true} | {"connection_error": …} | {"query": …} | {"mutation": …} | {"event": …} | {"closed": code}
// Usage: TAILTRAIL_URL=ws://127.0.0.1:8000/graphql TAILTRAIL_TOKEN=… [CHAT_ID=…] node transport_ws_client.js
const WebSocket = require('ws');
const { SubscriptionClient } = require('subscriptions-transport-ws');

const print = (line) => console.log(JSON.stringify(line));

// The socket the client makes, watched for its close code.
class Watched extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('close', (event) => print({ closed: event.code }));
  }
}

const client = new SubscriptionClient(
  process.env.TAILTRAIL_URL,
  {
    connectionParams: { Authorization: `Bearer ${process.env.TAILTRAIL_TOKEN}` },
    connectionCallback: (error) => print(error ? { connection_error: error } : { connected: true }),
  },
  Watched,
);

function once(request) {
  return new Promise((resolve, reject) => {
    client.request(request).subscribe({ next: resolve, error: reject });
  });
}

async function main() {
  const me = await once({ query: '{ me { email } }' });
  print({ query: me });
  if (process.env.CHAT_ID) {
    const sent = await once({
      query: 'mutation($c: ID!, $t: String!) { sendMessage(chatId: $c, content: $t) { content } }',
      variables: { c: process.env.CHAT_ID, t: 'from subscriptions-transport-ws' },
    });
    print({ mutation: sent });
  }
  client
    .request({ query: 'subscription { chatEvents { __typename ... on NewMessage { message { content } } ... on GlobalNotification { payload } } }' })
    .subscribe({
      next: (result) => print({ event: result }),
      error: (error) => print({ error: String(error) }),
    });
  print({ subscribed: true });
}

main().catch((error) => print({ error: String(error && error.message ? error.message : JSON.stringify(error)) }));
