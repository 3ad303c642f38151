"""Editing and deleting messages (docs/protocols.md "Editing, deleting, reacting"), through a real server, on both
protocols: who may, who hears of it (every member, the actor's other devices too), history and the chat list
(edited text, tombstones), retries, and resume."""

from __future__ import annotations

import uuid
from typing import Any

from tests.legacy_client import LegacyClient, legacy
from tests.support import Api, Subscriber, User, subscribed

EDIT = (
    "mutation($m: ID!, $t: String!, $k: String) { editMessage(id: $m, content: $t, clientId: $k) "
    "{ id content editedAt updatedAt deletedAt } }"
)
DELETE = "mutation($m: ID!) { deleteMessage(id: $m) { id content editedAt deletedAt } }"
HISTORY = "query($c: ID!) { messages(chatId: $c) { id seq content createdAt updatedAt editedAt deletedAt } }"
LAST = "{ myChats { id lastMessage { id content editedAt deletedAt } } }"


async def edit(api: Api, user: User | str, message_id: str, content: str, client_id: str | None = None) -> Any:
    token = user if isinstance(user, str) else user.token
    return (await api.data(EDIT, {"m": message_id, "t": content, "k": client_id}, token=token))["editMessage"]


async def delete(api: Api, token: str, message_id: str) -> Any:
    return (await api.data(DELETE, {"m": message_id}, token=token))["deleteMessage"]


async def history(api: Api, user: User, chat_id: str) -> dict[str, Any]:
    return {m["id"]: m for m in (await api.data(HISTORY, {"c": chat_id}, token=user.token))["messages"]}


async def last_message(api: Api, user: User, chat_id: str) -> Any:
    chats = {c["id"]: c for c in (await api.data(LAST, token=user.token))["myChats"]}
    return chats[chat_id]["lastMessage"]


async def group(api: Api) -> tuple[User, User, User, str]:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    return alice, bob, carol, await api.new_chat(alice, bob, carol, name="walkers", is_group=True)


PRESENCE = {"UserOnline", "UserOffline", "user_online", "user_offline"}


def kinds(heard: list[dict[str, Any]]) -> list[str]:
    """The types of what a stream heard (GraphQL typenames or legacy frame types), but presence: others' connections
    coming and going is not what these tests are about."""
    return [k for k in (e.get("__typename") or e["type"] for e in heard) if k not in PRESENCE]


async def test_only_the_sender_edits_and_every_member_and_their_other_devices_hear_it(api: Api) -> None:
    alice, bob, carol, chat_id = await group(api)
    sent = await api.send(alice, chat_id, "walk at 6")
    async with (
        subscribed(api, alice) as alice_phone,
        legacy(api, alice) as alice_laptop,
        legacy(api, bob) as bob_legacy,
        subscribed(api, carol) as carol_gql,
    ):
        assert await api.error_code(EDIT, {"m": sent["id"], "t": "walk at 5"}, token=bob.token) == "FORBIDDEN"
        assert await api.error_code(EDIT, {"m": sent["id"], "t": "walk at 5"}, token=api.service_token) == "FORBIDDEN"
        await bob_legacy.send("edit_message", {"message_id": sent["id"], "content": "walk at 4"})
        assert (await bob_legacy.next("error"))["data"]["code"] == "FORBIDDEN"

        answer = await edit(api, alice, sent["id"], "walk at 7", client_id="phone:e1")
        assert answer["content"] == "walk at 7" and answer["editedAt"] == answer["updatedAt"]
        assert answer["deletedAt"] is None

        for sub in (alice_phone, carol_gql):
            event = await sub.next("MessageEdited")
            assert {k: event[k] for k in ("chatId", "messageId", "messageSeq", "userId", "content", "clientId")} == {
                "chatId": chat_id,
                "messageId": sent["id"],
                "messageSeq": sent["seq"],
                "userId": alice.id,
                "content": "walk at 7",
                "clientId": "phone:e1",
            }
            assert event["editedAt"] == answer["editedAt"] and event["cursor"]
        for client in (alice_laptop, bob_legacy):
            frame = await client.next("message_edited")
            assert frame["cursor"] and frame["data"] == {
                "chat_id": chat_id,
                "message_id": sent["id"],
                "message_seq": sent["seq"],
                "user_id": alice.id,
                "content": "walk at 7",
                "edited_at": frame["data"]["edited_at"],
                "client_id": "phone:e1",
            }

        # The legacy command: the sender's own connection hears it too (that is its acknowledgement).
        await alice_laptop.send("edit_message", {"message_id": sent["id"], "content": "walk at 8"})
        assert (await alice_laptop.next("message_edited"))["data"]["content"] == "walk at 8"
        assert (await carol_gql.next("MessageEdited"))["content"] == "walk at 8"
        assert (await alice_phone.next("MessageEdited"))["content"] == "walk at 8"
    assert (await history(api, bob, chat_id))[sent["id"]]["content"] == "walk at 8"


async def test_history_and_the_chat_list_show_edits_and_tombstones_on_both_protocols(api: Api) -> None:
    alice, bob, _, chat_id = await group(api)
    first = await api.send(alice, chat_id, "first")
    second = await api.send(alice, chat_id, "second")
    await edit(api, alice, second["id"], "second, edited")

    seen = await history(api, bob, chat_id)
    assert seen[first["id"]]["editedAt"] is None and seen[first["id"]]["updatedAt"] == seen[first["id"]]["createdAt"]
    assert seen[second["id"]]["content"] == "second, edited" and seen[second["id"]]["editedAt"]
    assert seen[second["id"]]["updatedAt"] == seen[second["id"]]["editedAt"] and seen[second["id"]]["deletedAt"] is None
    assert (await last_message(api, bob, chat_id))["content"] == "second, edited"
    async with legacy(api, bob) as client:
        chats = {c["id"]: c for c in (await client.request("get_my_chats", reply="my_chats"))["data"]["chats"]}
        assert chats[chat_id]["last_message"] == "second, edited"

        tombstone = await delete(api, alice.token, second["id"])
        assert tombstone == {"id": second["id"], "content": "", "editedAt": seen[second["id"]]["editedAt"],
                             "deletedAt": tombstone["deletedAt"]}  # fmt: skip
        assert tombstone["deletedAt"]

        page = await client.request("get_messages", {"chat_id": chat_id}, reply="messages")
        legacy_seen = {m["id"]: m for m in page["data"]["messages"]}
        assert legacy_seen[first["id"]]["content"] == "first" and legacy_seen[first["id"]]["deleted_at"] is None
        assert legacy_seen[second["id"]]["content"] == "" and legacy_seen[second["id"]]["deleted_at"]
        assert legacy_seen[second["id"]]["seq"] == second["seq"]  # the tombstone keeps its place
        chats = {c["id"]: c for c in (await client.request("get_my_chats", reply="my_chats"))["data"]["chats"]}
        assert chats[chat_id]["last_message"] == ""

    seen = await history(api, bob, chat_id)
    assert [m["seq"] for m in seen.values()] == [first["seq"], second["seq"]]
    assert seen[second["id"]]["content"] == "" and seen[second["id"]]["deletedAt"] == tombstone["deletedAt"]
    last = await last_message(api, bob, chat_id)
    assert last["id"] == second["id"] and last["content"] == "" and last["deletedAt"] == tombstone["deletedAt"]


async def test_the_sender_or_a_service_deletes_once_and_everyone_hears_it_once(api: Api) -> None:
    alice, bob, carol, chat_id = await group(api)
    mallory = await api.new_user("mallory")
    mine, other = await api.send(alice, chat_id, "oops"), await api.send(bob, chat_id, "rude")
    async with legacy(api, alice) as alice_laptop, subscribed(api, carol) as carol_gql:
        for outsider in (bob, mallory):
            assert await api.error_code(DELETE, {"m": mine["id"]}, token=outsider.token) == "FORBIDDEN"
        await alice_laptop.send("delete_message", {"message_id": mine["id"]})
        frame = await alice_laptop.next("message_deleted")
        assert frame["cursor"] and frame["data"] == {
            "chat_id": chat_id,
            "message_id": mine["id"],
            "message_seq": mine["seq"],
            "deleted_by": alice.id,
            "deleted_at": frame["data"]["deleted_at"],
        }
        event = await carol_gql.next("MessageDeleted")
        assert (event["messageId"], event["messageSeq"], event["deletedBy"]) == (mine["id"], mine["seq"], alice.id)

        # A service deletes anyone's (deletedBy null); deleting again is a success that changes nothing.
        assert (await delete(api, api.service_token, other["id"]))["content"] == ""
        event = await carol_gql.next("MessageDeleted")
        assert (event["messageId"], event["deletedBy"]) == (other["id"], None)
        assert (await alice_laptop.next("message_deleted"))["data"]["deleted_by"] is None
        again = await delete(api, alice.token, mine["id"])
        assert again["deletedAt"] == frame["data"]["deleted_at"]
        assert (await delete(api, bob.token, other["id"]))["content"] == ""
        await alice_laptop.send("delete_message", {"message_id": mine["id"]})
        await alice_laptop.send("delete_message", {"message_id": other["id"]})  # bob's: not hers to delete
        assert (await alice_laptop.next("error"))["data"]["code"] == "FORBIDDEN"
        assert kinds(await alice_laptop.marker("after the repeats")) == []
        assert kinds(await carol_gql.marker("after the repeats")) == []

    # Editing a tombstone is refused; so is an unknown message (FORBIDDEN to a user, NOT_FOUND to a service).
    assert await api.error_code(EDIT, {"m": mine["id"], "t": "back"}, token=alice.token) == "BAD_REQUEST"
    async with legacy(api, alice) as client:
        await client.send("edit_message", {"message_id": mine["id"], "content": "back"})
        assert (await client.next("error"))["data"]["code"] == "BAD_REQUEST"
    unknown = str(uuid.uuid4())
    assert await api.error_code(EDIT, {"m": unknown, "t": "x"}, token=alice.token) == "FORBIDDEN"
    assert await api.error_code(DELETE, {"m": unknown}, token=alice.token) == "FORBIDDEN"
    assert await api.error_code(DELETE, {"m": unknown}, token=api.service_token) == "NOT_FOUND"
    assert (await history(api, alice, chat_id))[mine["id"]]["content"] == ""


async def test_a_retried_edit_changes_nothing_twice(api: Api) -> None:
    alice, bob, _, chat_id = await group(api)
    sent = await api.send(alice, chat_id, "draft")
    async with subscribed(api, bob) as bob_gql, legacy(api, alice) as alice_laptop:
        first = await edit(api, alice, sent["id"], "final", client_id="e-1")
        retried = await edit(api, alice, sent["id"], "final", client_id="e-1")
        assert retried == first  # the same message, the same editedAt
        # The same retry over the legacy protocol, and an edit to the same content: nothing either.
        await alice_laptop.send("edit_message", {"message_id": sent["id"], "content": "final", "client_id": "e-1"})
        await alice_laptop.send("edit_message", {"message_id": sent["id"], "content": "final"})
        assert kinds(await bob_gql.marker("after the retries")) == ["MessageEdited"]
        assert kinds(await alice_laptop.marker("after the retries")) == ["message_edited"]
        # A retry is known by its client id: a late retry of e-1 after the content moved on changes nothing.
        await edit(api, alice, sent["id"], "final, really", client_id="e-2")
        late = await edit(api, alice, sent["id"], "final", client_id="e-2")
        assert late["content"] == "final, really"
        assert (await bob_gql.next("MessageEdited"))["clientId"] == "e-2"
        assert kinds(await bob_gql.marker("after the late retry")) == []


async def test_a_retried_send_of_a_deleted_message_returns_its_tombstone(api: Api) -> None:
    alice, bob, _, chat_id = await group(api)
    sent = await api.send(alice, chat_id, "once", client_id="s-1")
    await delete(api, alice.token, sent["id"])
    retried = await api.data(
        'mutation($c: ID!) { sendMessage(chatId: $c, content: "once", clientId: "s-1") { id content deletedAt } }',
        {"c": chat_id},
        token=alice.token,
    )
    assert retried["sendMessage"]["id"] == sent["id"] and retried["sendMessage"]["content"] == ""
    assert retried["sendMessage"]["deletedAt"]
    assert list(await history(api, bob, chat_id)) == [sent["id"]]


async def test_an_edit_is_validated_like_a_send(api: Api) -> None:
    alice, _, _, chat_id = await group(api)
    sent = await api.send(alice, chat_id, "valid")
    for content, code in (
        ("", "BAD_REQUEST"),
        ("   ", "BAD_REQUEST"),
        ("a\x00b", "BAD_REQUEST"),
        ("x" * 10_001, "PAYLOAD_TOO_LARGE"),
    ):
        assert await api.error_code(EDIT, {"m": sent["id"], "t": content}, token=alice.token) == code, content
    assert await api.error_code(EDIT, {"m": sent["id"], "t": "ok", "k": ""}, token=alice.token) == "BAD_REQUEST"
    assert await api.error_code(EDIT, {"m": "not-a-uuid", "t": "ok"}, token=alice.token) == "BAD_REQUEST"
    async with legacy(api, alice) as client:
        for data in ({"message_id": sent["id"], "content": ""}, {"message_id": 7, "content": "x"}, {"content": "x"}):
            await client.send("edit_message", data)
            assert (await client.next("error"))["data"]["code"] == "BAD_REQUEST", data
        await client.send("edit_message", {"message_id": sent["id"], "content": "y" * 10_001})
        assert (await client.next("error"))["data"]["code"] == "PAYLOAD_TOO_LARGE"
    assert (await history(api, alice, chat_id))[sent["id"]]["content"] == "valid"


async def cursors_after(api: Api, user: User, chat_id: str, sender: User) -> tuple[dict[str, Any], str, str]:
    """`sender` sends a message to the chat while `user` streams on both protocols: the message, and the GraphQL and
    legacy cursors of `user`'s streams once they have it (the streams are closed then: `user` is away)."""
    gql = await Subscriber(api, user).start()
    client = await LegacyClient(api, user).connect()
    try:
        await client.ready()
        sent = await api.send(sender, chat_id, "the last one seen")
        return sent, (await gql.next("NewMessage"))["cursor"], (await client.next("new_message"))["cursor"]
    finally:
        await gql.close()
        await client.close()


async def replayed(
    api: Api, user: User, cursors: tuple[str, str], kinds: list[tuple[str, str]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What `user` gets on resuming from the cursors (GraphQL, legacy): the events of these (GraphQL typename, legacy
    type)s, in this order, each with a cursor."""
    gql = await Subscriber(api, user, after=cursors[0]).start()
    try:
        events = [await gql.next(typename) for typename, _ in kinds]
    finally:
        await gql.close()
    client = LegacyClient(api, user)
    client.url += f"&cursor={cursors[1]}"
    await client.connect()
    try:
        frames = [await client.next(frame_type) for _, frame_type in kinds]
    finally:
        await client.close()
    assert all(e["cursor"] for e in events) and all(f["cursor"] for f in frames)
    return events, frames


async def test_resume_replays_edits_and_deletions_on_both_protocols(api: Api) -> None:
    alice, bob, _, chat_id = await group(api)
    kept = await api.send(alice, chat_id, "kept")
    gone, *cursors = await cursors_after(api, bob, chat_id, alice)

    await edit(api, alice, kept["id"], "kept, edited")
    await delete(api, alice.token, gone["id"])

    kinds = [("MessageEdited", "message_edited"), ("MessageDeleted", "message_deleted")]
    events, frames = await replayed(api, bob, (cursors[0], cursors[1]), kinds)
    assert [e["messageId"] for e in events] == [kept["id"], gone["id"]] and events[0]["content"] == "kept, edited"
    assert [f["data"]["message_id"] for f in frames] == [kept["id"], gone["id"]]
    assert frames[0]["data"]["content"] == "kept, edited"
