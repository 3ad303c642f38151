#!/bin/sh
# Refreshes the vendored GraphiQL files in this directory from the npm registry (README.md here says what they are).
#
#   sh web/graphiql/fetch.sh
#
# Needs npm. To move to other versions, change them below, run this, then put the sha384 sums it prints into the
# integrity attributes of index.html (tests/test_graphiql_offline.py checks that they match the files).
set -eu

REACT=18.2.0      # react and react-dom: the UMD production builds GraphiQL runs on (window.React, window.ReactDOM)
GRAPHIQL=3.8.3    # graphiql: its UMD bundle (window.GraphiQL; graphql-js, CodeMirror and more inside)
GRAPHQL_WS=5.16.2 # graphql-ws: its client's UMD build (window.graphqlWs), for subscriptions (6.x has no UMD build)

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

npm pack --silent "react@$REACT" "react-dom@$REACT" "graphiql@$GRAPHIQL" "graphql-ws@$GRAPHQL_WS" >/dev/null
for tarball in "react-$REACT" "react-dom-$REACT" "graphiql-$GRAPHIQL" "graphql-ws-$GRAPHQL_WS"; do
  mkdir "${tarball%-*}"
  tar xzf "$tarball.tgz" -C "${tarball%-*}" --strip-components=1
done
cp react/umd/react.production.min.js react-dom/umd/react-dom.production.min.js "$here/"
cp graphiql/graphiql.min.js graphiql/graphiql.min.css graphql-ws/umd/graphql-ws.min.js "$here/"
cp react/LICENSE "$here/LICENSE.react"
cp react-dom/LICENSE "$here/LICENSE.react-dom"
cp graphiql/LICENSE "$here/LICENSE.graphiql"
cp graphql-ws/LICENSE.md "$here/LICENSE.graphql-ws"

# graphiql.min.js bundles its dependencies without their licence texts: collect them from the packages the bundle
# names (webpack module paths "../../../node_modules/<package>/..."), as npm resolves them for this graphiql.
bundled=$(grep -o '"\.\./\.\./\.\./node_modules/[^"]*' graphiql/graphiql.min.js |
  sed -E 's#^"\.\./\.\./\.\./node_modules/##; s#^(@[^/]+/[^/]+|[^@/][^/]*)/.*#\1#' | sort -u)
mkdir tree
cd tree
npm init -y >/dev/null
npm install --silent --no-audit --no-fund --ignore-scripts "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" \
  "graphql-ws@$GRAPHQL_WS"
node - "$here/THIRD_PARTY_LICENSES.txt" $bundled <<'EOF'
// Writes the licence of each named package found under node_modules (installing any that is not there first).
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");
const [out, ...names] = process.argv.slice(2);

function find(name, dir = "node_modules") {
  const direct = path.join(dir, name);
  if (fs.existsSync(path.join(direct, "package.json"))) return direct;
  for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const scopes = entry.startsWith("@") ? fs.readdirSync(path.join(dir, entry)).map((e) => path.join(entry, e)) : [entry];
    for (const pkg of scopes) {
      const nested = path.join(dir, pkg, "node_modules");
      const found = fs.existsSync(nested) && find(name, nested);
      if (found) return found;
    }
  }
  return null;
}

const missing = names.filter((name) => !find(name));
if (missing.length) {
  execFileSync("npm", ["install", "--silent", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save", ...missing]);
}
let text =
  "The graphiql.min.js bundle (graphiql, its own @graphiql/* and graphql-language-service packages, and the\n" +
  "third-party packages below) carries no licence texts of its own; these are the packages' licences.\n";
const own = ["graphiql", "@graphiql/react", "@graphiql/toolkit", "graphql-language-service", "codemirror-graphql"];
for (const name of new Set([...own, ...names])) {
  const dir = find(name);
  if (!dir) throw new Error(`no package ${name}`);
  const meta = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
  const file = fs.readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
  text += `\n${"=".repeat(78)}\n${meta.name}@${meta.version} (${meta.license})\n${"=".repeat(78)}\n\n`;
  if (file) {
    text += fs.readFileSync(path.join(dir, file), "utf8").trim() + "\n";
  } else {
    const author = typeof meta.author === "object" ? meta.author.name : meta.author;
    const repository = typeof meta.repository === "object" ? meta.repository.url : meta.repository;
    text += `The package ships no licence file; its package.json says: license ${meta.license}`;
    text += `${author ? `, author ${author}` : ""}${repository ? `, repository ${repository}` : ""}.\n`;
  }
}
fs.writeFileSync(out, text);
EOF
cd "$here"

echo "integrity attributes for index.html:"
for file in react.production.min.js react-dom.production.min.js graphiql.min.js graphiql.min.css graphql-ws.min.js; do
  echo "  $file sha384-$(openssl dgst -sha384 -binary "$file" | openssl base64 -A)"
done
