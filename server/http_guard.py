"""ASGI middleware that bounds every HTTP request body to `max_request_bytes` (`MAX_REQUEST_BYTES`).

A body announced larger (`Content-Length`) is answered 413 at once, unread, and the connection closed: the
client's remaining bytes are never buffered. A body without a length (chunked) is counted as the application
reads it; past the limit the application is told the client went away and the client gets 413. Either way
the server holds at most `max_request_bytes` of one body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.logging_setup import fields, peer

log = logging.getLogger(__name__)


class RequestBodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: a WebSocket (not guarded here) runs the app's coroutine directly, without a
        # frame of this middleware held for as long as the socket is open.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        return self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        announced = _content_length(scope)
        if announced is not None and announced > self.max_bytes:
            await self._refuse(scope, send, announced)
            return
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await self._refuse(scope, send, received)
                    return {"type": "http.disconnect"}  # the application stops reading and answers nobody
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # 413 went out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # the application failed on the cut-off body (Starlette raises ClientDisconnect): answered already

    async def _refuse(self, scope: Scope, send: Send, size: int) -> None:
        log.info(
            "request body refused: over MAX_REQUEST_BYTES",
            extra=fields(client=peer(scope), path=scope.get("path"), size=size, limit=self.max_bytes),
        )
        body = json.dumps(
            {
                "errors": [
                    {
                        "message": f"request body larger than {self.max_bytes} bytes",
                        "extensions": {"code": "PAYLOAD_TOO_LARGE"},
                    }
                ]
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is not read: this connection cannot carry another request.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
