"""GraphQL names in the documentation (README.md and docs/) exist in the schema (schema.graphql).

- Every ```graphql block is a document that validates against the schema; a block of fragments alone is validated
  without the rule that each fragment be used.
- So is every GraphQL document the other code blocks carry: gql`…` and `query: `…`` (JavaScript), gql("…") with
  any Python string quotes, and the "query" of a captured JSON frame.
- In the prose, a backticked `PascalCase` word names a type of the schema, `Type.field` a field of it, and
  `rootField(arg, …)` arguments of that query, mutation or subscription field; NOT_GRAPHQL lists the PascalCase
  words of the documentation that are not GraphQL names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    NoUnusedFragmentsRule,
    OperationDefinitionNode,
    build_schema,
    parse,
    specified_rules,
    validate,
)

from tests.support import ROOT

SCHEMA = build_schema((ROOT / "schema.graphql").read_text(encoding="utf-8"))
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# PascalCase words the documentation puts in backticks that are not GraphQL names (none may be one).
NOT_GRAPHQL = {
    "Authorization",  # HTTP headers
    "Accept",
    "Content-Type",
    "Bearer",  # the HTTP authentication scheme
    "WebSocket",  # the browser's (and Node.js's) WebSocket class
    "Observable",  # RxJS's, which Apollo Client 4 returns (docs/clients.md)
    "ApolloLink",  # Apollo Client classes (docs/clients.md)
    "GraphQLWsLink",
    "HttpLink",
    "WebsocketsTransport",  # the Python gql client's transport (docs/clients.md)
    "Subscriber",  # the test suite's GraphQL client, tests/support.py
    "Hub",  # the product's Python classes that docs/architecture.md walks through
    "Relay",
    "StreamWriter",
    "Queued",
    "Transport",
}

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
TYPE_NAME = re.compile(r"[A-Z][a-z][A-Za-z0-9]*")
TYPE_FIELD = re.compile(r"(?P<type>[A-Z][a-z][A-Za-z0-9]*)\.(?P<field>[A-Za-z_]\w*)")
FIELD_CALL = re.compile(r"(?P<field>[a-z]\w*)\((?P<args>[^()]*)\)")
ARGUMENT = re.compile(r"(?P<name>[A-Za-z_]\w*)\s*(?::\s*(?P<value>.*))?")
TYPE_REFERENCE = re.compile(r"\[?[A-Z]\w*!?\]?!?")
# GraphQL documents inside code: the group `document`, or `json` for a string literal that reads as JSON.
JS_DOCUMENTS = (
    re.compile(r"\bgql\s*`(?P<document>[^`]*)`"),  # Apollo Client's gql tag
    re.compile(r"\bquery:\s*`(?P<document>[^`]*)`"),  # { query: `…` } (graphql-ws and others)
    re.compile(r'\bquery:\s*(?P<json>"(?:[^"\\\n]|\\.)*")'),  # { query: "…" }
)
PY_DOCUMENTS = (re.compile(r"\bgql\(\s*(?P<quote>\"\"\"|'''|\"|')(?P<document>.*?)(?P=quote)\s*\)", re.S),)
SELECTS_EVENTS = re.compile(r"\bchatEvents\s*[({]")  # a selection of chatEvents, not `data.chatEvents`
JS = {"js", "javascript", "mjs", "ts", "typescript"}
PYTHON = {"python", "py"}


@dataclass
class Block:
    line: int
    language: str
    body: str


def split(markdown: str) -> tuple[list[Block], str]:
    """The fenced code blocks, and the prose with each block blanked out (line numbers kept)."""
    blocks = []
    for match in FENCE.finditer(markdown):
        line = markdown.count("\n", 0, match.start("body")) + 1
        blocks.append(Block(line, match["lang"].lower(), match["body"]))
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), markdown)
    return blocks, prose


def json_queries(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "query" and isinstance(item, str):
                yield item
            else:
                yield from json_queries(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_queries(item)


def documents_in(block: Block) -> Iterator[tuple[int, str]]:
    """(line, GraphQL document) for each document the block is or carries."""
    if block.language == "graphql":
        yield block.line, block.body
        return
    for pattern in JS_DOCUMENTS if block.language in JS else PY_DOCUMENTS if block.language in PYTHON else ():
        for match in pattern.finditer(block.body):
            line = block.line + block.body.count("\n", 0, match.start())
            groups = match.groupdict()
            yield line, json.loads(groups["json"]) if groups.get("json") else groups["document"]
    for offset, text in enumerate(block.body.splitlines()):
        if "{" in text and '"query"' in text:
            try:
                frame, _ = json.JSONDecoder().raw_decode(text, text.index("{"))  # what follows the object is left
            except ValueError:
                continue
            for query in json_queries(frame):
                yield block.line + offset, query


def document_problems(document: str, schema: GraphQLSchema) -> list[str]:
    if "${" in document:
        return ["a document built by interpolation cannot be checked: write it out"]
    try:
        ast = parse(document)
    except GraphQLError as error:
        return [error.message]
    rules = specified_rules
    if not any(isinstance(d, OperationDefinitionNode) for d in ast.definitions):
        rules = tuple(rule for rule in specified_rules if rule is not NoUnusedFragmentsRule)
    return [error.message for error in validate(schema, ast, rules)]


def root_field_arguments(schema: GraphQLSchema, name: str) -> dict[str, GraphQLArgument] | None:
    for root in (schema.query_type, schema.mutation_type, schema.subscription_type):
        if root is not None and name in root.fields:
            return dict(root.fields[name].args)
    return None


def span_problems(span: str, schema: GraphQLSchema) -> list[str]:
    """What is wrong with the GraphQL names one backticked span of prose uses."""
    if TYPE_NAME.fullmatch(span):
        if span not in NOT_GRAPHQL and span not in schema.type_map:
            return [f"`{span}` is not a type of the schema (not GraphQL? add it to NOT_GRAPHQL)"]
        return []
    if match := TYPE_FIELD.fullmatch(span):
        type_name, field = match["type"], match["field"]
        if type_name in NOT_GRAPHQL:
            return []
        graphql_type = schema.type_map.get(type_name)
        if graphql_type is None:
            return [f"`{span}`: {type_name} is not a type of the schema"]
        if not isinstance(graphql_type, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            return [f"`{span}`: {type_name} has no fields"]
        if field not in graphql_type.fields:
            return [f"`{span}`: {type_name} has no field {field}"]
        return []
    call = FIELD_CALL.fullmatch(span)
    arguments = root_field_arguments(schema, call["field"]) if call else None
    if call is None or arguments is None:
        return []  # not a query, mutation or subscription field (a function of some code, say)
    problems = []
    for item in filter(None, (part.strip() for part in call["args"].split(","))):
        argument = ARGUMENT.fullmatch(item)
        if argument is None:
            continue
        name, value = argument["name"], (argument["value"] or "").strip()
        if name not in arguments:
            problems.append(f"`{span}`: {call['field']} has no argument {name}")
        elif TYPE_REFERENCE.fullmatch(value) and value != str(arguments[name].type):
            problems.append(f"`{span}`: {call['field']}({name}:) is {arguments[name].type}, not {value}")
    return problems


def problems(markdown: str, schema: GraphQLSchema = SCHEMA) -> list[str]:
    """Every GraphQL name the Markdown text uses that the schema does not have, as `line N: what`."""
    blocks, prose = split(markdown)
    found = []
    for block in blocks:
        documents = list(documents_in(block))
        if (block.language in JS or block.language in PYTHON) and SELECTS_EVENTS.search(block.body) and not documents:
            found.append(f"line {block.line}: no GraphQL document found in a {block.language} block about chatEvents")
        for line, document in documents:
            found += [f"line {line}: {problem}" for problem in document_problems(document, schema)]
    for match in CODE_SPAN.finditer(prose):
        line = prose.count("\n", 0, match.start()) + 1
        found += [f"line {line}: {problem}" for problem in span_problems(match.group(1), schema)]
    return sorted(found, key=lambda problem: int(problem.split(":", 1)[0].removeprefix("line ")))


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_graphql_names_in_the_documentation_exist_in_the_schema(path: Path) -> None:
    assert problems(path.read_text(encoding="utf-8")) == []


def test_every_client_recipe_carries_a_document_that_is_checked() -> None:
    blocks, _ = split((ROOT / "docs" / "clients.md").read_text(encoding="utf-8"))
    recipes = [b for b in blocks if b.language in JS | PYTHON and SELECTS_EVENTS.search(b.body)]
    assert len(recipes) >= 4
    for block in recipes:
        assert any("chatEvents" in document for _, document in documents_in(block)), f"block at line {block.line}"


def test_no_allowed_word_is_a_graphql_name() -> None:
    assert NOT_GRAPHQL.isdisjoint(SCHEMA.type_map)


def test_a_stale_or_misspelt_name_is_reported() -> None:
    markdown = """
`chatEvents(after: String)` yields the union `ChatEvent`: `NewMessage`, `MemberAdded`, and `GlobalNotification.body`;
`sendMessage(chatId, text)` and `chatEvents(after: Int)`.

```graphql
subscription { chatEvents { ... on MemberRemoved { chatId } } }
```

```graphql
fragment Added on ChatMemberAdded { chatId userId addedBy }
fragment Gone on MemberRemoved { chatId }
```

```js
const EVENTS = gql`subscription { chatEvents { ... on NewMessage { message { text } } } }`;
client.subscribe({ query: "subscription { chatEvents { ... on UserLeft { who } } }" }, sink);
```

```python
EVENTS = gql("subscription { chatEvents { __typename ... on UserTyping { chatId typing } } }")
```

```text
→ {"id":"1","type":"subscribe","payload":{"query":"subscription { chatEvents { ... on Typing { chatId } } }"}}
```

```bash
curl -H "Authorization: Bearer $TOKEN" -d '{"query": "{ me { name } }"}' http://127.0.0.1:8000/graphql
```
"""
    expected = [
        "line 2: `MemberAdded` is not a type of the schema",
        "line 2: `GlobalNotification.body`: GlobalNotification has no field body",
        "line 3: `sendMessage(chatId, text)`: sendMessage has no argument text",
        "line 3: `chatEvents(after: Int)`: chatEvents(after:) is String, not Int",
        "line 6: Unknown type 'MemberRemoved'",
        "line 10: Unknown type 'MemberRemoved'",  # a block of fragments alone is checked too
        "line 15: Cannot query field 'text' on type 'Message'",
        "line 16: Cannot query field 'who' on type 'UserLeft'",
        "line 20: Cannot query field 'typing' on type 'UserTyping'",
        "line 24: Unknown type 'Typing'",
        "line 28: Cannot query field 'name' on type 'User'",
    ]
    reported = problems(markdown)
    assert len(reported) == len(expected), reported
    for problem, start in zip(reported, expected, strict=True):
        assert problem.startswith(start), reported
