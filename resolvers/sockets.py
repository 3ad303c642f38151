"""A GraphQL WebSocket's life before and around Strawberry's protocol handler: admission and the init timeout.

From its handshake until its `connection_init` a socket is *pending*: it counts toward its client address's
pending sockets (`Admission`), and it is closed with 4408 ("Connection initialisation timeout") if the init does
not come within `CONNECTION_INIT_TIMEOUT`, on both subprotocols (Strawberry times out only graphql-transport-ws;
a graphql-ws socket that never sent `connection_init` stayed open forever). Once authenticated as a user, it
counts toward that user's sockets until it closes, and it is closed with 4401 ("token expired") when its token
expires, unless the client runs the `refreshToken` mutation on it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from graphql import GraphQLError
from starlette.types import Message, Send
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import ConnectionInitMessage
from strawberry.types.execution import ExecutionResult, PreExecutionError

from realtime import close_codes
from realtime.admission import Admission
from realtime.expiry import TOKEN_EXPIRED_REASON, TokenExpiry
from server.logging_setup import fields
from server.sends import GuardedSend, dropped

log = logging.getLogger(__name__)

# A client has this long after connecting to send connection_init; then 4408 (both subprotocols).
CONNECTION_INIT_TIMEOUT = timedelta(seconds=10)
# The key of a socket's `GraphQLSocket` in its ASGI scope (on_ws_connect finds it through the request).
SCOPE_SOCKET = "tailtrail.graphql_socket"


class GraphQLSocket:
    # One per open socket, for as long as it is open: slots, and its init timer dropped once cancelled.
    __slots__ = (
        "_admission",
        "_closed",
        "_closing",
        "_direct",
        "_pending",
        "_send",
        "_timer",
        "address",
        "expiry",
        "user_id",
    )

    def __init__(self, admission: Admission, address: str | None, send: Send, direct: Send | None = None) -> None:
        self._admission = admission
        self.address = address
        self._send = send
        self._direct = direct or send  # the same send past the framework's wrappers (server.sends)
        self._pending = True
        self.user_id: uuid.UUID | None = None
        self._closed = False
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            CONNECTION_INIT_TIMEOUT.total_seconds(), self._init_timed_out
        )
        self._closing: asyncio.Task[None] | None = None
        self.expiry: TokenExpiry | None = None

    def send(self, message: Message) -> Awaitable[None]:
        """The socket's ASGI send: nothing goes out after this object closed it."""
        return self._through(self._send, message)

    def send_direct(self, message: Message) -> Awaitable[None]:
        """`send` past the framework's wrappers: for the events the fan-out writes (one coroutine per frame less
        for each wrapper skipped)."""
        return self._through(self._direct, message)

    def _through(self, send: Send, message: Message) -> Awaitable[None]:
        if self._closed and message["type"] in ("websocket.send", "websocket.close"):
            return dropped()
        return send(message)

    def write_frame(self, frame: bytes) -> bool:
        """Write a serialized frame (server.sends.server_frame) now, without a coroutine, if the socket can take it
        now; True also when this object closed the socket (the frame is dropped, as `send` drops it)."""
        if self._closed:
            return True
        direct = self._direct
        return isinstance(direct, GuardedSend) and direct.write_frame(frame)

    def write_frames(self, frames: Sequence[bytes]) -> bool:
        """`write_frame` for several frames, in order, in one write."""
        if self._closed:
            return True
        direct = self._direct
        return isinstance(direct, GuardedSend) and direct.write_frames(frames)

    def initialised(self) -> None:
        """`connection_init` arrived: the socket no longer counts as pending."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._pending = False
            self._admission.release_pending(self.address)

    def admit(self, user_id: uuid.UUID) -> bool:
        """Count the socket toward `user_id`'s sockets; False if the user has as many as allowed."""
        if self.user_id is not None:
            return True
        if not self._admission.admit_user(user_id):
            return False
        self.user_id = user_id
        return True

    def watch_expiry(self, expires_at: float | None, *, leeway: float) -> None:
        """Close the socket when its token expires (4401, "token expired"), unless renewed before."""
        if self.expiry is None:
            self.expiry = TokenExpiry(expires_at, leeway=leeway, on_expired=self._token_expired)
        else:
            self.expiry.renew(expires_at)

    def end(self) -> None:
        """The socket is gone: release what it held."""
        if self.expiry is not None:
            self.expiry.close()
        self.initialised()
        if self.user_id is not None:
            self._admission.release_user(self.user_id)
            self.user_id = None
        if self._closing is not None:
            self._closing.cancel()

    def _init_timed_out(self) -> None:
        if self._pending:
            log.info("graphql socket closing: no connection_init in time", extra=fields(client=self.address))
            self._close(close_codes.INIT_TIMEOUT, INIT_TIMEOUT_REASON)

    def _token_expired(self) -> None:
        log.info("graphql socket closing: token expired", extra=fields(client=self.address))
        self._close(close_codes.TOKEN_EXPIRED, TOKEN_EXPIRED_REASON)

    def _close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self._closing = asyncio.get_running_loop().create_task(self._send_close(code, reason))

    async def _send_close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # the socket may be gone already
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


INIT_TIMEOUT_REASON = "Connection initialisation timeout"


def socket_of(scope: Mapping[str, Any]) -> GraphQLSocket | None:
    socket = scope.get(SCOPE_SOCKET)
    return socket if isinstance(socket, GraphQLSocket) else None


class LegacyWSHandler(BaseGraphQLWSHandler[Any, Any]):
    """Strawberry's handler of the older `graphql-ws` subprotocol (subscriptions-transport-ws), running queries and
    mutations too, as that protocol allows: Strawberry's refuses every operation but a subscription ("queries are
    not allowed"), which left clients of that protocol without `refreshToken` on their socket.

    A refused `connection_init` (bad token, too many connections) is answered with `connection_error` and the
    socket closed with 4403, as graphql-transport-ws closes it; Strawberry's closed it with 1011, "internal
    error", which tells a client the server broke."""

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload: object = message.get("payload")  # typed as an object, but it is what the client sent
        if payload is not None and not isinstance(payload, dict):
            await self.send_message({"type": "connection_error", "payload": {"message": "payload: expected an object"}})
            await self.websocket.close(code=close_codes.BAD_MESSAGE, reason="connection_init payload")
            return
        self.context.connection_params = payload
        try:
            acknowledgement = await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError as refused:
            await self.send_message({"type": "connection_error", "payload": refused.payload})
            await self.websocket.close(code=close_codes.FORBIDDEN, reason="Forbidden")
            return
        if isinstance(acknowledgement, dict):
            await self.send_message({"type": "connection_ack", "payload": acknowledgement})
        else:
            await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True
        if self.keep_alive:
            self.keep_alive_task = asyncio.create_task(self.handle_keep_alive())

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        try:
            result_source = await self.schema.stream(
                query,
                variable_values=variables,
                operation_name=operation_name,
                context_value=self.context,
                root_value=self.root_value,
            )
            self.subscriptions[operation_id] = result_source
            first = True
            async for result in result_source:
                if first and isinstance(result, PreExecutionError):
                    assert result.errors
                    await self.send_message(
                        {"type": "error", "id": operation_id, "payload": result.errors[0].formatted}
                    )
                    return
                if not isinstance(result, ExecutionResult):  # @defer/@stream: no wire form in this protocol
                    error = GraphQLError("Incremental delivery is not supported over graphql-ws")
                    await self.send_message({"type": "error", "id": operation_id, "payload": error.formatted})
                    return
                await self.send_data_message(result, operation_id)
                first = False
            await self.send_message({"type": "complete", "id": operation_id})
        except asyncio.CancelledError:
            await self.send_message({"type": "complete", "id": operation_id})
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)
