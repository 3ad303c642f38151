"""A socket's send as the server gives it, past the framework's wrappers, for the frames a fan-out writes.

Every ASGI wrapper of `send` between the server and an endpoint is a coroutine per frame, and a fan-out writes each
event to thousands of sockets. The WebSocket guard (server.websocket_guard) keeps the one rule it adds to `send` in
a plain callable that returns the server's own coroutine (`GuardedSend`) and leaves it in the socket's scope;
the framework's wrappers between it and the endpoints (Starlette's exception handling) act on HTTP responses only,
so an endpoint may write its events through it directly (`direct_send`).
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import Message, Scope, Send

# The key of a socket's `GuardedSend` in its ASGI scope (`direct_send`).
SCOPE_SEND = "tailtrail.guarded_send"


class GuardedSend:
    """A socket's send as the server gives it, with the guard's one rule: once the guard closed the socket, what the
    app still sends has nowhere to go and is dropped.

    A plain callable returning the server's own coroutine, not a coroutine of its own: a fan-out writes each event
    to thousands of sockets, and every wrapper between it and the server costs a coroutine per frame."""

    __slots__ = ("_send", "closed")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.closed = False

    def __call__(self, message: Message) -> Awaitable[None]:
        if self.closed and message["type"] == "websocket.send":
            return dropped()
        return self._send(message)


async def dropped() -> None:
    """What a send that sends nothing returns."""
    return None


def direct_send(scope: Scope, send: Send) -> Send:
    """The socket's guarded send, past the framework's wrappers between the guard and the endpoint (Starlette's
    exception handling, which acts on HTTP responses only): for the frames a fan-out writes. `send` without a guard."""
    guarded = scope.get(SCOPE_SEND)
    return guarded if isinstance(guarded, GuardedSend) else send
