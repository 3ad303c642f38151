"""`chatEvents` payloads rendered by a plan compiled from the document, not by graphql-core's executor per event.

resolvers.fanout executes an event's selection set once per distinct (document, variables) and shares the JSON.
That one execution through graphql-core's general executor costs 150-350 µs per event here (a resolve info, a
path, an argument coercion and several type dispatches per field; the plan: 11-23 µs), which in small chats is
a large part of the server's cost of a message. The selection set of an event is fixed for a subscription's lifetime, so this module walks it once,
resolving everything that does not depend on the event (which fields, in which order, under which keys, for which
concrete type, with `@skip`/`@include` already decided), and keeps a tree of small functions that only read the
event object's attributes and coerce the leaves.

Same answer as graphql-core, by construction:
- the fields and their order come from graphql-core's own `collect_fields` / `collect_subfields`, run with the
  executor's coerced variables: fragments, inline fragments, type conditions (union, interface, object), field
  merging, aliases and `@skip`/`@include` (literal or variable) are graphql-core's decisions, not a copy of them;
- a value is read the way the field's resolver reads it, and a leaf is coerced by its type's own
  `coerce_output_value` (a fast path only where that function is the identity: `str` for String and ID, `bool`
  for Boolean, a 32-bit `int` for Int);
- the `{"data": ...}` text is `json.dumps` of the same dict, with the same separators as resolvers.fanout.

The subset compiled (anything else raises `Unsupported` when compiling, and the document keeps the executor):
- a subscription whose root fields are Strawberry subscription fields (their resolver passes the event through),
  executed without middleware;
- below it, object types and Strawberry unions (type conditions on the union, on its members and on interfaces
  are all `collect_fields`'); fields that are Strawberry "basic" fields (no resolver, no extension, no
  permission: the value is `getattr(source, python_name)`) and `__typename`;
- leaves of any scalar or enum type, lists and non-null wrappers of all of these;
- no directive but `@skip` and `@include`, no fragment variables.
A union member's selection is compiled on the first event of that member (see `_abstract`); a member outside the
subset renders by the executor from then on. Whatever an event turns out to hold that graphql-core would not
render plainly (a null in a non-null field, a value its scalar refuses, an object of an unexpected class, an
awaitable, an exception) raises `Unsure` while rendering, and that event goes through the executor: errors are
always graphql-core's.

The event object is still `schema.types.event`'s Strawberry object (built once per event, ~7 µs): reading the
event's fields directly would save little next to the ~15 µs plan and would copy the converters of schema/types.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    GraphQLUnionType,
    OperationType,
    is_abstract_type,
)
from graphql.execution import Executor
from graphql.execution.collect_fields import FieldDetails, collect_fields, collect_subfields
from graphql.language import DirectiveNode, Node
from graphql.pyutils import Undefined
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE
from strawberry.types.union import StrawberryUnion

from resolvers.documents import ast_nodes

# Strawberry keeps its own definition of a GraphQL type or field under this key of `extensions`.
STRAWBERRY = "strawberry-definition"
# The directives whose effect `collect_fields` decides once here; any other could change how a field is executed.
KNOWN_DIRECTIVES = frozenset({"skip", "include"})
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

Complete = Callable[[Any], Any]  # a resolved value -> its completed (JSON-ready) value, or raises Unsure


class Unsupported(Exception):
    """The document is outside the compiled subset (the message says why): it keeps graphql-core's executor."""


class Unsure(Exception):
    """This event holds something graphql-core would not render plainly: render it with the executor."""


class Plan:
    """A compiled `chatEvents` document: `render(source)` is the `{"data": ...}` JSON text graphql-core's executor
    gives for the root value `source`, or raises `Unsure`."""

    __slots__ = ("_root",)

    def __init__(self, root: Complete) -> None:
        self._root = root

    def render(self, source: Any) -> str:
        try:
            data = self._root(source)
        except Unsure:
            raise
        except Exception as error:  # a read or a coercion failed: graphql-core reports it, as a field error
            raise Unsure from error
        return json.dumps({"data": data}, separators=(",", ":"))


def compile_plan(executor: Executor[Any]) -> Plan:
    """The plan of the executor's operation, with its variables; raises `Unsupported` outside the subset."""
    if executor.middleware_manager is not None:
        raise Unsupported("middleware wraps the resolvers")
    operation = executor.operation
    if operation.operation != OperationType.SUBSCRIPTION:
        raise Unsupported("not a subscription")
    for fragment in executor.fragments.values():
        if fragment.variable_signatures:
            raise Unsupported("fragment variables")
    for node in (operation, *(fragment.definition for fragment in executor.fragments.values())):
        _check_directives(node)
    schema = executor.schema
    root_type = schema.subscription_type
    if root_type is None:
        raise Unsupported("no subscription type")
    collected = collect_fields(
        schema, executor.fragments, executor.variable_values, root_type, operation, executor.hide_suggestions
    )
    if collected.new_defer_usages or collected.forbidden_directive_instances:
        raise Unsupported("incremental delivery")
    fields: list[tuple[str, Complete]] = []
    for key, details in collected.grouped_field_set.items():
        field = root_type.fields.get(details[0].node.name.value)
        definition = None if field is None else (field.extensions or {}).get(STRAWBERRY)
        if field is None or definition is None or not getattr(definition, "is_subscription", False):
            raise Unsupported(f"root field {key!r} is not a Strawberry subscription field")
        # A Strawberry subscription field's resolver returns the event itself: the root value is the field's value.
        fields.append((key, _Compiler(executor).complete(field.type, details)))
    return Plan(_object(tuple((key, _identity, complete) for key, complete in fields)))


def _check_directives(node: Node) -> None:
    for current in ast_nodes(node):
        if isinstance(current, DirectiveNode) and current.name.value not in KNOWN_DIRECTIVES:
            raise Unsupported(f"directive @{current.name.value}")


class _Compiler:
    def __init__(self, executor: Executor[Any]) -> None:
        self.executor = executor
        self.schema: GraphQLSchema = executor.schema

    def complete(self, type_: GraphQLOutputType, details: list[FieldDetails]) -> Complete:
        """How graphql-core's `complete_value` completes a value of `type_` for these field nodes."""
        if isinstance(type_, GraphQLNonNull):
            return _non_null(self.complete(type_.of_type, details))
        if isinstance(type_, GraphQLList):
            return _nullable(_list(self.complete(type_.of_type, details)))
        if isinstance(type_, (GraphQLScalarType, GraphQLEnumType)):
            return _nullable(_leaf(type_))
        if is_abstract_type(type_):
            if not isinstance(type_, GraphQLUnionType) or not isinstance(
                (type_.extensions or {}).get(STRAWBERRY), StrawberryUnion
            ):
                # A Strawberry union's resolver picks the member whose Strawberry class the value is; an
                # interface's resolver might decide otherwise.
                raise Unsupported(f"type resolver of {type_}")
            members = {_origin(member): member for member in type_.types}
            return _nullable(_abstract(members, lambda member: self.object(member, details)))
        if isinstance(type_, GraphQLObjectType):
            return _nullable(_exact(_origin(type_), self.object(type_, details)))
        raise Unsupported(f"output type {type_}")

    def object(self, type_: GraphQLObjectType, details: list[FieldDetails]) -> Complete:
        """The selection of these field nodes on an object of `type_`."""
        if type_.is_type_of is not None:
            raise Unsupported(f"{type_.name}.is_type_of")
        collected = collect_subfields(
            self.schema,
            self.executor.fragments,
            self.executor.variable_values,
            self.executor.operation,
            type_,
            details,
            self.executor.hide_suggestions,
        )
        if collected.new_defer_usages or collected.forbidden_directive_instances:
            raise Unsupported("incremental delivery")
        fields: list[tuple[str, Callable[[Any], Any], Complete]] = []
        for key, sub in collected.grouped_field_set.items():
            name = sub[0].node.name.value
            if name == "__typename":
                fields.append((key, _constant(type_.name), _identity))
                continue
            field = type_.fields.get(name)
            if field is None:
                raise Unsupported(f"field {type_.name}.{name}")
            definition = (field.extensions or {}).get(STRAWBERRY)
            if (
                definition is None
                or not getattr(field.resolve, "_is_default", False)
                or not definition.is_basic_field
                or getattr(definition, "default_resolver", None) is not getattr
                or sub[0].node.arguments
            ):
                raise Unsupported(f"field {type_.name}.{name} has a resolver")
            fields.append((key, _attribute(definition.python_name), self.complete(field.type, sub)))
        return _object(tuple(fields))


def _origin(type_: GraphQLObjectType) -> type:
    """The Python class whose instances Strawberry renders as `type_`."""
    definition = (type_.extensions or {}).get(STRAWBERRY)
    origin = getattr(definition, "origin", None)
    if not isinstance(origin, type) or getattr(definition, "concrete_of", None) is not None:
        raise Unsupported(f"type {type_.name} is not a plain Strawberry type")
    return origin


# -- the pieces of a plan ------------------------------------------------------------------------------------


def _identity(value: Any) -> Any:
    return value


def _constant(value: str) -> Callable[[Any], str]:
    return lambda _: value


def _attribute(name: str) -> Callable[[Any], Any]:
    return lambda source: getattr(source, name)


def _object(fields: tuple[tuple[str, Callable[[Any], Any], Complete], ...]) -> Complete:
    def complete(source: Any) -> dict[str, Any]:
        return {key: finish(read(source)) for key, read, finish in fields}

    return complete


def _exact(origin: type, complete: Complete) -> Complete:
    """An object field's value must be an instance of its Strawberry class, as every one built by schema.types is
    (anything else, say an awaitable or an exception, is for graphql-core)."""

    def check(value: Any) -> Any:
        if type(value) is not origin:
            raise Unsure
        return complete(value)

    return check


def _abstract(members: dict[type, GraphQLObjectType], build: Callable[[GraphQLObjectType], Complete]) -> Complete:
    """A union's value, by the member its class is. Each member's plan is compiled on the first value of that
    member: a document usually selects on every event type, a subscription mostly sees a few of them, and a plan
    of all seventeen is ~60 KiB. A member outside the subset has its values rendered by the executor."""
    plans: dict[type, Complete] = {}

    def complete(value: Any) -> Any:
        if getattr(value, TYPE_CAST_ATTRIBUTE, None) is not None:
            raise Unsure  # `strawberry.cast`: Strawberry resolves the type it names (schema.types never casts)
        plan = plans.get(type(value))
        if plan is None:
            member = members.get(type(value))
            if member is None:
                raise Unsure  # not a member: graphql-core's error
            try:
                plan = build(member)
            except Unsupported:
                plan = _unsure
            plans[type(value)] = plan
        return plan(value)

    return complete


def _unsure(_: Any) -> Any:
    raise Unsure


def _non_null(inner: Complete) -> Complete:
    def complete(value: Any) -> Any:
        completed = inner(value)
        if completed is None:
            raise Unsure  # graphql-core: "Cannot return null for non-nullable field", an error
        return completed

    return complete


def _nullable(inner: Complete) -> Complete:
    def complete(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        return inner(value)

    return complete


def _list(item: Complete) -> Complete:
    def complete(value: Any) -> list[Any]:
        if type(value) is not list and type(value) is not tuple:
            raise Unsure  # graphql-core takes other iterables, async ones too: its business
        return [item(each) for each in value]

    return complete


def _leaf(type_: GraphQLScalarType | GraphQLEnumType) -> Complete:
    """graphql-core's `complete_leaf_value`, with the identity cases of the built-in scalars inlined."""
    coerce = type_.coerce_output_value
    if coerce is None:
        raise Unsupported(f"type {type_.name} cannot be output")

    def general(value: Any) -> Any:
        if isinstance(value, Exception) or hasattr(value, "__await__"):
            raise Unsure
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise Unsure
        return coerced

    if type_ is GraphQLInt:

        def int_leaf(value: Any) -> Any:
            if type(value) is int and INT_MIN <= value <= INT_MAX:
                return value
            return general(value)

        return int_leaf
    identity: type | None = str if type_ is GraphQLString or type_ is GraphQLID else None
    if type_ is GraphQLBoolean:
        identity = bool
    if identity is not None:
        kind = identity

        def plain_leaf(value: Any) -> Any:
            return value if type(value) is kind else general(value)

        return plain_leaf
    return general
