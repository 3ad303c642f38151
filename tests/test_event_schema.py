"""Every event type's GraphQL output matches its one schema (`realtime.codec.payload_schema`).

Each event type in `EVENT_TYPES` is produced through the real server and received on a real `chatEvents`
subscription whose selection set is generated from the schema, so a field added to an event but not to its
GraphQL type fails here, and so does an event type nobody taught this test to produce. `UserJoined` /
`UserLeft` have no GraphQL mutation: the legacy protocol's `join_chat` / `leave_chat` produce them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

import tests.support
from realtime.codec import payload_schema
from realtime.events import EVENT_TYPES, GlobalNotification
from schema.types import EVENT_TYPENAMES
from tests.event_schema import assert_matches, camel_case, graphql_selection
from tests.legacy_client import legacy
from tests.support import Api, User, subscribed


def graphql_schema(event_type: str) -> dict[str, Any]:
    """The GraphQL shape of an event: its payload schema (GlobalNotification's is `{payload: object}`), plus
    the resume `cursor` every durable event carries."""
    cls = EVENT_TYPES[event_type]
    schema = {"payload": "object"} if cls is GlobalNotification else payload_schema(cls)
    if not cls.ephemeral:
        schema["cursor"] = "string"
    return schema


def subscription_document() -> str:
    fragments = " ".join(
        f"... on {EVENT_TYPENAMES[t]} {{ {graphql_selection(graphql_schema(t))} }}" for t in sorted(EVENT_TYPES)
    )
    return f"subscription($after: String) {{ chatEvents(after: $after) {{ __typename {fragments} }} }}"


@dataclass
class World:
    api: Api
    actor: User  # does things
    watcher: User  # subscribed, sees them
    outsider: User  # added to and removed from the chat
    chat_id: str  # a group of actor and watcher


async def mutate(w: World, query: str, variables: dict[str, Any], user: User | None = None) -> None:
    await w.api.data(query, variables, token=(user or w.actor).token)


async def new_message(w: World) -> None:
    await w.api.send(w.actor, w.chat_id, "schema check", client_id="device-1:42")


async def messages_read(w: World) -> None:
    await w.api.send(w.watcher, w.chat_id, "read me")
    await mutate(w, "mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }", {"c": w.chat_id})


async def user_typing(w: World) -> None:
    await mutate(w, "mutation($c: ID!) { setTyping(chatId: $c, isTyping: true) }", {"c": w.chat_id})


async def user_stopped_typing(w: World) -> None:
    await user_typing(w)
    await mutate(w, "mutation($c: ID!) { setTyping(chatId: $c, isTyping: false) }", {"c": w.chat_id})


async def user_online(w: World) -> None:
    """The actor's first connection (the world's actor acts over HTTP only, so it is offline until now)."""
    async with legacy(w.api, w.actor) as client:
        await client.marker("online")


async def user_offline(w: World) -> None:
    await user_online(w)  # and the connection closed: offline after the suite server's PRESENCE_GRACE


async def user_joined(w: World) -> None:
    async with legacy(w.api, w.actor) as client:
        await client.send("join_chat", {"chat_id": w.chat_id})
        await client.marker("joined")  # the command was served


async def user_left(w: World) -> None:
    async with legacy(w.api, w.actor) as client:
        await client.send("leave_chat", {"chat_id": w.chat_id})
        await client.marker("left")


async def chat_created(w: World) -> None:
    await w.api.new_chat(w.actor, w.watcher, w.outsider, name="created for the schema", is_group=True)


ADD_MEMBER = "mutation($c: ID!, $u: ID!) { addChatMember(chatId: $c, userId: $u) { id } }"


async def member_added(w: World) -> None:
    await mutate(w, ADD_MEMBER, {"c": w.chat_id, "u": w.outsider.id})


async def member_removed(w: World) -> None:
    await member_added(w)
    await mutate(
        w,
        "mutation($c: ID!, $u: ID!) { removeChatMember(chatId: $c, userId: $u) }",
        {"c": w.chat_id, "u": w.outsider.id},
    )


async def global_notification(w: World) -> None:
    await w.api.notify_user(w.watcher.id, {"type": "account_warning", "message": "schema", "nested": {"n": [1, 2]}})


async def block_changed(w: World) -> None:
    """To the blocker's own connections: the watcher blocks the outsider."""
    await mutate(w, "mutation($u: ID!) { blockUser(userId: $u) }", {"u": w.outsider.id}, user=w.watcher)


EDIT = "mutation($m: ID!, $t: String!, $k: String) { editMessage(id: $m, content: $t, clientId: $k) { id } }"


async def message_edited(w: World) -> None:
    sent = await w.api.send(w.actor, w.chat_id, "before the edit")
    await mutate(w, EDIT, {"m": sent["id"], "t": "after the edit", "k": "device-1:edit-1"})


async def message_deleted(w: World) -> None:
    sent = await w.api.send(w.actor, w.chat_id, "to be deleted")
    await mutate(w, "mutation($m: ID!) { deleteMessage(id: $m) { id } }", {"m": sent["id"]})


async def reaction_changed(w: World) -> None:
    sent = await w.api.send(w.actor, w.chat_id, "react to me")
    await mutate(w, 'mutation($m: ID!) { addReaction(messageId: $m, emoji: "👍") { id } }', {"m": sent["id"]})


async def resync_required(w: World) -> None:
    """Produced by subscribing with a cursor that cannot be replayed (see RESUME_FROM)."""


# Event types that only appear at the start of a subscription resuming from this cursor.
RESUME_FROM = {"resync_required": "not-a-cursor"}


PRODUCERS: dict[str, Callable[[World], Awaitable[None]]] = {
    "new_message": new_message,
    "messages_read": messages_read,
    "user_typing": user_typing,
    "user_stopped_typing": user_stopped_typing,
    "user_online": user_online,
    "user_offline": user_offline,
    "user_joined": user_joined,
    "user_left": user_left,
    "chat_created": chat_created,
    "member_added": member_added,
    "member_removed": member_removed,
    "global_notification": global_notification,
    "block_changed": block_changed,
    "message_edited": message_edited,
    "message_deleted": message_deleted,
    "reaction_changed": reaction_changed,
    "resync_required": resync_required,
}


def test_every_event_type_has_a_producer_here_and_a_graphql_type() -> None:
    assert set(PRODUCERS) == set(EVENT_TYPES), "teach this test to produce each event type in EVENT_TYPES"
    assert set(EVENT_TYPENAMES) == set(EVENT_TYPES), "schema.types.EVENT_TYPENAMES must name every event type"


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
async def test_graphql_output_of_event_matches_its_schema(
    event_type: str, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = PRODUCERS.get(event_type)
    assert producer is not None, f"no producer for {event_type!r}: add one to PRODUCERS"
    typename = EVENT_TYPENAMES[event_type]
    # The harness's Subscriber runs `tests.support.CHAT_EVENTS`: here, every field the schema names.
    monkeypatch.setattr(tests.support, "CHAT_EVENTS", subscription_document())

    actor, watcher, outsider = (
        await api.new_user("actor"),
        await api.new_user("watcher"),
        await api.new_user("outsider"),
    )
    # Nullable fields carry values where the event allows, so both their type and their presence are checked.
    await api.data(
        "mutation($id: ID, $e: String!, $i: String) { upsertUser(id: $id, email: $e, imageUrl: $i) { id } }",
        {"id": actor.id, "e": actor.email, "i": "https://img.test/actor.png"},
        token=api.service_token,
    )
    chat_id = await api.new_chat(actor, watcher, name="schema", is_group=True)
    world = World(api=api, actor=actor, watcher=watcher, outsider=outsider, chat_id=chat_id)

    async with subscribed(api, watcher, after=RESUME_FROM.get(event_type), presence=True) as sub:
        await producer(world)
        event = await sub.next(typename)

    payload = {k: v for k, v in event.items() if k != "__typename"}
    assert_matches(graphql_schema(event_type), payload, camel=True)
    if "chatId" in payload and event_type != "chat_created":
        assert payload["chatId"] == chat_id


# -- the checker itself: a checker that accepts anything would make the tests above vacuous ------------

CHECKER_SCHEMA: dict[str, Any] = {
    "chat_id": "string",
    "last_read_seq": "integer",
    "is_group": "boolean",
    "member_ids": "array",
    "name": "string?",
    "sender": {"id": "string", "image_url": "string?"},
    "reply_to": {"?": {"id": "string"}},
    "counts": [{"emoji": "string", "count": "integer"}],
}
GOOD = {
    "chat_id": "c",
    "last_read_seq": 3,
    "is_group": False,
    "member_ids": ["a"],
    "name": None,
    "sender": {"id": "u", "image_url": None},
    "reply_to": None,
    "counts": [{"emoji": "+1", "count": 2}],
}


def _camel(payload: dict[str, Any]) -> dict[str, Any]:
    return {camel_case(k): (_camel(v) if isinstance(v, dict) else v) for k, v in payload.items()}


def test_checker_accepts_matching_payloads_in_both_spellings() -> None:
    assert_matches(CHECKER_SCHEMA, GOOD, camel=False)
    assert_matches(CHECKER_SCHEMA, _camel(GOOD), camel=True)
    assert_matches(CHECKER_SCHEMA, {**GOOD, "name": "n", "reply_to": {"id": "m"}}, camel=False)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({k: v for k, v in GOOD.items() if k != "name"}, id="missing field"),
        pytest.param({**GOOD, "cursor": "x"}, id="unexpected field"),
        pytest.param({**GOOD, "last_read_seq": "3"}, id="string for integer"),
        pytest.param({**GOOD, "last_read_seq": True}, id="boolean for integer"),
        pytest.param({**GOOD, "is_group": 0}, id="integer for boolean"),
        pytest.param({**GOOD, "chat_id": None}, id="null for non-nullable"),
        pytest.param({**GOOD, "member_ids": {}}, id="object for array"),
        pytest.param({**GOOD, "sender": {"id": "u"}}, id="nested missing field"),
        pytest.param({**GOOD, "sender": None}, id="null nested object"),
        pytest.param({**GOOD, "reply_to": {"id": 1}}, id="nested nullable with wrong type"),
        pytest.param({**GOOD, "counts": {"emoji": "+1", "count": 2}}, id="object for array of objects"),
        pytest.param({**GOOD, "counts": [{"emoji": "+1"}]}, id="array item missing field"),
    ],
)
def test_checker_rejects_payloads_that_drift_from_the_schema(bad: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        assert_matches(CHECKER_SCHEMA, bad, camel=False)


def test_checker_rejects_the_other_spelling() -> None:
    with pytest.raises(AssertionError):
        assert_matches(CHECKER_SCHEMA, GOOD, camel=True)  # snake_case where camelCase is expected
