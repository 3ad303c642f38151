// Runs graphql-http's GraphQL-over-HTTP audit suite (every MUST and SHOULD audit) against a live server.
// Usage: TAILTRAIL_URL=http://127.0.0.1:8000/graphql [TAILTRAIL_TOKEN=…] node http_audit.js
// Prints one JSON line per audit: {"id", "name", "status", "reason"}; exits 1 if any audit did not pass.
const { auditServer } = require('graphql-http');

const url = process.env.TAILTRAIL_URL;
const token = process.env.TAILTRAIL_TOKEN;

// With a token, every request the suite sends carries it, as a signed-in client's would.
const fetchFn = token
  ? (input, init = {}) => {
      const headers = new Headers(init.headers);
      headers.set('authorization', `Bearer ${token}`);
      return fetch(input, { ...init, headers });
    }
  : fetch;

auditServer({ url, fetchFn }).then(
  (results) => {
    for (const result of results) {
      console.log(JSON.stringify({ id: result.id, name: result.name, status: result.status, reason: result.reason }));
    }
    process.exitCode = results.every((result) => result.status === 'ok') ? 0 : 1;
  },
  (error) => {
    console.error(error);
    process.exitCode = 2;
  },
);
