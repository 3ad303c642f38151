"""Every legacy server->client frame matches docs/protocols.md, checked against the same event schema as GraphQL.

Events: each frame's `data` is the event's `payload_schema` in snake_case — `new_message` flattens its
message (plus the original's `is_read`), `global_notification` is the notification object as given — and
durable events carry a top-level `cursor`. Replies (`my_chats`, `chat_status`, `error`) follow docs/protocols.md.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from realtime.codec import payload_schema
from realtime.events import EVENT_TYPES, GlobalNotification, NewMessage
from tests.event_schema import assert_matches
from tests.legacy_client import LegacyClient, legacy
from tests.support import Api
from tests.test_event_schema import PRODUCERS, RESUME_FROM, World


def legacy_schema(event_type: str) -> dict[str, Any] | None:
    """The `data` schema of an event's legacy frame (None: the notification object as given)."""
    cls = EVENT_TYPES[event_type]
    if cls is GlobalNotification:
        return None
    schema = payload_schema(cls)
    if cls is NewMessage:
        # docs/protocols.md: the message's fields at the top of `data`, with the original's `is_read`.
        return {**schema["message"], "is_read": "boolean"}
    return schema


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
async def test_legacy_frame_of_event_matches_the_event_schema(event_type: str, api: Api) -> None:
    actor, watcher, outsider = (
        await api.new_user("actor"),
        await api.new_user("watcher"),
        await api.new_user("outsider"),
    )
    chat_id = await api.new_chat(actor, watcher, name="schema", is_group=True)
    world = World(api=api, actor=actor, watcher=watcher, outsider=outsider, chat_id=chat_id)

    client = LegacyClient(api, watcher)
    if event_type in RESUME_FROM:
        client.url += f"&cursor={RESUME_FROM[event_type]}"
    await client.connect()
    try:
        if event_type in RESUME_FROM:
            frame = await client.next(event_type)  # the first frame of the resumed stream
        else:
            await client.ready()
            await PRODUCERS[event_type](world)
            frame = await client.next(event_type)
    finally:
        await client.close()

    cls = EVENT_TYPES[event_type]
    assert set(frame) == ({"type", "data"} if cls.ephemeral else {"type", "data", "cursor"}), frame
    if not cls.ephemeral:
        assert isinstance(frame["cursor"], str) and frame["cursor"]
    schema = legacy_schema(event_type)
    if schema is None:
        assert frame["data"] == {"type": "account_warning", "message": "schema", "nested": {"n": [1, 2]}}
    else:
        assert_matches(schema, frame["data"], camel=False)
    if "chat_id" in frame["data"] and event_type != "chat_created":
        assert frame["data"]["chat_id"] == chat_id


def test_every_event_type_has_a_legacy_frame_check() -> None:
    assert set(PRODUCERS) == set(EVENT_TYPES)


# -- replies (docs/protocols.md) ----------------------------------------------------------------------------

PARTICIPANT = {
    "id": "string",
    "email": "string",
    "image_url": "string?",
    "is_online": "boolean",
    "last_seen": "string?",
}
MY_CHAT = {
    "id": "string",
    "name": "string?",
    "is_group": "boolean",
    "created_at": "string",
    "updated_at": "string",
    "participants": "array",
    "last_message": "string?",
    "last_message_time": "string?",
    "unread_count": "integer",
    "is_connected": "boolean",
    "admin_id": "string?",
}
CHAT_PRESENCE = {"chat_id": "string", "online_users": "array", "typing_users": "array", "users_count": "integer"}


async def test_replies_and_errors_match_spec_shapes(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    await api.send(bob, chat_id, "hello")
    async with legacy(api, alice) as a:
        my_chats = await a.request("get_my_chats", reply="my_chats")
        status = await a.request("get_chat_status", reply="chat_status")
        await a.send("", raw=json.dumps({"type": "mark_read", "data": {"chat_id": "nope"}}))
        error = await a.next("error")

    assert set(my_chats) == {"type", "data"} and set(my_chats["data"]) == {"chats", "total_chats"}
    assert my_chats["data"]["total_chats"] == 1
    for chat in my_chats["data"]["chats"]:
        assert_matches(MY_CHAT, chat, camel=False)
        for participant in chat["participants"]:
            assert_matches(PARTICIPANT, participant, camel=False)

    assert set(status["data"]) == {"chats", "total_online_users"}
    assert isinstance(status["data"]["total_online_users"], int)
    for presence in status["data"]["chats"]:
        assert_matches(CHAT_PRESENCE, presence, camel=False)

    assert error["type"] == "error"
    assert_matches({"message": "string", "code": "string", "details": "object"}, error["data"], camel=False)
    assert error["data"]["code"] == "BAD_REQUEST"
