"""The peer: what a Python team would pick instead, python-socketio's `AsyncServer` (ASGI) on uvicorn with
the product's uvicorn options and socket.io's defaults.

A client joins the rooms listed in its connect auth payload (`{"rooms": [...]}`); an event
`send {"room", "content"}` is emitted to the room as `new_message` (socket.io encodes it once per emit).

`python -m bench.socketio_server --port P`
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from typing import Any

import socketio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

sio = socketio.AsyncServer(async_mode="asgi")


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
    for room in (auth or {}).get("rooms", []):
        await sio.enter_room(sid, room)


@sio.on("send")
async def send(sid: str, data: dict[str, Any]) -> None:
    message = {
        "id": str(uuid.uuid4()),
        "room": data["room"],
        "content": data["content"],
        "sender": sid,
        "created_at": datetime.now(UTC).isoformat(),
    }
    await sio.emit("new_message", message, room=data["room"])


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = socketio.ASGIApp(sio, other_asgi_app=Starlette(routes=[Route("/healthz", healthz)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app, host=args.host, port=args.port, ws_per_message_deflate=False, access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
