"""ASGI middleware that guards every WebSocket of the app before any protocol code sees a frame.

- Inbound frames larger than `max_frame_bytes` close the socket with 1009 (message too big).
- On the GraphQL socket, inbound messages are paced by a per-connection token bucket: a client sending faster
  than the limit is slowed down (its messages wait; none is dropped), and one that keeps pushing for long
  enough to be refused `rate_limit_strikes` times is closed with 1008. The legacy endpoint answers each
  refused command with a `RATE_LIMITED` error frame itself (legacy_ws), so it is only size-guarded here.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Settings
from realtime.ratelimit import RateLimiter

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


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
        closed = False

        async def guarded_receive() -> Message:
            nonlocal closed
            if closed:
                return {"type": "websocket.disconnect", "code": CLOSE_POLICY}
            message = await receive()
            if message["type"] != "websocket.receive":
                return message
            if frame_size(message) > self.settings.max_frame_bytes:
                return await close(CLOSE_TOO_BIG, "frame too large")
            if limiter is not None and not limiter.allow():
                if limiter.abusive:
                    return await close(CLOSE_POLICY, "rate limit exceeded")
                await asyncio.sleep(limiter.wait_time())
            return message

        async def close(code: int, reason: str) -> Message:
            nonlocal closed
            closed = True
            log.info("closing WebSocket %s: %s (%d)", scope.get("path"), reason, code)
            try:
                await send({"type": "websocket.close", "code": code, "reason": reason})
            except Exception:  # the socket may be gone already
                pass
            return {"type": "websocket.disconnect", "code": code}

        await self.app(scope, guarded_receive, send)
