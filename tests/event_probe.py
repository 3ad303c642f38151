"""A throwaway event type declared through the registry alone, and the app with a producer for it (tests only).

`uvicorn tests.event_probe:app` serves the product with one more event type, `chat_pinged`: its declaration
below is the only place that names it. `POST /probe/ping {"chat_id", "user_id", "note"}` records one in the chat
as that member (the producer a real event type would have in `services/`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from realtime.events import Event, registered


@registered
@dataclass(frozen=True, slots=True)
class ChatPinged(Event):
    """A member pinged the chat."""

    type: ClassVar[str] = "chat_pinged"
    graphql_description: ClassVar[str | None] = "A member pinged the chat (a test's throwaway event type)."
    to_others: ClassVar[bool] = True
    chat_id: uuid.UUID
    user_id: uuid.UUID
    note: str


async def ping(request: Request) -> JSONResponse:
    body = await request.json()
    chat_id, user_id = uuid.UUID(body["chat_id"]), uuid.UUID(body["user_id"])
    event = ChatPinged(chat_id=chat_id, user_id=user_id, note=body["note"])
    recorded = await request.app.state.runtime.store.record_chat_event(event, chat_id=chat_id, member=user_id)
    return JSONResponse({"recorded": recorded})


def probe_app() -> Starlette:
    # Imported here, after the declaration above: the GraphQL schema is built from the registry on import.
    from app import create_app

    built = create_app()
    built.router.routes.insert(0, Route("/probe/ping", ping, methods=["POST"]))
    return built


app = probe_app()
