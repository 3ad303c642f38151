"""The HTTP and WebSocket protocols `cli.py serve` gives uvicorn: uvicorn's own, with the limits it lacks.

HTTP (`GuardedHttpToolsProtocol`):
- a request head (request line and headers) must be complete within `HTTP_HEADER_TIMEOUT` of its first byte
  (of the connection, for the first request): uvicorn has no such timeout, so a slowloris client sending a
  header line every few seconds, or nothing at all, held a connection forever. Between requests uvicorn's
  keep-alive timeout applies.
- at most `MAX_CONNECTIONS_PER_ADDRESS` connections per client address in this process (WebSockets included,
  for as long as they are open). Connections from a trusted proxy (uvicorn's `FORWARDED_ALLOW_IPS`) are not
  counted: behind a proxy every client has the proxy's address.

WebSocket (`GuardedWebSocketProtocol`): a protocol violation (a text frame that is not UTF-8, a frame the parser
refuses) is logged as one WARNING line naming the connection (`legacy-7`, `graphql-8`), without a traceback,
and the socket is closed with the code RFC 6455 gives it (1007, 1002, 1009). uvicorn logged an ERROR with a
traceback for each invalid UTF-8 frame — a client could flood the log with them.

Settings are read from the environment in each worker process (`cli.py serve` puts its options there).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import is_ssl
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from realtime import close_codes
from server.config import Settings
from server.logging_setup import SCOPE_CONNECTION_ID, fields

log = logging.getLogger("tailtrail.transport")

_settings: Settings | None = None
# The transport a GuardedHttpToolsProtocol is upgrading right now, with its local and remote addresses.
_upgrading: tuple[asyncio.Transport, tuple[str, int | None] | None, tuple[str, int] | None] | None = None
# Open connections by client address, in this process; and the address each counted transport was counted for
# (a WebSocket upgrade hands the transport to the WebSocket protocol, whose close then releases it).
_by_address: dict[str, int] = {}
_counted: dict[Any, str] = {}


def _limits() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def _release(transport: Any) -> None:
    address = _counted.pop(transport, None)
    if address is not None:
        left = _by_address[address] - 1
        if left:
            _by_address[address] = left
        else:
            del _by_address[address]


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    _trusted: _TrustedHosts | None = None

    # uvicorn annotates its own transport parameter more narrowly than asyncio.Protocol does.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        settings = _limits()
        self._head_timer: asyncio.TimerHandle | None = None
        address = self.client[0] if self.client else None
        if address is not None and settings.max_connections_per_address and not self._is_trusted(address):
            if _by_address.get(address, 0) >= settings.max_connections_per_address:
                log.warning(
                    "connection refused: too many connections from one address",
                    extra=fields(client=address, limit=settings.max_connections_per_address),
                )
                transport.abort()
                return
            _by_address[address] = _by_address.get(address, 0) + 1
            _counted[transport] = address
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        _release(self.transport)
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        # uvicorn hands the transport to a new WebSocket protocol, which reads both addresses of the socket again
        # (each read makes a socket object around the descriptor and a system call: ~25 µs of CPU per read in a
        # busy server): it takes this protocol's instead (GuardedWebSocketProtocol.connection_made).
        global _upgrading
        _upgrading = (self.transport, self.server, self.client)
        try:
            super().handle_websocket_upgrade()
        finally:
            _upgrading = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def _is_trusted(self, address: str) -> bool:
        if GuardedHttpToolsProtocol._trusted is None:
            GuardedHttpToolsProtocol._trusted = _TrustedHosts(self.config.forwarded_allow_ips)
        return address in GuardedHttpToolsProtocol._trusted

    def _start_head_timer(self) -> None:
        if getattr(self, "_head_timer", None) is None:
            self._head_timer = self.loop.call_later(_limits().http_header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info(
                "connection closed: request head not complete in time",
                extra=fields(client=self.client[0] if self.client else None, timeout=_limits().http_header_timeout),
            )
            self.transport.close()


# websockets' own records of a socket's life at INFO (`connection open`, which repeats uvicorn's handshake line and
# which logging_setup.NoDuplicateLines drops) are not even made: a record costs tens of microseconds in a busy
# server, and a reconnect storm opens thousands of sockets a second. Its warnings and errors still go out.
_websockets_log = logging.getLogger("uvicorn.error.websockets")
_websockets_log.setLevel(logging.WARNING)


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.logger = _websockets_log
        self.conn.debug = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """uvicorn's, with the addresses the upgrading HTTP protocol of this transport already read."""
        if _upgrading is None or _upgrading[0] is not transport:
            super().connection_made(transport)
            return
        self.connections.add(self)
        self.transport = _upgrading[0]
        self.server, self.client = _upgrading[1], _upgrading[2]
        self.scheme = "wss" if is_ssl(self.transport) else "ws"

    def write_frame(self, frame: bytes) -> bool:
        """Write a text frame serialized once for every socket it goes to (server.sends.server_frame), if this socket
        can take it now: handshake done, open, nothing sent to close it, not applying backpressure, no extension
        negotiated (a compressing socket encodes its own frames), nothing of websockets' own waiting to go out.
        False: send it through the ASGI `send` instead, which waits or raises as it should. (A server's frames are
        not masked, so the same bytes are right for every socket.)"""
        if not self._takes_frames_now():
            return False
        self.transport.write(frame)
        return True

    def write_frames(self, frames: Sequence[bytes]) -> bool:
        """`write_frame` for several frames, in order, in one write (one system call, one TCP segment)."""
        if not self._takes_frames_now():
            return False
        self.transport.write(b"".join(frames))
        return True

    def _takes_frames_now(self) -> bool:
        conn = self.conn
        return not (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or conn.state is not State.OPEN
            or conn.extensions
            or conn.writes
            or conn.expect_continuation_frame
        )

    def start_keepalive(self) -> None:
        # uvicorn calls this once, right after it has written the handshake's answer. It keeps the handshake's
        # request and response (their headers: ~4 KiB) for as long as the socket is open, and reads them only while
        # answering the handshake: drop them here. (Not in an override of `send`: that would add a coroutine to
        # every frame the socket sends.)
        super().start_keepalive()
        self.request = self.response = None  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        _release(self.transport)
        super().connection_lost(exc)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError:
                self.frames = []
                self._violation(close_codes.INVALID_TEXT, "invalid UTF-8 in a text frame")
                return
        super().send_receive_event_to_app()

    def handle_parser_exception(self) -> None:
        sent = self.conn.close_sent
        self._warn(sent.code if sent else close_codes.PROTOCOL_ERROR, str(self.conn.parser_exc or "protocol error"))
        super().handle_parser_exception()

    def _violation(self, code: int, reason: str) -> None:
        self._warn(code, reason)
        if self.conn.close_sent is None:
            self.conn.fail(code, reason)
        super().handle_parser_exception()

    def _warn(self, code: int, reason: str) -> None:
        scope = getattr(self, "scope", None) or {}
        log.warning(
            "closing WebSocket: protocol violation: %s (%d)",
            reason,
            code,
            extra={
                "connection_id": scope.get(SCOPE_CONNECTION_ID),
                "fields": {"client": f"{self.client[0]}:{self.client[1]}" if self.client else None},
            },
        )
