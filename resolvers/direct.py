"""Subscriptions that skip Strawberry's per-operation machinery once their document is known to be good.

Over graphql-transport-ws, Strawberry runs every `subscribe` through its whole pipeline: an execution context,
an instance of every schema extension and their context managers, graphql-core's subscribe and its executor, a
mapped async iterator around the resolver's async generator, and a task driving it all — ~20 KiB and most of a
millisecond per subscription, although every client of an app sends the same few texts and `chatEvents` on this
subprotocol sends its events itself (resolvers.fanout) and never yields a result through that pipeline.

So the first `subscribe` of a text takes Strawberry's path; when it reaches a resolver that streams by itself
(`chatEvents`), the resolver records the validated operation here (`remember`), keyed by schema, text and
operation name. A later `subscribe` with that key (`find`) skips parsing, validation and execution set-up: only
its variables are coerced, as graphql-core would, and the resolver's streaming function is called with the
root field's arguments. Anything else — a new text, variables that do not coerce, a root selection with
fragments or directives — takes Strawberry's path, whose answers (errors included) are therefore unchanged.

Sound because everything skipped depends only on the key: parsing, validation (the schema's rules, its token
limit), the operation's type and name, the root field. Authentication, authorization and the subscription
limit are not skipped: the first two are the resolver's and the socket's, the last is checked before any path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLSchema,
    OperationDefinitionNode,
)
from graphql.execution.values import get_argument_values, get_variable_values

from resolvers.documents import Lru

# Distinct (schema, text, operation name) remembered; as for parsed documents, an app sends a handful.
CACHE_SIZE = 64

# A resolver's streaming function: (the socket's GraphQL context, the operation's fanout.Lane, the prepared
# operation, the root field's arguments) -> runs until the stream ends.
Start = Callable[[Any, Any, "Prepared", dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated subscription whose one root field streams by itself. `schema`, `operation` and `fragments`
    are what the shared renderer reads of graphql-core's resolve info (`info._raw_info`), so a `Prepared`
    stands in for it; `query` is the remembered text, shared by every subscription with it."""

    schema: GraphQLSchema
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    query: str
    field: GraphQLField
    node: FieldNode
    start: Start

    def arguments(self, variables: dict[str, Any] | None) -> dict[str, Any] | None:
        """The root field's arguments for these variables, coerced as graphql-core does; None if they do not
        coerce (Strawberry's path then reports why, as it always has)."""
        coerced = get_variable_values(self.schema, self.operation.variable_definitions or (), variables or {})
        if isinstance(coerced, list):
            return None
        try:
            return get_argument_values(self.field, self.node, coerced)
        except GraphQLError:
            return None


class ResolveInfoView:
    """A `Prepared` where a resolver's `info` is expected: its `_raw_info`."""

    __slots__ = ("_raw_info",)

    def __init__(self, prepared: Prepared) -> None:
        self._raw_info = prepared


_prepared = Lru(CACHE_SIZE)


def remember(raw_info: Any, query: str, operation_name: str | None, start: Start) -> None:
    """Called by a resolver that streams by itself, from Strawberry's path (graphql-core's resolve info
    `raw_info`): later subscriptions with the same text and operation name go straight to `start`. A root
    selection that is not exactly this one field, without directives, is not remembered."""
    operation: OperationDefinitionNode = raw_info.operation
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode) or selections[0].directives:
        return
    node = selections[0]
    field = raw_info.parent_type.fields.get(node.name.value)
    if field is None:  # cannot happen: this very operation was validated and resolved
        return
    key = (raw_info.schema, query, operation_name)
    if _prepared.get(key) is None:
        fragments = dict(raw_info.fragments)
        _prepared.put(key, Prepared(raw_info.schema, operation, fragments, query, field, node, start))


def find(schema: GraphQLSchema, query: str, operation_name: str | None) -> Prepared | None:
    prepared: Prepared | None = _prepared.get((schema, query, operation_name))
    return prepared
