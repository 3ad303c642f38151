"""The Strawberry peer: what the product's own stack gives without the product's fan-out work, plain Strawberry
subscriptions over broadcaster (`memory://`) on uvicorn, written the way their documentation shows.

- `mutation { sendMessage(chatId, content) { … } }` publishes the message to the chat's broadcaster channel;
- `subscription { chatEvents(chatId) { … } }` yields every message of that chat, one async generator per
  subscription, each event resolved for each subscriber by Strawberry;

over graphql-transport-ws (and graphql-ws) at `/graphql`, Strawberry's ASGI app mounted in Starlette, with the
product's uvicorn options. `memory://` hands the published object to the subscribers as it is (no encoding).

`python -m bench.strawberry_server --port P`
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import cast

import strawberry
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL

from bench import serve

broadcast = Broadcast("memory://")


@strawberry.type
class Message:
    id: strawberry.ID
    chat_id: strawberry.ID
    content: str
    sender: str
    created_at: str


@strawberry.type
class Query:
    @strawberry.field
    def health(self) -> str:
        return "ok"


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def send_message(self, chat_id: strawberry.ID, content: str) -> Message:
        message = Message(
            id=strawberry.ID(str(uuid.uuid4())),
            chat_id=chat_id,
            content=content,
            sender="bench",
            created_at=datetime.now(UTC).isoformat(),
        )
        await broadcast.publish(channel=chat_id, message=message)
        return message


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def chat_events(self, chat_id: strawberry.ID) -> AsyncGenerator[Message, None]:
        async with broadcast.subscribe(channel=chat_id) as subscriber:
            # memory:// delivers the published Message itself (broadcaster types it as `str`).
            async for event in subscriber:  # type: ignore[union-attr]  # its __aiter__ is typed Optional
                yield cast(Message, event.message)  # type: ignore[union-attr]


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with broadcast:
        yield


graphql_app: GraphQL[None, None] = GraphQL(schema)
app = Starlette(
    routes=[
        Route("/healthz", serve.healthz),
        Route("/graphql", graphql_app),
        WebSocketRoute("/graphql", graphql_app),
    ],
    lifespan=lifespan,
)


def main() -> None:
    serve.run(app, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
