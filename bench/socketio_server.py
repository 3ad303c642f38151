"""The peer: what a Python team would pick instead, python-socketio's `AsyncServer` (ASGI) on uvicorn with
the product's uvicorn options and socket.io's defaults, serving the WebSocket transport only (the bench's
clients open it directly, `EIO=4&transport=websocket`, with no polling first).

A client joins the rooms listed in its connect auth payload (`{"rooms": [...]}`); an event
`send {"room", "content"}` is emitted to the room as `new_message` (socket.io encodes it once per emit).

Its cost is python-socketio's own, not its configuration's (checked against its documentation and measured;
the report's "About socket.io's figures" has the numbers): an emit to a room starts one asyncio task per
recipient, each socket's engine.io writer wakes through `asyncio.wait_for` once per packet, and that churn of
tasks keeps CPython's cyclic garbage collector busy walking every connection's objects. The documented knobs
(`async_mode`, a JSON module, `always_connect`, ping interval and timeout, compression) do not touch that path.

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

sio = socketio.AsyncServer(async_mode="asgi", transports=["websocket"])


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
