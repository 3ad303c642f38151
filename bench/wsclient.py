"""A minimal asyncio WebSocket client (RFC 6455), lean enough for one process on one core to drive 10,000
connections and tens of thousands of frames a second.

General-purpose clients (`websockets`) cost a task, a queue and a full frame object per message; at the
bench's loads that would make the client the bottleneck. Here a connection is one `asyncio.Protocol`: it
does the HTTP upgrade itself, parses every complete server frame of each read in one pass, and hands a text
message to `on_message(data, start, end, now_ns)` as offsets into the read buffer (no copy), stamped with
one clock reading per read. Client frames are masked as the RFC requires; pings are answered; a close is
answered and awaited.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable
from time import time_ns
from typing import cast

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
FIN_TEXT = 0x80 | OP_TEXT
CLOSE_NORMAL = 1000
CLOSE_ABNORMAL = 1006  # the TCP connection ended without a close frame
MAX_HANDSHAKE_BYTES = 64 * 1024

Handler = Callable[[bytes, int, int, int], None]


class HandshakeError(ConnectionError):
    """The server did not switch protocols."""


class ProtocolError(ConnectionError):
    """The server broke RFC 6455 (e.g. a masked frame)."""


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR `payload` with the repeated 4-byte `key`, as one big-integer operation (fast for chat-sized frames)."""
    n = len(payload)
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keystream, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return header + key + mask(payload, key)


class WebSocket(asyncio.Protocol):
    """One client connection. Until `on_message` is replaced, text messages queue up for `recv()`."""

    def __init__(self, host: str, port: int, path: str, subprotocol: str | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self._key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        # The close code the connection ended with (the server's, or 1006 without a close frame).
        self.closed: asyncio.Future[int] = loop.create_future()
        self.close_code: int | None = None
        self._handshake = b""
        self._buf = b""
        self._fragments: bytearray | None = None
        self._close_sent = False
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.on_message: Handler = self._to_inbox

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            data = self._upgrade(data)
            if not data:
                return
        now = time_ns()
        if self._buf:
            data = self._buf + data
            self._buf = b""
        size = len(data)
        pos = 0
        while size - pos >= 2:
            b0 = data[pos]
            length = data[pos + 1]
            if length < 126:
                start = pos + 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            else:
                self._fail(ProtocolError("the server sent a masked frame"))
                return
            end = start + length
            if end > size:
                break
            if b0 == FIN_TEXT:
                self.on_message(data, start, end, now)
            else:
                self._other_frame(b0, data, start, end, now)
            pos = end
        if pos < size:
            self._buf = data[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or HandshakeError("connection closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(self.close_code if self.close_code is not None else CLOSE_ABNORMAL)

    # -- sending ------------------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Send one text message (UTF-8 bytes)."""
        if self.transport is not None and not self._close_sent:
            self.transport.write(frame(OP_TEXT, payload))

    def handover(self, handler: Handler) -> None:
        """From now on, text messages go to `handler`, starting with those queued for `recv()` meanwhile (a
        server may send its first events in the same read as its handshake's answer)."""
        self.on_message = handler
        now = time_ns()
        while not self._inbox.empty():
            message = self._inbox.get_nowait()
            handler(message, 0, len(message), now)

    async def recv(self, within: float) -> bytes:
        """The next text message, while `on_message` is the default (protocol set-up)."""
        return await asyncio.wait_for(self._inbox.get(), within)

    async def close(self, code: int = CLOSE_NORMAL, grace: float = 5.0) -> None:
        """Send a close frame and wait for the server to close the connection (aborted after `grace` s)."""
        if self.transport is None:
            return
        if not self._close_sent and not self.closed.done():
            self._close_sent = True
            self.transport.write(frame(OP_CLOSE, code.to_bytes(2, "big")))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), grace)
        except TimeoutError:
            self.transport.abort()

    # -- internals ----------------------------------------------------------------------------------

    def _upgrade(self, data: bytes) -> bytes:
        """Consume the HTTP response; what follows its headers is already WebSocket frames."""
        self._handshake += data
        head, sep, rest = self._handshake.partition(b"\r\n\r\n")
        if not sep:
            if len(self._handshake) > MAX_HANDSHAKE_BYTES:
                self._fail(HandshakeError("oversized HTTP response"))
            return b""
        status, *headers = head.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in headers)}
        accept = base64.b64encode(hashlib.sha1(self._key + GUID).digest()).decode()
        if status.split(" ", 2)[1:2] != ["101"]:
            self._fail(HandshakeError(f"upgrade refused: {status}"))
            return b""
        if fields.get("sec-websocket-accept") != accept:
            self._fail(HandshakeError("wrong Sec-WebSocket-Accept"))
            return b""
        self._handshake = b""
        self.opened.set_result(None)
        return rest

    def _other_frame(self, b0: int, data: bytes, start: int, end: int, now: int) -> None:
        opcode = b0 & 0x0F
        final = b0 & 0x80
        if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
            # Servers rarely fragment, but a fragmented message is one message.
            if opcode != OP_CONTINUATION:
                self._fragments = bytearray()
            if self._fragments is None:
                self._fail(ProtocolError("continuation without a first fragment"))
                return
            self._fragments += data[start:end]
            if final:
                message, self._fragments = bytes(self._fragments), None
                self.on_message(message, 0, len(message), now)
        elif opcode == OP_PING:
            if self.transport is not None and not self._close_sent:
                self.transport.write(frame(OP_PONG, data[start:end]))
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(data[start : start + 2], "big") if end - start >= 2 else 1005
            if not self._close_sent and self.transport is not None:
                self._close_sent = True
                self.transport.write(frame(OP_CLOSE, data[start : start + 2]))
        # Pongs and unknown opcodes are ignored.

    def _to_inbox(self, data: bytes, start: int, end: int, now: int) -> None:
        self._inbox.put_nowait(data[start:end])

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


async def connect(host: str, port: int, path: str, *, subprotocol: str | None = None, within: float) -> WebSocket:
    """An open WebSocket (the upgrade completed within `within` seconds), or an exception."""
    loop = asyncio.get_running_loop()
    _, ws = await asyncio.wait_for(
        loop.create_connection(lambda: WebSocket(host, port, path, subprotocol), host, port), within
    )
    try:
        await asyncio.wait_for(asyncio.shield(ws.opened), within)
    except BaseException:
        if ws.transport is not None:
            ws.transport.abort()
        raise
    return ws
