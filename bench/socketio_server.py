"""The peer: what a Python team would pick instead, python-socketio's `AsyncServer` (ASGI) on uvicorn with
the product's uvicorn options and socket.io's defaults.

A client joins the rooms listed in its connect auth payload (`{"rooms": [...]}`); an event
`send {"room", "content"}` is emitted to the room as `new_message` (socket.io encodes it once per emit).

`python -m bench.socketio_server --port P`
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import socketio
from starlette.applications import Starlette
from starlette.routing import Route

from bench import serve

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


app = socketio.ASGIApp(sio, other_asgi_app=Starlette(routes=[Route("/healthz", serve.healthz)]))


def main() -> None:
    serve.run(app, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
