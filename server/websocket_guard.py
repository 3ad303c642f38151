"""ASGI middleware that guards every WebSocket of the app before any protocol code sees a frame.

- Inbound frames larger than `max_frame_bytes` close the socket with 1009 (message too big).
- On the GraphQL socket, a message that is not a protocol message at all (not a JSON object, a non-string `id`
  or `type`, a `payload` that is not an object) closes with 4400 before Strawberry's handler sees it: that
  handler crashes on such input instead of closing (found by tests/test_fuzz.py).
- On the GraphQL socket, inbound messages are paced by a per-connection token bucket: a client sending faster
  than the limit is slowed down (its messages wait; none is dropped), and one that keeps pushing for long
  enough to be refused `rate_limit_strikes` times is closed with 1008. The legacy endpoint answers each
  refused command with a `RATE_LIMITED` error frame itself (legacy_ws), so it is only size-guarded here.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from realtime import close_codes
from realtime.ratelimit import RateLimiter
from resolvers.limits import request_shape_error
from server.config import Settings
from server.sends import SCOPE_SEND, GuardedSend

log = logging.getLogger(__name__)


def frame_size(message: Message) -> int:
    """An inbound frame's size in bytes (text is measured in UTF-8 only when it could matter)."""
    if message.get("bytes") is not None:
        return len(message["bytes"])
    text = message.get("text") or ""
    return len(text) if text.isascii() else len(text.encode())


class WebSocketGuard:
    def __init__(self, app: ASGIApp, settings: Settings, *, paced_paths: tuple[str, ...] = ("/graphql",)) -> None:
        self.app = app
        self.settings = settings
        self.paced_paths = paced_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        limiter = RateLimiter.for_connection(self.settings) if scope.get("path") in self.paced_paths else None
        graphql = scope.get("path") in self.paced_paths
        guarded_send = scope[SCOPE_SEND] = GuardedSend(send)

        async def guarded_receive() -> Message:
            if guarded_send.closed:
                return {"type": "websocket.disconnect", "code": close_codes.POLICY}
            message = await receive()
            if message["type"] != "websocket.receive":
                return message
            if frame_size(message) > self.settings.max_frame_bytes:
                return await close(close_codes.TOO_BIG, "frame too large")
            if graphql and not is_protocol_message(message):
                return await close(close_codes.BAD_MESSAGE, "invalid message")
            if limiter is not None and not limiter.allow():
                if limiter.abusive:
                    return await close(close_codes.POLICY, "rate limit exceeded")
                await asyncio.sleep(limiter.wait_time())
            return message

        async def close(code: int, reason: str) -> Message:
            guarded_send.closed = True
            log.warning("closing WebSocket %s: protocol violation: %s (%d)", scope.get("path"), reason, code)
            try:
                await send({"type": "websocket.close", "code": code, "reason": reason})
            except Exception:  # the socket may be gone already
                pass
            return {"type": "websocket.disconnect", "code": code}

        try:
            await self.app(scope, guarded_receive, guarded_send)
        finally:
            # The scope is the server protocol's, and the guarded send leads back to it: left there, the two would
            # be a cycle every closed socket leaves to a full garbage collection instead of reference counting.
            scope.pop(SCOPE_SEND, None)


def is_protocol_message(message: Message) -> bool:
    """A graphql-transport-ws / graphql-ws message shape: a JSON object with a string `type`, an optional
    string `id` and an optional object (or null) `payload`. Anything finer is the protocol handler's job."""
    text = message.get("text")
    if text is None:
        return False
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    if not isinstance(data, dict) or not isinstance(data.get("type"), str) or len(data["type"]) > 64:
        return False
    if "id" in data and not isinstance(data["id"], str):
        return False
    payload = data.get("payload")
    if payload is not None and not isinstance(payload, dict):
        return False
    if data["type"] in ("subscribe", "start"):  # an operation: graphql-transport-ws / graphql-ws
        return request_shape_error(payload) is None
    return True
