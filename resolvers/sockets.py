"""A GraphQL WebSocket's life before and around Strawberry's protocol handler: admission and the init timeout.

From its handshake until its `connection_init` a socket is *pending*: it counts toward its client address's
pending sockets (`Admission`), and it is closed with 4408 ("Connection initialisation timeout") if the init does
not come within `CONNECTION_INIT_TIMEOUT`, on both subprotocols (Strawberry times out only graphql-transport-ws;
a graphql-ws socket that never sent `connection_init` stayed open forever). Once authenticated as a user, it
counts toward that user's sockets until it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import timedelta
from typing import Any

from starlette.types import Message, Send

from logging_setup import fields
from realtime.admission import Admission

log = logging.getLogger(__name__)

# A client has this long after connecting to send connection_init; then 4408 (both subprotocols).
CONNECTION_INIT_TIMEOUT = timedelta(seconds=10)
CLOSE_INIT_TIMEOUT = 4408
# The key of a socket's `GraphQLSocket` in its ASGI scope (on_ws_connect finds it through the request).
SCOPE_SOCKET = "tailtrail.graphql_socket"


class GraphQLSocket:
    def __init__(self, admission: Admission, address: str | None, send: Send) -> None:
        self._admission = admission
        self.address = address
        self._send = send
        self._pending = True
        self.user_id: uuid.UUID | None = None
        self._closed = False
        self._timer = asyncio.get_running_loop().call_later(
            CONNECTION_INIT_TIMEOUT.total_seconds(), self._init_timed_out
        )
        self._closing: asyncio.Task[None] | None = None

    async def send(self, message: Message) -> None:
        """The socket's ASGI send: nothing goes out after this object closed it."""
        if self._closed and message["type"] in ("websocket.send", "websocket.close"):
            return
        await self._send(message)

    def initialised(self) -> None:
        """`connection_init` arrived: the socket no longer counts as pending."""
        self._timer.cancel()
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

    def end(self) -> None:
        """The socket is gone: release what it held."""
        self.initialised()
        if self.user_id is not None:
            self._admission.release_user(self.user_id)
            self.user_id = None
        if self._closing is not None:
            self._closing.cancel()

    def _init_timed_out(self) -> None:
        if self._pending and not self._closed:
            self._closing = asyncio.get_running_loop().create_task(self._close_for_timeout())

    async def _close_for_timeout(self) -> None:
        log.info("graphql socket closed: no connection_init in time", extra=fields(client=self.address))
        self._closed = True
        with contextlib.suppress(Exception):  # the socket may be gone already
            await self._send({"type": "websocket.close", "code": CLOSE_INIT_TIMEOUT, "reason": _INIT_TIMEOUT_REASON})


_INIT_TIMEOUT_REASON = "Connection initialisation timeout"


def socket_of(scope: dict[str, Any]) -> GraphQLSocket | None:
    socket = scope.get(SCOPE_SOCKET)
    return socket if isinstance(socket, GraphQLSocket) else None
