"""The event registry is the one place that names an event type: a throwaway type declared in
tests/event_probe.py alone is delivered over both protocols, with its cursor, and is a member of GraphQL's
`ChatEvent` union — through a real server, a real legacy socket and a real gql subscription."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.legacy_client import LegacyClient
from tests.support import Api, Server, Subscriber

PINGS = """
subscription($after: String) {
  chatEvents(after: $after) {
    __typename
    ... on ChatPinged { chatId userId note cursor }
    ... on GlobalNotification { payload }
  }
}
"""


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("event-probe")
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{root / 'server.db'}", "GRAPHQL_INTROSPECTION": "on"}
    server = Server(env, root / "server.log", app="tests.event_probe:app").start()
    yield server
    server.stop()


async def test_a_type_declared_in_the_registry_alone_reaches_both_protocols_and_the_union(
    probe_server: Server,
) -> None:
    api = Api(probe_server)
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)

    union = await api.data('{ __type(name: "ChatEvent") { possibleTypes { name description } } }')
    members = {t["name"]: t["description"] for t in union["__type"]["possibleTypes"]}
    assert members["ChatPinged"] == "A member pinged the chat (a test's throwaway event type)."
    assert "NewMessage" in members

    legacy = await LegacyClient(api, bob).connect()
    await legacy.ready()  # commands are served once the stream is live
    graphql = await Subscriber(api, bob, query=PINGS).start()  # live: a probe notification came through
    async with httpx.AsyncClient(base_url=probe_server.url) as http:
        answer = await http.post("/probe/ping", json={"chat_id": chat_id, "user_id": alice.id, "note": "hello"})
    assert answer.json() == {"recorded": True}

    frame = await legacy.next("chat_pinged")
    assert frame["data"] == {"chat_id": chat_id, "user_id": alice.id, "note": "hello"}
    assert isinstance(frame["cursor"], str) and frame["cursor"]

    event = await graphql.next("ChatPinged")
    assert event == {
        "__typename": "ChatPinged",
        "chatId": chat_id,
        "userId": alice.id,
        "note": "hello",
        "cursor": event["cursor"],
    }
    assert event["cursor"]
    await graphql.close()
    await legacy.close()
