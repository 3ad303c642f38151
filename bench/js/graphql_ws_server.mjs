// The Node peer: Node's reference GraphQL subscription server, graphql-ws's `useServer` on a `ws` server with
// graphql-js and graphql-subscriptions' in-process PubSub, the way graphql-ws's README sets it up.
//
// Operations (the Strawberry peer's, bench/strawberry_server.py):
//   mutation sendMessage(chatId, content): Message    publishes the message to the chat's topic
//   subscription chatEvents(chatId): Message          every message of the chat
// over graphql-transport-ws at /graphql; GET /healthz answers "ok".
//
// node bench/js/graphql_ws_server.mjs --port P [--host H]

import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { buildSchema } from 'graphql';
import { PubSub } from 'graphql-subscriptions';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';

const schema = buildSchema(`
  type Message {
    id: ID!
    chatId: ID!
    content: String!
    sender: String!
    createdAt: String!
  }
  type Query {
    health: String!
  }
  type Mutation {
    sendMessage(chatId: ID!, content: String!): Message!
  }
  type Subscription {
    chatEvents(chatId: ID!): Message!
  }
`);

// One listener per subscription on a chat's topic: a 1,000-member chat has 1,000 (no leak to warn about).
const emitter = new EventEmitter();
emitter.setMaxListeners(0);
const pubsub = new PubSub({ eventEmitter: emitter });

const topic = (chatId) => `chat:${chatId}`;

// graphql-js's default resolvers: a root field's value is the root object's property of that name, and a
// subscription field is resolved on each event the subscription's iterator yields.
const rootValue = {
  health: () => 'ok',
  sendMessage: async ({ chatId, content }) => {
    const message = { id: randomUUID(), chatId, content, sender: 'bench', createdAt: new Date().toISOString() };
    await pubsub.publish(topic(chatId), { chatEvents: message });
    return message;
  },
  chatEvents: ({ chatId }) => pubsub.asyncIterableIterator(topic(chatId)),
};

function main() {
  const { values } = parseArgs({
    options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string' } },
  });
  if (!values.port) {
    console.error('usage: node graphql_ws_server.mjs --port P [--host H]');
    process.exit(2);
  }
  const http = createServer((request, response) => {
    const found = request.url === '/healthz';
    response.writeHead(found ? 200 : 404, { 'content-type': 'text/plain' });
    response.end(found ? 'ok' : 'not found');
  });
  // Per-message deflate off, as on every server of the bench (it is ws's default on a server, too).
  const wsServer = new WebSocketServer({ server: http, path: '/graphql', perMessageDeflate: false });
  useServer({ schema, roots: { query: rootValue, mutation: rootValue, subscription: rootValue } }, wsServer);
  http.listen(Number(values.port), values.host);
  const stop = () => {
    wsServer.close();
    http.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
