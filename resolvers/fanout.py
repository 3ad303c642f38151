"""`chatEvents` over graphql-transport-ws without per-subscriber GraphQL execution.

Strawberry runs a subscription's selection set once per event *per subscriber*, then builds and JSON-encodes
a `next` message for each. For an event going to a thousand sockets that is a thousand identical executions.
Here a `chatEvents` subscription on graphql-transport-ws sends its events itself: each event is executed once
per distinct (document, variables), the `payload` JSON is cached on the event's `Delivery`, and each subscriber
only adds its operation id around it. That one execution is a plan compiled from the document once
(resolvers.render: graphql-core's exact JSON, ~15x cheaper than its executor per event); graphql-core's executor
remains for the documents and events the plan cannot be sure of.

Why sharing is safe: which events a subscriber gets is decided per user before this point (the hub puts only
the user's own chats' events in the user's outbox); the selection set of an event reads only the event —
no field of the event types looks at the viewer — so the same document gives the same payload for everyone.

Everything before the first event (parsing, validation, the document limits, authentication, the subscription
limit, errors) is still Strawberry's the first time a document is seen; later subscriptions with it go straight
to the resolver's streaming, with the same answers (resolvers.direct). graphql-ws (the older subprotocol) keeps
Strawberry's path entirely.
"""

from __future__ import annotations

import contextvars
import inspect
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from graphql import DocumentNode, ExecutionResult, GraphQLError
from graphql.execution import Executor
from graphql.language import FieldNode, FragmentSpreadNode, Node, VariableNode
from starlette.websockets import WebSocket, WebSocketState
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message
from strawberry.types.execution import ExecutionResult as StrawberryResult

from realtime.events import Event
from realtime.hub import Delivery
from resolvers import direct
from resolvers.errors import CodedErrors
from resolvers.render import Plan, Unsupported, Unsure, compile_plan


@dataclass(frozen=True, slots=True)
class Lane:
    """A graphql-transport-ws operation that may send its events itself."""

    operation_id: str
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


_lane: contextvars.ContextVar[Lane | None] = contextvars.ContextVar("graphql_fanout_lane", default=None)


def current_lane() -> Lane | None:
    """The lane of the operation whose resolver is running (operations run in tasks of their own)."""
    return _lane.get()


class TransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    """Strawberry's graphql-transport-ws handler, telling each operation's resolver its id and request, and
    sending a subscription whose document a streaming resolver has seen before straight to it (resolvers.direct)."""

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            # Strawberry's per-operation objects form reference cycles that hold the context; without its socket
            # they hold little, and the connection is freed by reference counting when it closes.
            self.context.release()

    def on_request_accepted(self) -> None:
        """No task per socket for the `connection_init` timeout: the socket's own timer (resolvers.sockets) closes
        it with 4408 first, on both subprotocols, and Strawberry's task would cost a task and a timer per socket."""

    async def handle_message(self, message: Message) -> None:
        try:
            await super().handle_message(message)
        finally:
            # Strawberry's loop holds the last message until the next one arrives: on an idle socket, for good.
            cast("dict[str, Any]", message).clear()  # a TypedDict: a dict decoded for this call

    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        prepared = direct.find(self.schema._schema, operation.query, operation.operation_name)  # type: ignore[attr-defined]
        arguments = prepared.arguments(operation.variables) if prepared is not None else None
        if prepared is None or arguments is None:
            _lane.set(Lane(operation.id, operation.query, operation.variables, operation.operation_name))
            await super().run_operation(operation)
            return
        operation.query = prepared.query  # the remembered text, not this message's copy of it
        lane = Lane(operation.id, prepared.query, operation.variables, operation.operation_name)
        try:
            await prepared.start(self.context, lane, prepared, arguments)
        except Exception as error:  # reported to the client, as Strawberry's path reports it
            await operation.send_next(StrawberryResult(data=None, errors=self._coded(error)))
        await operation.send_operation_message({"id": operation.id, "type": "complete"})

    def _coded(self, error: Exception) -> list[GraphQLError]:
        """`error`, raised by a subscription's stream, as Strawberry's path reports it: coerced to a GraphQL
        error, then through the schema's CodedErrors extension (codes, logging of the unexpected)."""
        coerced = error if isinstance(error, GraphQLError) else GraphQLError(str(error), original_error=error)
        for extension in self.schema.get_extensions():  # type: ignore[attr-defined]
            if isinstance(extension, CodedErrors):
                return extension._process_errors([coerced])
        return [coerced]

    async def send_message(self, message: Message) -> None:
        """Nothing more goes out once this server has closed the socket (a slow consumer's 1013): an operation
        ending after that has no `complete` to send."""
        socket = self.context.request
        if not isinstance(socket, WebSocket) or socket.application_state != WebSocketState.DISCONNECTED:
            await super().send_message(message)


class SharedRenderer:
    """One subscription's document and variables, and the `next` payload of an event, computed once for all
    subscriptions with the same document and the same values of the variables its selection set uses.

    The payload comes from the document's compiled plan (resolvers.render) when it has one and the event is
    plain for it; otherwise from graphql-core's executor, as before."""

    def __init__(self, lane: Lane, info: Any, convert: Callable[[Event, str | None], Any]) -> None:
        self._convert = convert  # an event as the GraphQL object its selection set runs over
        raw = info._raw_info  # graphql-core's resolve info: the validated operation and its fragments
        self.prefix = '{"id":' + json.dumps(lane.operation_id) + ',"type":"next","payload":'
        used = _used_variables(raw, lane)
        shown = {name: value for name, value in (lane.variables or {}).items() if name in used}
        self.key = ("graphql-next", lane.query, lane.operation_name, json.dumps(shown, sort_keys=True, default=str))
        self._executor, self.plan = _shared_execution(raw.schema, self.key, lane, raw)

    def frame_now(self, delivery: Delivery) -> str | None:
        """This subscription's whole `next` message for `delivery`, or None if rendering it would have to wait."""
        payload: str | None = delivery.cached(self.key)
        if payload is None:
            payload = self._compiled(delivery)
        if payload is None:
            result = self._execute(delivery)
            if inspect.isawaitable(result):  # not with this schema's event types; `frame` will wait for it
                result.close()  # type: ignore[attr-defined]  # an un-awaited coroutine: close it, not just drop it
                return None
            payload = self._store(delivery, result)
        return self.prefix + payload + "}"

    async def frame(self, item: Delivery | str) -> str | None:
        """As `frame_now`, waiting if need be; None for what is not an event (legacy replies)."""
        if not isinstance(item, Delivery):
            return None
        payload: str | None = item.cached(self.key)
        if payload is None:
            payload = self._compiled(item)
        if payload is None:
            result = self._execute(item)
            if inspect.isawaitable(result):
                result = await result
            payload = self._store(item, result)
        return self.prefix + payload + "}"

    def _compiled(self, delivery: Delivery) -> str | None:
        """The payload by the compiled plan, or None where only the executor knows the answer."""
        if self.plan is None:
            return None
        try:
            text = self.plan.render(delivery.encoded("graphql", self._convert))
        except Unsure:
            return None
        delivery.store(self.key, text)
        return text

    def _execute(self, delivery: Delivery) -> Any:
        source = delivery.encoded("graphql", self._convert)
        return self._executor.build_per_event_executor(source).execute_operation(False)

    def _store(self, delivery: Delivery, result: Any) -> str:
        assert isinstance(result, ExecutionResult)
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [error.formatted for error in CodedErrors()._process_errors(list(result.errors))]
        text = json.dumps(payload, separators=(",", ":"))
        delivery.store(self.key, text)
        return text


# Executors and their compiled plans by (schema, subscription key), shared by every subscription with that key:
# each executor is ~5 KiB, and ten thousand subscriptions usually carry a handful of distinct documents. Bounded,
# least recently built first out.
_SHARED_MAX = 256
_executions: OrderedDict[tuple[Any, ...], tuple[Executor[Any], Plan | None]] = OrderedDict()


def _shared_execution(schema: Any, key: tuple[Any, ...], lane: Lane, raw: Any) -> tuple[Executor[Any], Plan | None]:
    """The executor of a subscription's document and variables, and its compiled plan (None: outside the subset
    resolvers.render compiles; its events always go through the executor)."""
    cache_key = (schema, *key)
    shared = _executions.get(cache_key)
    if shared is None:
        executor = Executor.build(
            schema,
            DocumentNode(definitions=(raw.operation, *raw.fragments.values())),
            # No context: the event types' fields read only the event (see the module docstring), and a shared
            # executor must not hold on to one connection's context.
            context_value=None,
            raw_variable_values=lane.variables,
            operation_name=lane.operation_name,
        )
        if not isinstance(executor, Executor):  # cannot happen: Strawberry validated this very request
            raise GraphQLError("cannot execute the subscription's document")
        try:
            plan: Plan | None = compile_plan(executor)
        except Unsupported:
            plan = None
        shared = _executions[cache_key] = (executor, plan)
        if len(_executions) > _SHARED_MAX:
            _executions.popitem(last=False)
    return shared


# The variables each document's selection set reads, by (schema, query text, operation name): walking the document
# costs more than the rest of a subscription's set-up, and every subscriber of an app sends the same few texts.
_used: OrderedDict[tuple[Any, ...], frozenset[str]] = OrderedDict()


def _used_variables(raw: Any, lane: Lane) -> frozenset[str]:
    key = (raw.schema, lane.query, lane.operation_name)
    used = _used.get(key)
    if used is None:
        used = _used[key] = frozenset(_variables_in(raw.operation, raw.fragments))
        if len(_used) > _SHARED_MAX:
            _used.popitem(last=False)
    return used


def _variables_in(operation: Node, fragments: dict[str, Node]) -> set[str]:
    """Names of the variables the operation's selection set reads (root field arguments excluded: the
    subscription's resolver consumes those, e.g. `after`, and they do not change an event's payload)."""
    names: set[str] = set()
    seen: set[str] = set()

    def walk(node: Any, *, root: bool = False) -> None:
        if isinstance(node, VariableNode):
            names.add(node.name.value)
            return
        if isinstance(node, FragmentSpreadNode):
            name = node.name.value
            if name not in seen and name in fragments:
                seen.add(name)
                walk(fragments[name])
        for key in node.keys:
            if root and isinstance(node, FieldNode) and key == "arguments":
                continue
            value = getattr(node, key, None)
            for child in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(child, Node):
                    walk(child)

    # An executable definition here is always an OperationDefinitionNode (checked by the caller's parse).
    for selection in operation.selection_set.selections:  # type: ignore[attr-defined]
        walk(selection, root=True)
    for directive in operation.directives or ():  # type: ignore[attr-defined]  # as above
        walk(directive)
    return names
