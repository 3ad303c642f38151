"""Consent and abuse controls on membership (SECURITY.md "Consent"), through real servers on each database and both
protocols: blocks, leaving chats, who may add whom back, MAX_CHAT_MEMBERS, HISTORY_VISIBILITY and a group's admin.

Nothing here waits and hopes: events are awaited with timeouts, and "did not arrive" is a marker that arrived after
everything published before it (`Subscriber.marker`, `LegacyClient.marker`).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unavailable
from tests.legacy_client import legacy
from tests.scale_support import RedisServer, ready
from tests.support import Api, Server, User, subscribed
from tests.test_message_edits import delete, edit
from tests.test_reactions import react

CREATE = "mutation($m: [ID!]!, $g: Boolean) { createChat(memberIds: $m, isGroup: $g) { id participants { id } } }"
ADD = "mutation($c: ID!, $u: ID!) { addChatMember(chatId: $c, userId: $u) { id participants { id } } }"
REMOVE = "mutation($c: ID!, $u: ID!) { removeChatMember(chatId: $c, userId: $u) }"
LEAVE = "mutation($c: ID!) { leaveChat(chatId: $c) }"
BLOCK = "mutation($u: ID!, $b: ID) { blockUser(userId: $u, blockerId: $b) }"
UNBLOCK = "mutation($u: ID!, $b: ID) { unblockUser(userId: $u, blockerId: $b) }"
BLOCKED = "{ blockedUsers }"
HISTORY = "query($c: ID!) { messages(chatId: $c) { content sender { id } } }"
CHATS = "{ myChats { id adminId unreadCount participants { id } lastMessage { content } } }"
TYPING = "mutation($c: ID!) { setTyping(chatId: $c, isTyping: true) }"
CURSOR = "{ eventCursor }"
SEND = "mutation($c: ID!, $t: String!) { sendMessage(chatId: $c, content: $t) { id } }"

UNADDABLE = "no such user, or not one you can add"

StartServer = Callable[[dict[str, str]], Server]


async def refusal(api: Api, query: str, variables: dict[str, Any], user: User) -> dict[str, Any]:
    """The one error an operation answers: its code and message (what tells one refusal from another)."""
    body = await api.post(query, variables, token=user.token)
    assert body.get("errors") and not any((body.get("data") or {}).values()), body
    [error] = body["errors"]
    return {"code": error["extensions"]["code"], "message": error["message"]}


async def chats_of(api: Api, user: User) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in (await api.data(CHATS, token=user.token))["myChats"]}


async def history(api: Api, user: User, chat_id: str) -> list[str]:
    return [m["content"] for m in (await api.data(HISTORY, {"c": chat_id}, token=user.token))["messages"]]


async def users(api: Api, *names: str) -> list[User]:
    return [await api.new_user(name) for name in names]


# -- blocks ---------------------------------------------------------------------------------------------------


async def test_a_blocked_user_is_refused_the_blocker_exactly_as_an_unknown_id(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    nobody = str(uuid.uuid4())
    direct = await api.new_chat(bob, alice)  # a 1:1 chat from before the block
    group = await api.new_chat(bob, carol, name="bob's walkers", is_group=True)
    assert (await api.data(BLOCK, {"u": bob.id}, token=alice.token))["blockUser"] is True

    for others in ([alice.id], [alice.id, carol.id]):
        blocked = await refusal(api, CREATE, {"m": others}, bob)
        unknown = await refusal(api, CREATE, {"m": [nobody if m == alice.id else m for m in others]}, bob)
        assert blocked == unknown == {"code": "NOT_FOUND", "message": f"memberIds: {UNADDABLE}"}
    blocked = await refusal(api, ADD, {"c": group, "u": alice.id}, bob)
    unknown = await refusal(api, ADD, {"c": group, "u": nobody}, bob)
    assert blocked == unknown == {"code": "NOT_FOUND", "message": f"userId: {UNADDABLE}"}
    # A third member may still add alice: the block is between alice and bob.
    await api.data(ADD, {"c": group, "u": alice.id}, token=carol.token)

    # Blocking is one-way: alice still reaches bob, and finds the 1:1 chat they had.
    assert (await api.data(CREATE, {"m": [bob.id]}, token=alice.token))["createChat"]["id"] == direct

    await api.data(UNBLOCK, {"u": bob.id}, token=alice.token)
    assert (await api.data(CREATE, {"m": [alice.id]}, token=bob.token))["createChat"]["id"] == direct


async def test_the_blocked_users_messages_and_typing_stop_reaching_the_blocker_on_both_protocols(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    group = await api.new_chat(carol, alice, bob, name="walkers", is_group=True)
    direct = await api.new_chat(bob, alice)
    await api.send(bob, group, "before the block")
    cursor = (await api.data(CURSOR, token=alice.token))["eventCursor"]

    async with subscribed(api, alice) as live, legacy(api, alice) as old, subscribed(api, carol) as carol_sees:
        await old.send("block_user", {"user_id": bob.id})
        frames = await old.collect_until(lambda f: f["type"] == "blocked_users")  # the reply, after the event
        assert frames[-1]["data"] == {"user_ids": [bob.id]}
        change = {"user_id": alice.id, "blocked_user_id": bob.id, "blocked": True}
        assert [f["data"] for f in frames if f["type"] == "block_changed"] == [change]
        event = await live.next("BlockChanged")  # to every connection of the blocker, on every process
        assert {k: v for k, v in event.items() if k != "cursor"} == {
            "__typename": "BlockChanged",
            "userId": alice.id,
            "blockedUserId": bob.id,
            "blocked": True,
        }

        await api.send(bob, group, "hidden in the group")
        await api.send(bob, direct, "hidden in private")
        await api.data(TYPING, {"c": group}, token=bob.token)
        await api.send(carol, group, "carol is heard")
        # The others still hear bob.
        assert (await carol_sees.next("NewMessage"))["message"]["content"] == "hidden in the group"

        seen = await live.collect_until(lambda e: e["__typename"] == "NewMessage")
        assert [e["message"]["content"] for e in seen if e["__typename"] == "NewMessage"] == ["carol is heard"]
        assert not [e for e in seen + await live.marker("after") if e.get("userId") == bob.id], seen
        frames = await old.marker("after")
        assert [f["data"]["content"] for f in frames if f["type"] == "new_message"] == ["carol is heard"]
        assert not [f for f in frames if f["data"].get("user_id") == bob.id], frames

        # A stream opened after the block holds it from the start.
        async with legacy(api, alice) as fresh:
            await api.send(bob, direct, "hidden from the new socket")
            assert [f for f in await fresh.marker("fresh") if f["type"] == "new_message"] == []
        # Bob is not told: his own message reaches him.
        async with legacy(api, bob) as sender:
            await api.send(bob, direct, "bob sees his own")
            assert (await sender.next("new_message"))["data"]["content"] == "bob sees his own"

        # Nor in history, the chat list, or a resume from before the block.
        assert await history(api, alice, group) == ["carol is heard"]
        assert await history(api, alice, direct) == []
        mine = await chats_of(api, alice)
        assert mine[direct]["lastMessage"] is None and mine[direct]["unreadCount"] == 0
        assert mine[group]["lastMessage"] == {"content": "carol is heard"} and mine[group]["unreadCount"] == 1
        page = (await old.request("get_messages", {"chat_id": group}, reply="messages"))["data"]["messages"]
        assert [m["content"] for m in page] == ["carol is heard"]
        async with subscribed(api, alice, after=cursor) as resumed:
            replayed = await resumed.collect_until(lambda e: e["__typename"] == "NewMessage")
            assert [e["message"]["content"] for e in replayed if e["__typename"] == "NewMessage"] == ["carol is heard"]
            assert [e for e in await resumed.marker("resumed") if e["__typename"] == "NewMessage"] == []

        # Unblocking (over GraphQL) restores it all.
        assert (await api.data(UNBLOCK, {"u": bob.id}, token=alice.token))["unblockUser"] is True
        assert (await old.next("block_changed"))["data"]["blocked"] is False
        assert (await live.next("BlockChanged"))["blocked"] is False
        await api.send(bob, group, "heard again")
        assert (await live.next("NewMessage"))["message"]["content"] == "heard again"
        assert (await old.next("new_message"))["data"]["content"] == "heard again"
        await api.data(TYPING, {"c": direct}, token=bob.token)
        assert (await old.next("user_typing"))["data"] == {"chat_id": direct, "user_id": bob.id}
    assert await history(api, alice, group) == [
        "before the block",
        "hidden in the group",
        "carol is heard",
        "heard again",
    ]


async def test_blocks_are_idempotent_per_user_and_a_service_mirrors_them(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    nobody = str(uuid.uuid4())
    for _ in range(2):
        assert (await api.data(BLOCK, {"u": bob.id}, token=alice.token))["blockUser"] is True
    # Any id is taken: the answer says nothing about whether someone has it.
    assert (await api.data(BLOCK, {"u": nobody}, token=alice.token))["blockUser"] is True
    assert (await api.data(BLOCKED, token=alice.token))["blockedUsers"] == sorted([bob.id, nobody])
    assert (await api.data(BLOCKED, token=bob.token))["blockedUsers"] == []

    assert (await refusal(api, BLOCK, {"u": alice.id}, alice))["code"] == "BAD_REQUEST"  # oneself
    assert (await refusal(api, BLOCK, {"u": bob.id, "b": bob.id}, alice))["code"] == "FORBIDDEN"  # another's list

    service = api.service_token
    body = await api.post(BLOCK, {"u": alice.id}, token=service)
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"  # whose list?
    assert (await api.data(BLOCK, {"u": alice.id, "b": bob.id}, token=service))["blockUser"] is True
    assert (await api.data(BLOCKED, token=bob.token))["blockedUsers"] == [alice.id]
    assert (await refusal(api, CREATE, {"m": [bob.id]}, alice))["code"] == "NOT_FOUND"
    await api.data(UNBLOCK, {"u": alice.id, "b": bob.id}, token=service)
    assert (await api.data(BLOCKED, token=bob.token))["blockedUsers"] == []

    async with legacy(api, alice) as client:
        reply = await client.request("unblock_user", {"user_id": nobody}, reply="blocked_users")
        assert reply["data"] == {"user_ids": [bob.id]}
        assert (await client.request("get_blocked_users", reply="blocked_users"))["data"] == {"user_ids": [bob.id]}
        await client.send("block_user", {"user_id": "not-an-id"})
        assert (await client.next("error"))["data"]["code"] == "BAD_REQUEST"


# -- MAX_CHAT_MEMBERS -----------------------------------------------------------------------------------------


async def test_chats_over_max_chat_members_are_refused(database_url: str, start_server: StartServer) -> None:
    api = Api(start_server({"DATABASE_URL": database_url, "MAX_CHAT_MEMBERS": "3"}))
    alice, bob, carol, dave = await users(api, "alice", "bob", "carol", "dave")
    too_many = await refusal(api, CREATE, {"m": [bob.id, carol.id, dave.id]}, alice)  # with alice: 4
    assert too_many == {"code": "BAD_REQUEST", "message": "memberIds: at most 3 members (MAX_CHAT_MEMBERS)"}
    body = await api.post(CREATE, {"m": [alice.id, bob.id, carol.id, dave.id]}, token=api.service_token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"

    group = await api.new_chat(alice, bob, carol, is_group=True)
    full = await refusal(api, ADD, {"c": group, "u": dave.id}, alice)
    assert full == {"code": "BAD_REQUEST", "message": "the chat is full: at most 3 members (MAX_CHAT_MEMBERS)"}
    await api.data(LEAVE, {"c": group}, token=bob.token)
    added = (await api.data(ADD, {"c": group, "u": dave.id}, token=alice.token))["addChatMember"]
    assert {p["id"] for p in added["participants"]} == {alice.id, carol.id, dave.id}


# -- HISTORY_VISIBILITY ---------------------------------------------------------------------------------------


async def joining_later(api: Api) -> tuple[list[str], dict[str, Any], list[str], dict[str, Any], list[str]]:
    """Alice and bob talk; carol is added; alice writes again. What carol sees before and after that message, and
    what a resume from before she was added replays to her; alice (there from the start) sees everything."""
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    group = await api.new_chat(alice, bob, name="history", is_group=True)
    cursor = (await api.data(CURSOR, token=carol.token))["eventCursor"]
    await api.send(alice, group, "m1")
    await api.send(bob, group, "m2")
    await api.data(ADD, {"c": group, "u": carol.id}, token=alice.token)
    before = (await chats_of(api, carol))[group]
    await api.send(alice, group, "m3")
    after = (await chats_of(api, carol))[group]
    async with legacy(api, carol) as client:
        page = (await client.request("get_messages", {"chat_id": group}, reply="messages"))["data"]["messages"]
        listed = (await client.request("get_my_chats", reply="my_chats"))["data"]["chats"]
    assert [m["content"] for m in page] == await history(api, carol, group)
    assert [c["last_message"] for c in listed] == [after["lastMessage"]["content"]]
    async with subscribed(api, carol, after=cursor) as resumed:
        replayed = await resumed.collect_until(lambda e: e["__typename"] == "NewMessage")
        replayed += await resumed.marker("replayed")
    assert await history(api, alice, group) == ["m1", "m2", "m3"]
    contents = [e["message"]["content"] for e in replayed if e["__typename"] == "NewMessage"]
    return await history(api, carol, group), before, [m["content"] for m in page], after, contents


async def test_history_visibility_joined_hides_a_groups_earlier_messages_from_a_new_member(
    database_url: str, start_server: StartServer
) -> None:
    api = Api(start_server({"DATABASE_URL": database_url, "HISTORY_VISIBILITY": "joined"}))
    seen, before, page, after, replayed = await joining_later(api)
    assert seen == page == ["m3"]
    assert (before["lastMessage"], before["unreadCount"]) == (None, 0)
    assert (after["lastMessage"], after["unreadCount"]) == ({"content": "m3"}, 1)
    assert replayed == ["m3"]


async def test_history_visibility_shared_the_default_shows_a_new_member_everything(api: Api) -> None:
    seen, before, page, after, replayed = await joining_later(api)
    assert seen == page == ["m1", "m2", "m3"]
    assert (before["lastMessage"], before["unreadCount"]) == ({"content": "m2"}, 2)
    assert (after["lastMessage"], after["unreadCount"]) == ({"content": "m3"}, 3)
    assert replayed == ["m3"]  # a resume replays events from joining on, whatever the setting


CHANGES = {
    "message_edited": "MessageEdited",
    "message_deleted": "MessageDeleted",
    "reaction_changed": "ReactionChanged",
}


def changes_in(events: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    """(kind, message id, message seq) of the edits, deletions and reactions among GraphQL events or legacy frames."""
    found = set()
    for event in events:
        kind = CHANGES.get(event.get("type", ""), event.get("__typename"))
        if kind in CHANGES.values():
            data = event.get("data", event)
            found.add(
                (kind, data.get("message_id", data.get("messageId")), data.get("message_seq", data.get("messageSeq")))
            )
    return found


@pytest.mark.parametrize("visibility", ["joined", "shared"])
async def test_a_new_member_hears_of_changes_to_earlier_messages_only_if_the_history_is_shared(
    database_url: str, start_server: StartServer, visibility: str
) -> None:
    """Edits, deletions and reactions of a message sent before a member joined reach them (live on a connection open
    when they were added, live on one opened after, on both protocols, and on a resume) exactly when its history
    does: never under HISTORY_VISIBILITY=joined, always under shared."""
    api = Api(start_server({"DATABASE_URL": database_url, "HISTORY_VISIBILITY": visibility}))
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    group = await api.new_chat(alice, bob, name="changes", is_group=True)
    old = await api.send(alice, group, "before")
    cursor = (await api.data(CURSOR, token=carol.token))["eventCursor"]
    async with subscribed(api, carol) as open_g, legacy(api, carol) as open_l:
        await api.data(ADD, {"c": group, "u": carol.id}, token=alice.token)
        await open_g.next("ChatMemberAdded")
        await open_l.next("member_added")
        new = await api.send(alice, group, "after")
        async with subscribed(api, carol) as later_g, legacy(api, carol) as later_l:
            for message in (old, new):
                await edit(api, alice, message["id"], message["content"] + ", edited")
                await react(api, bob, message["id"], "👍")
            await delete(api, alice.token, old["id"])
            seen = {
                "open, GraphQL": changes_in(await open_g.marker("g")),
                "open, legacy": changes_in(await open_l.marker("l")),
                "opened after, GraphQL": changes_in(await later_g.marker("g")),
                "opened after, legacy": changes_in(await later_l.marker("l")),
            }
    async with subscribed(api, carol, after=cursor) as resumed:
        seen["resumed"] = changes_in(await resumed.marker("resumed"))

    of_new = {("MessageEdited", new["id"], new["seq"]), ("ReactionChanged", new["id"], new["seq"])}
    of_old = {(kind, old["id"], old["seq"]) for kind in CHANGES.values()}
    expected = of_new if visibility == "joined" else of_new | of_old
    assert seen == dict.fromkeys(seen, expected)
    # Alice, there from the start, heard of everything either way.
    async with subscribed(api, alice, after=cursor) as alice_resumed:
        assert changes_in(await alice_resumed.marker("alice")) == of_new | of_old


# -- leaving ------------------------------------------------------------------------------------------------


async def test_leaving_a_direct_chat_hides_it_for_the_leaver_and_leaves_it_read_only_for_the_other(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    direct = await api.new_chat(alice, bob)
    await api.send(bob, direct, "hello")
    async with subscribed(api, alice) as alice_sees, legacy(api, bob) as bob_sees:
        assert (await api.data(LEAVE, {"c": direct}, token=alice.token))["leaveChat"] is True
        removed = {"chatId": direct, "userId": alice.id, "removedBy": alice.id}
        assert {k: v for k, v in (await alice_sees.next("ChatMemberRemoved")).items() if k in removed} == removed
        assert (await bob_sees.next("member_removed"))["data"] == {
            "chat_id": direct,
            "user_id": alice.id,
            "removed_by": alice.id,
        }

        # Hidden for alice.
        assert direct not in await chats_of(api, alice)
        assert (await refusal(api, HISTORY, {"c": direct}, alice))["code"] == "FORBIDDEN"
        # Read-only for bob: he reads it, he cannot write to it (on either protocol), and creating it again
        # himself does not bring alice back.
        assert await history(api, bob, direct) == ["hello"]
        assert [p["id"] for p in (await chats_of(api, bob))[direct]["participants"]] == [bob.id]
        assert (await refusal(api, SEND, {"c": direct, "t": "anyone there?"}, bob))["code"] == "FORBIDDEN"
        await bob_sees.send("send_message", {"chat_id": direct, "content": "anyone there?"})
        assert (await bob_sees.next("error"))["data"]["code"] == "FORBIDDEN"
        assert (await api.data(CREATE, {"m": [alice.id]}, token=bob.token))["createChat"]["id"] == direct
        assert direct not in await chats_of(api, alice)
        assert [e for e in await alice_sees.marker("gone") if e.get("chatId") == direct] == []

        # Alice comes back by starting the chat again: the same chat, its history, both may write.
        back = (await api.data(CREATE, {"m": [bob.id]}, token=alice.token))["createChat"]
        assert back["id"] == direct and {p["id"] for p in back["participants"]} == {alice.id, bob.id}
        assert (await bob_sees.next("member_added"))["data"] == {
            "chat_id": direct,
            "user_id": alice.id,
            "added_by": alice.id,
        }
        assert await history(api, alice, direct) == ["hello"]
        await api.send(bob, direct, "welcome back")
        assert (await alice_sees.next("NewMessage"))["message"]["content"] == "welcome back"


async def test_exit_chat_leaves_a_group_and_a_direct_chat_on_the_legacy_protocol(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    group = await api.new_chat(carol, alice, bob, name="trail", is_group=True)
    direct = await api.new_chat(alice, bob)
    async with legacy(api, alice) as a, legacy(api, bob) as b:
        for chat_id in (group, direct):
            await a.send("exit_chat", {"chat_id": chat_id})
            expected = {"chat_id": chat_id, "user_id": alice.id, "removed_by": alice.id}
            assert (await a.next("member_removed"))["data"] == expected  # the leaver's own acknowledgement
            assert (await b.next("member_removed"))["data"] == expected
        assert (await a.request("get_my_chats", reply="my_chats"))["data"]["chats"] == []
        await api.send(carol, group, "after alice left")
        assert [f for f in await a.marker("left") if f["type"] == "new_message"] == []
        await a.send("exit_chat", {"chat_id": group})
        assert (await a.next("error"))["data"]["code"] == "FORBIDDEN"
    async with legacy(api, carol) as c:  # the group lost only alice
        [chat] = (await c.request("get_my_chats", reply="my_chats"))["data"]["chats"]
        assert {p["id"] for p in chat["participants"]} == {carol.id, bob.id}


async def test_a_user_who_left_a_group_is_added_back_only_by_themselves(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    group = await api.new_chat(alice, bob, carol, name="left", is_group=True)
    unknown = await refusal(api, ADD, {"c": group, "u": str(uuid.uuid4())}, alice)

    await api.data(LEAVE, {"c": group}, token=bob.token)
    assert await refusal(api, ADD, {"c": group, "u": bob.id}, alice) == unknown  # nobody tells them apart
    assert await refusal(api, ADD, {"c": group, "u": bob.id}, carol) == unknown
    rejoined = (await api.data(ADD, {"c": group, "u": bob.id}, token=bob.token))["addChatMember"]
    assert bob.id in {p["id"] for p in rejoined["participants"]}

    # Removing oneself is leaving too.
    await api.data(REMOVE, {"c": group, "u": bob.id}, token=bob.token)
    assert await refusal(api, ADD, {"c": group, "u": bob.id}, alice) == unknown
    await api.data(ADD, {"c": group, "u": bob.id}, token=api.service_token)  # the main app's own consent flow

    # Removed by the admin is not leaving: members may add him again, and he may not re-join by himself.
    await api.data(REMOVE, {"c": group, "u": bob.id}, token=alice.token)
    assert (await refusal(api, ADD, {"c": group, "u": bob.id}, bob))["code"] == "FORBIDDEN"
    await api.data(ADD, {"c": group, "u": bob.id}, token=carol.token)

    # A stranger cannot use "re-joining" to enter a chat they were never in.
    mallory = await api.new_user("mallory")
    assert (await refusal(api, ADD, {"c": group, "u": mallory.id}, mallory))["code"] == "FORBIDDEN"


# -- the admin ----------------------------------------------------------------------------------------------


async def test_when_the_creator_leaves_the_longest_standing_member_is_the_admin(api: Api) -> None:
    alice, bob, carol, dave, eve = await users(api, "alice", "bob", "carol", "dave", "eve")
    group = await api.new_chat(alice, bob, carol, name="admin", is_group=True)
    await api.data(ADD, {"c": group, "u": dave.id}, token=bob.token)
    assert (await chats_of(api, dave))[group]["adminId"] == alice.id

    await api.data(LEAVE, {"c": group}, token=alice.token)
    # bob and carol came with the group, dave later: the first of bob and carol (by id) is the admin now.
    first, second = sorted((bob, carol), key=lambda u: uuid.UUID(u.id))
    for user in (first, second, dave):
        assert (await chats_of(api, user))[group]["adminId"] == first.id
    async with legacy(api, dave) as client:
        [chat] = (await client.request("get_my_chats", reply="my_chats"))["data"]["chats"]
        assert chat["admin_id"] == first.id

    refused = await refusal(api, REMOVE, {"c": group, "u": dave.id}, second)
    assert refused["code"] == "FORBIDDEN"
    assert (await api.data(REMOVE, {"c": group, "u": dave.id}, token=first.token))["removeChatMember"] is True

    # When the admin leaves in turn, the next longest-standing member takes over.
    await api.data(LEAVE, {"c": group}, token=first.token)
    await api.data(ADD, {"c": group, "u": eve.id}, token=second.token)
    assert (await chats_of(api, eve))[group]["adminId"] == second.id
    assert (await api.data(REMOVE, {"c": group, "u": eve.id}, token=second.token))["removeChatMember"] is True


@pytest.mark.parametrize("value", ["shared", "joined"])
def test_history_visibility_and_max_chat_members_are_read_from_the_environment(value: str) -> None:
    from server.config import ConfigError, Settings

    settings = Settings.from_env({"HISTORY_VISIBILITY": value.upper(), "MAX_CHAT_MEMBERS": "12"})
    assert (settings.history_visibility, settings.max_chat_members) == (value, 12)
    assert (Settings().history_visibility, Settings().max_chat_members) == ("shared", 256)
    with pytest.raises(ConfigError):
        Settings.from_env({"HISTORY_VISIBILITY": "world"})
    with pytest.raises(ConfigError):
        Settings.from_env({"MAX_CHAT_MEMBERS": "1"})


# -- across processes -----------------------------------------------------------------------------------------


async def test_a_block_holds_on_every_process_of_a_cluster(
    postgres_url: str, start_server: StartServer, tmp_path: Path
) -> None:
    """The blocker is connected to process B; the block and the blocked user's messages go through process A."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server")
    redis = RedisServer(tmp_path).start()
    try:
        env = {"DATABASE_URL": postgres_url, "BROADCAST_URL": redis.url}
        a, b = Api(start_server(env)), Api(start_server(env))
        for server in (a.server, b.server):
            ready(server)
        alice, bob = await users(a, "alice", "bob")
        chat_id = await a.new_chat(alice, bob)
        async with legacy(b, alice) as on_b, subscribed(b, alice) as live_on_b:
            await a.data(BLOCK, {"u": bob.id}, token=alice.token)
            assert (await on_b.next("block_changed"))["data"]["blocked"] is True
            await live_on_b.next("BlockChanged")
            await a.send(bob, chat_id, "through A")
            assert [f for f in await on_b.marker("blocked") if f["type"] == "new_message"] == []
            assert [e for e in await live_on_b.marker("blocked") if e["__typename"] == "NewMessage"] == []

            await a.data(UNBLOCK, {"u": bob.id}, token=alice.token)
            assert (await on_b.next("block_changed"))["data"]["blocked"] is False
            await a.send(bob, chat_id, "through A again")
            assert (await on_b.next("new_message"))["data"]["content"] == "through A again"
            assert (await live_on_b.next("NewMessage"))["message"]["content"] == "through A again"
    finally:
        redis.stop()
