"""GraphQL over HTTP (docs/protocols.md "GraphQL over HTTP"): what the GraphQL-over-HTTP specification asks of a
server beyond Strawberry's defaults, and subscriptions streamed over HTTP.

- The response's media type follows the request's `Accept`: `application/graphql-response+json` when the client
  accepts it, `application/json` otherwise (no `Accept`, or a client older than the specification).
- A *request error* — the document does not parse, does not validate, or its variables do not coerce — stops the
  request before execution: its response has `errors` and no `data` entry, and, as
  `application/graphql-response+json`, the status 400. (As `application/json` it stays 200, which is what clients
  that predate the specification expect.)
- A subscription streams over HTTP when the client asks for a stream: `multipart/mixed;subscriptionSpec=1.0`
  (Apollo Client) or `text/event-stream` (graphql-sse, distinct-connections mode). Sent without either, it gets
  one `BAD_REQUEST` error saying so.
- A stream whose client stops reading is cut off when its outbox overflows, at the bounds a WebSocket's has
  (`HttpStream.cut_off`): its response ends where it is and the connection closes, as a WebSocket is closed
  with 1013; the client resumes with `after:`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Mapping
from typing import Any

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.types import Message, Receive
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
SCOPE_HTTP_STREAM = "tailtrail.http_stream"

STREAM_NEEDED = (
    "a subscription needs a stream: send it over a WebSocket (graphql-transport-ws), or over HTTP with "
    '`Accept: text/event-stream` (graphql-sse) or `Accept: multipart/mixed;boundary="graphql";subscriptionSpec=1.0`'
)

# Set in the task of a request whose stream was cut off on purpose: uvicorn then logs that the response was not
# completed, which is what cutting it off means (see `quiet_cut_offs`).
_cut_off: contextvars.ContextVar[bool] = contextvars.ContextVar("tailtrail_http_cut_off", default=False)


def response_media_type(accept: str | None) -> str:
    """`application/graphql-response+json` if `accept` lists it (with a q above 0), `application/json` otherwise."""
    for media_range in (accept or "").split(","):
        media_type, *params = (part.strip() for part in media_range.split(";"))
        if media_type.lower() == GRAPHQL_RESPONSE_JSON and not any(_zero_quality(p) for p in params):
            return GRAPHQL_RESPONSE_JSON
    return JSON


def _zero_quality(param: str) -> bool:
    name, _, value = param.partition("=")
    if name.strip().lower() != "q":
        return False
    try:
        return float(value) == 0
    except ValueError:
        return False


def is_request_error(result: ExecutionResult) -> bool:
    """The request failed before execution: parsing, validation or variable coercion. Every error of a failed
    execution (a field's) has a path; these have none, and there is no data."""
    return result.data is None and bool(result.errors) and all(error.path is None for error in result.errors or ())


def without_data(response: GraphQLHTTPResponse) -> GraphQLHTTPResponse:
    """The response of a request error: no `data` entry at all (`"data": null` would say execution began)."""
    response = response.copy()
    response.pop("data", None)
    return response


def is_subscription(query: str | None, operation_name: str | None, *, max_tokens: int) -> bool:
    """Whether `query` selects a subscription operation. A document that does not parse is not one: executing it
    reports the syntax error as usual."""
    if not query or "subscription" not in query:
        return False
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError:
        return False
    operation = get_operation_ast(document, operation_name)
    return operation is not None and operation.operation == OperationType.SUBSCRIPTION


def stream_needed() -> ExecutionResult:
    return ExecutionResult(data=None, errors=[GraphQLError(STREAM_NEEDED, extensions={"code": "BAD_REQUEST"})])


class HttpStream:
    """The request of an HTTP-streamed subscription: `cut_off()`, from any task, ends its response where it is.

    A client that stops reading leaves the response stuck in a send that waits for the socket to drain. The
    streaming response also waits for the client to disconnect, on `receive`; `receive` here answers that wait
    with a disconnect once the stream is cut off, and the response ends as it does for a client that went away
    (the subscription is closed the same way too). uvicorn then closes the connection."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._body_read = False
        self._cut = asyncio.Event()

    @property
    def cut(self) -> bool:
        return self._cut.is_set()

    def cut_off(self) -> None:
        self._cut.set()

    async def receive(self) -> Message:
        if not self._body_read:
            message = await self._receive()
            self._body_read = message["type"] != "http.request" or not message.get("more_body", False)
            return message
        # The body is read: what is left to receive is the client's disconnect, or this stream's cut-off.
        if self._cut.is_set():
            return {"type": "http.disconnect"}
        disconnect, cut = asyncio.ensure_future(self._receive()), asyncio.ensure_future(self._cut.wait())
        try:
            await asyncio.wait((disconnect, cut), return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut.cancel()
            if not disconnect.done():
                disconnect.cancel()
        return disconnect.result() if disconnect.done() and not disconnect.cancelled() else {"type": "http.disconnect"}

    def ended(self) -> None:
        """The request is over: if it was cut off, uvicorn's record of an incomplete response is left out."""
        if self.cut:
            _cut_off.set(True)


def http_stream_of(scope: Mapping[str, Any]) -> HttpStream | None:
    stream = scope.get(SCOPE_HTTP_STREAM)
    return stream if isinstance(stream, HttpStream) else None


class _QuietCutOffs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_cut_off.get() and record.getMessage() == "ASGI callable returned without completing response.")


_QUIET_CUT_OFFS = _QuietCutOffs()


def quiet_cut_offs() -> None:
    """uvicorn logs an ERROR for a response the application did not complete; a stream cut off on purpose is
    logged by this server instead (INFO, "http stream cut off"), so that one record is left out."""
    logging.getLogger("uvicorn.error").addFilter(_QUIET_CUT_OFFS)
