"""Shared fan-out (resolvers.fanout): a chatEvents event is executed once per document and variables, and what
each subscriber receives is exactly what Strawberry's own per-subscriber execution gives."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets

from tests.support import EVENT_TIMEOUT, LEGACY_GRAPHQL_WS, TRANSPORT_WS, Api, User

# Fragments, aliases, a variable in the selection (`full`) and one the resolver consumes (`after`).
DOCUMENT = """
subscription Events($after: String, $full: Boolean!) {
  events: chatEvents(after: $after) {
    kind: __typename
    ... on NewMessage { chatId cursor message { ...Body } }
    ... on GlobalNotification { payload }
  }
}
fragment Body on Message { seq content @include(if: $full) sender { email } }
"""


class RawSubscription:
    """One subscription on its own socket, speaking the protocol by hand: the frames exactly as sent."""

    def __init__(self, api: Api, user: User, protocol: str, variables: dict[str, Any], op_id: str) -> None:
        self.api, self.user, self.protocol, self.variables, self.op_id = api, user, protocol, variables, op_id
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def __aenter__(self) -> RawSubscription:
        self.ws = await websockets.connect(f"{self.api.server.ws_url}/graphql", subprotocols=[self.protocol])
        await self.ws.send(json.dumps({"type": "connection_init", "payload": {"token": self.user.token}}))
        while json.loads(await self.ws.recv())["type"] != "connection_ack":
            pass
        start = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": DOCUMENT, "variables": self.variables, "operationName": "Events"}
        await self.ws.send(json.dumps({"id": self.op_id, "type": start, "payload": payload}))
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            if frame.get("type") in ("next", "data"):
                await self.frames.put(frame)

    async def __aexit__(self, *exc: object) -> None:
        self.reader.cancel()
        await self.ws.close()

    async def next_event(self, kind: str) -> dict[str, Any]:
        deadline = time.monotonic() + EVENT_TIMEOUT
        while True:
            frame = await asyncio.wait_for(self.frames.get(), deadline - time.monotonic())
            assert frame["id"] == self.op_id
            if frame["payload"]["data"]["events"]["kind"] == kind:
                return frame


async def live(api: Api, user: User, *subs: RawSubscription) -> None:
    """Probe until every subscription has delivered a notification: all of them are streaming."""
    pending = set(subs)
    deadline = time.monotonic() + EVENT_TIMEOUT
    while pending and time.monotonic() < deadline:
        await api.notify_user(user.id, {"probe": 1})
        for sub in list(pending):
            try:
                await asyncio.wait_for(sub.next_event("GlobalNotification"), 0.5)
                pending.discard(sub)
            except TimeoutError:
                pass
    assert not pending, "a subscription never became live"


async def test_shared_payload_equals_strawberrys_own_and_respects_the_selection_variables(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    full = {"after": None, "full": True}
    async with (
        RawSubscription(api, bob, TRANSPORT_WS, full, "shared-1") as shared,
        RawSubscription(api, bob, TRANSPORT_WS, full, "shared-2") as twin,
        RawSubscription(api, bob, LEGACY_GRAPHQL_WS, full, "strawberry") as reference,
        RawSubscription(api, bob, TRANSPORT_WS, {"after": None, "full": False}, "short") as short,
    ):
        await live(api, bob, shared, twin, reference, short)
        await api.send(alice, chat_id, "once for everyone")
        frames = {sub.op_id: await sub.next_event("NewMessage") for sub in (shared, twin, reference, short)}

    expected = frames["strawberry"]["payload"]  # Strawberry executed this one itself (graphql-ws)
    assert expected["data"]["events"]["message"] == {
        "seq": 1,
        "content": "once for everyone",
        "sender": {"email": alice.email},
    }
    for op_id in ("shared-1", "shared-2"):
        assert frames[op_id] == {"id": op_id, "type": "next", "payload": expected}
    # Same document, another value of a variable the selection reads: its own payload, not the shared one.
    assert frames["short"]["payload"]["data"]["events"]["message"] == {"seq": 1, "sender": {"email": alice.email}}
