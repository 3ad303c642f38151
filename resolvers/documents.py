"""Parsing and validating GraphQL documents without holding up the event loop.

Validation costs about 10 µs per token of the document with graphql-core's rules (linear in the document once
`resolvers.limits` walks each fragment once), so a document at the token limit (`GRAPHQL_MAX_TOKENS`, 2,000)
takes ~20 ms. Done in the event loop, twenty such requests in flight would hold every socket and `/healthz` for
0.4 s. So:

- identical query texts share one parsed document and one validation result (the common case: every client
  of an app sends the same few texts; a subscription holds its document for as long as it runs);
- a text seen for the first time and longer than `INLINE_MAX_CHARS` is parsed and validated in one worker
  thread. The event loop then only competes with that one thread for the interpreter, so it keeps serving
  other requests while an expensive document is checked, and expensive documents queue behind each other
  instead of stacking up in the loop;
- what such a document leaves behind is collected and frozen right away (`realtime.gcpolicy.settle`): the
  full collections CPython would otherwise start while a few of them are in flight walked them again and again,
  20-80 ms each, and those pauses stop every thread;
- a parsed document keeps no tokens (see `_parse`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, Node, Token, validate
from graphql.language.parser import Parser, nested_too_deeply_error
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from realtime import gcpolicy

T = TypeVar("T")

# A text shorter than this (at most ~130 tokens, a few ms to validate) is checked in the loop: the thread hop would cost
# more than it saves.
INLINE_MAX_CHARS = 256
# Distinct query texts kept parsed and validated. An app sends a handful (the web client four); the bound keeps
# unique texts sent by an attacker from growing memory and the garbage collector's work (each cached document
# of GRAPHQL_MAX_TOKENS tokens is ~1,700 objects for every collection to walk until the next freeze).
CACHE_SIZE = 64

# The rules Strawberry adds to graphql-core's in its own validation step (strawberry.schema.schema.validate_document),
# which this extension takes the place of.
STRAWBERRY_RULES = (MaybeNullValidationRule, OneOfInputValidationRule)

_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphql-documents")


class Lru:
    """A bounded mapping, least recently used out first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()  # filled from the loop only, but cheap insurance for the worker thread

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            if len(self._items) > self._size:
                self._items.popitem(last=False)


_documents = Lru(CACHE_SIZE)
_validations = Lru(CACHE_SIZE)


async def _run(heavy: bool, function: Callable[..., T], *args: Any) -> T:
    if not heavy:
        return function(*args)
    return await asyncio.get_running_loop().run_in_executor(_worker, _settled, function, *args)


def _settled(function: Callable[..., T], *args: Any) -> T:
    try:
        return function(*args)
    finally:
        gcpolicy.settle()  # what the document left behind, off the next full collections' walk


class SharedDocuments(SchemaExtension):
    """Parse and validate each distinct query text once, long ones off the event loop (see the module).

    A text that does not parse is left to Strawberry, which reports the error as usual. `hide_suggestions`:
    validation errors say no "Did you mean …?" (they reveal the schema one name at a time)."""

    def __init__(self, *, hide_suggestions: bool = False) -> None:
        self.hide_suggestions = hide_suggestions

    async def on_parse(self) -> AsyncIterator[None]:
        context = self.execution_context
        query = context.query
        if isinstance(query, str) and context.graphql_document is None:
            options = tuple(sorted(context.parse_options.items()))
            key = (query, options)
            document = _documents.get(key)
            if document is None:
                try:
                    document = await _run(len(query) > INLINE_MAX_CHARS, _parse, query, dict(options))
                except GraphQLError:
                    document = None
                else:
                    _documents.put(key, document)
            context.graphql_document = document
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        document, query = context.graphql_document, context.query
        if document is not None and context.validation_rules and context.pre_execution_errors is None:
            rules = (*context.validation_rules, *STRAWBERRY_RULES)
            text = query if isinstance(query, str) else id(document)
            key = (id(context.schema), text, rules, self.hide_suggestions)
            errors = _validations.get(key)
            if errors is None:
                heavy = not isinstance(query, str) or len(query) > INLINE_MAX_CHARS
                errors = await _run(heavy, _validate, context.schema._schema, document, rules, self.hide_suggestions)
                if isinstance(query, str):
                    _validations.put(key, errors)
            context.pre_execution_errors = list(errors)
        yield


def _validate(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...], hide_suggestions: bool
) -> list[GraphQLError]:
    return validate(schema, document, rules, hide_suggestions=hide_suggestions)


def _parse(query: str, options: dict[str, Any]) -> DocumentNode:
    """`graphql.parse`, leaving no tokens behind. The lexer links every token of the text to the next and the
    previous one, and every node's location links into that list: a parsed document holds its whole token list
    alive, and once it is dropped the list is a reference cycle that only a full garbage collection frees. Here
    the links are cut: the tokens go as soon as the parse ends, a cached document holds a third of the objects,
    and errors still carry their line and column (from the offsets each location keeps)."""
    parser = Parser(query, **options)
    try:
        document = parser.parse_document()
    except RecursionError:
        raise nested_too_deeply_error(parser) from None
    finally:
        token: Token | None = parser._lexer.token
        while token is not None:
            previous = token.prev
            token.prev = token.next = None
            token = previous
    for node in ast_nodes(document):
        location = node.loc
        if location is not None:
            # graphql-core types these as always set; dropping the token chain frees the lexer's tokens.
            location.start_token = location.end_token = None  # type: ignore[assignment]
    return document


def ast_nodes(root: Node) -> Iterator[Node]:
    """`root` and every node under it, in no particular order (without recursion: documents may nest deeply)."""
    nodes: list[Node] = [root]
    while nodes:
        node = nodes.pop()
        yield node
        for key in node.keys:
            value = getattr(node, key, None)
            if isinstance(value, Node):
                nodes.append(value)
            elif isinstance(value, (list, tuple)):
                nodes.extend(child for child in value if isinstance(child, Node))
