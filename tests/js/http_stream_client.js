// Subscribes to chatEvents over HTTP with a client library nobody here wrote, and prints each event as one JSON
// line: {"typename", "cursor", "content"} (content: a message's text, or a notification's payload as JSON).
//   TRANSPORT=sse        graphql-sse's client, distinct-connections mode (text/event-stream)
//   TRANSPORT=multipart  Apollo Client's HttpLink (multipart/mixed;subscriptionSpec=1.0)
// Usage: TRANSPORT=… TAILTRAIL_URL=http://127.0.0.1:8000/graphql TAILTRAIL_TOKEN=… [AFTER=<cursor>] node http_stream_client.js
// Errors and the end of the stream are printed too ({"error": …} / {"complete": true}).
const url = process.env.TAILTRAIL_URL;
const token = process.env.TAILTRAIL_TOKEN;
const after = process.env.AFTER || null;

const query = `subscription Events($after: String) {
  chatEvents(after: $after) {
    __typename
    ... on NewMessage { cursor message { content } }
    ... on GlobalNotification { cursor payload }
    ... on ResyncRequired { reason }
  }
}`;

function print(event) {
  const content = event.message ? event.message.content : event.payload !== undefined ? JSON.stringify(event.payload) : null;
  console.log(JSON.stringify({ typename: event.__typename, cursor: event.cursor ?? null, content }));
}

function viaSSE() {
  const { createClient } = require('graphql-sse');
  const client = createClient({ url, headers: { Authorization: `Bearer ${token}` }, retryAttempts: 0 });
  client.subscribe(
    { query, variables: { after } },
    {
      next: (result) => (result.errors ? console.log(JSON.stringify({ error: result.errors })) : print(result.data.chatEvents)),
      error: (error) => console.log(JSON.stringify({ error: String(error && error.message ? error.message : error) })),
      complete: () => console.log(JSON.stringify({ complete: true })),
    },
  );
}

function viaMultipart() {
  const { ApolloClient, HttpLink, InMemoryCache, gql } = require('@apollo/client');
  const client = new ApolloClient({
    link: new HttpLink({ uri: url, headers: { Authorization: `Bearer ${token}` } }),
    cache: new InMemoryCache(),
  });
  client.subscribe({ query: gql(query), variables: { after } }).subscribe({
    next: (result) => (result.error ? console.log(JSON.stringify({ error: result.error.message })) : print(result.data.chatEvents)),
    error: (error) => console.log(JSON.stringify({ error: error.message })),
    complete: () => console.log(JSON.stringify({ complete: true })),
  });
}

if (process.env.TRANSPORT === 'sse') viaSSE();
else if (process.env.TRANSPORT === 'multipart') viaMultipart();
else throw new Error('TRANSPORT: sse or multipart');
console.log(JSON.stringify({ started: true }));
