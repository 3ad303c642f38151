"""A socket's send as the server gives it, past the framework's wrappers, for the frames a fan-out writes.

Every ASGI wrapper of `send` between the server and an endpoint is a coroutine per frame, and a fan-out writes each
event to thousands of sockets. The WebSocket guard (server.websocket_guard) keeps the one rule it adds to `send` in
a plain callable that returns the server's own coroutine (`GuardedSend`) and leaves it in the socket's scope;
the framework's wrappers between it and the endpoints (Starlette's exception handling) act on HTTP responses only,
so an endpoint may write its events through it directly (`direct_send`).
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Sequence
from typing import Protocol

from starlette.types import Message, Scope, Send

# The key of a socket's `GuardedSend` in its ASGI scope (`direct_send`).
SCOPE_SEND = "tailtrail.guarded_send"


class GuardedSend:
    """A socket's send as the server gives it, with the guard's one rule: once a close went out — the guard's
    (`closed`) or the app's own —, what the app still sends has nowhere to go and is dropped. (A task of the app
    may still be sending an event when another closes the socket: the server would refuse that send with an error.)

    A plain callable returning the server's own coroutine, not a coroutine of its own: a fan-out writes each event
    to thousands of sockets, and every wrapper between it and the server costs a coroutine per frame."""

    __slots__ = ("_frames", "_send", "closed", "ended")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.closed = False  # the guard closed the socket
        self.ended = False  # a close went out, the guard's or the app's
        # The server's protocol object, when it can write a frame serialized once for many sockets
        # (server.uvicorn_protocols): `send` is its bound method.
        frames = getattr(send, "__self__", None)
        self._frames: FrameWriter | None = frames if callable(getattr(frames, "write_frame", None)) else None

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "websocket.send":
            if self.ended or self.closed:
                return dropped()
        elif kind == "websocket.close":
            self.ended = True
        return self._send(message)

    def write_frame(self, frame: bytes) -> bool:
        """Write `frame` (`server_frame`) now, without a coroutine, if the socket can take it now; True also when a
        close went out (the frame is dropped, as `__call__` drops it). False: send it the ASGI way."""
        if self.ended or self.closed:
            return True
        return self._frames is not None and self._frames.write_frame(frame)

    def write_frames(self, frames: Sequence[bytes]) -> bool:
        """`write_frame` for several frames, in order, in one write."""
        if self.ended or self.closed:
            return True
        return self._frames is not None and self._frames.write_frames(frames)


class FrameWriter(Protocol):
    def write_frame(self, frame: bytes) -> bool: ...

    def write_frames(self, frames: Sequence[bytes]) -> bool: ...


_MEDIUM = struct.Struct("!BBH").pack
_LONG = struct.Struct("!BBQ").pack
_TEXT_FINAL = 0x81  # FIN + opcode 1 (text): one whole message in one frame


def server_frame(text: str) -> bytes:
    """A complete text frame from the server, the bytes websockets serializes (unmasked, no extension): the same
    for every socket that takes it. RFC 6455's header written here: a GraphQL frame is made per subscriber, and
    websockets' frame object and its checks cost ~1.7 µs a frame where these lines cost ~0.3."""
    data = text.encode()
    size = len(data)
    if size < 126:
        return bytes((_TEXT_FINAL, size)) + data
    if size < 65536:
        return _MEDIUM(_TEXT_FINAL, 126, size) + data
    return _LONG(_TEXT_FINAL, 127, size) + data


async def dropped() -> None:
    """What a send that sends nothing returns."""
    return None


def direct_send(scope: Scope, send: Send) -> Send:
    """The socket's guarded send, past the framework's wrappers between the guard and the endpoint (Starlette's
    exception handling, which acts on HTTP responses only): for the frames a fan-out writes. `send` without a guard."""
    guarded = scope.get(SCOPE_SEND)
    return guarded if isinstance(guarded, GuardedSend) else send
