"""The floor: a bare Starlette WebSocket broadcast on uvicorn, with the product's uvicorn options.

A connection joins the rooms of its `?rooms=a,b` query. A frame `{"room", "content"}` from any connection
becomes one JSON text, encoded once, written to every socket of the room in turn with `send_text`. No
authentication, storage, ordering guarantees or slow-consumer protection: whatever the product spends
beyond this is the price of what it does.

`python -m bench.baseline_server --port P`
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench import serve

rooms: dict[str, set[WebSocket]] = {}
_connection_ids = itertools.count(1)


async def broadcast(websocket: WebSocket) -> None:
    joined = [r for r in websocket.query_params.get("rooms", "").split(",") if r]
    sender = next(_connection_ids)
    await websocket.accept()
    for room in joined:
        rooms.setdefault(room, set()).add(websocket)
    try:
        while True:
            frame = json.loads(await websocket.receive_text())
            room = frame["room"]
            text = json.dumps(
                {
                    "type": "new_message",
                    "data": {
                        "id": str(uuid.uuid4()),
                        "room": room,
                        "content": frame["content"],
                        "sender": sender,
                        "created_at": datetime.now(UTC).isoformat(),
                    },
                }
            )
            for member in tuple(rooms.get(room, ())):
                try:
                    await member.send_text(text)
                except (WebSocketDisconnect, RuntimeError):  # gone meanwhile
                    rooms[room].discard(member)
    except WebSocketDisconnect:
        pass
    finally:
        for room in joined:
            members = rooms.get(room)
            if members is not None:
                members.discard(websocket)


app = Starlette(routes=[WebSocketRoute("/ws", broadcast), Route("/healthz", serve.healthz)])


def main() -> None:
    serve.run(app, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
