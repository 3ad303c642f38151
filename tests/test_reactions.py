"""Reactions (docs/protocols.md "Editing, deleting, reacting"), through a real server, on both protocols: every
member hears each change with the counts after it, history shows the counts and whether I reacted, repeats change
nothing, and the limits are refused with a code."""

from __future__ import annotations

from typing import Any

from tests.legacy_client import legacy
from tests.support import Api, User, subscribed
from tests.test_message_edits import DELETE, EDIT, cursors_after, group, kinds, replayed

ADD = "mutation($m: ID!, $e: String!) { addReaction(messageId: $m, emoji: $e) { id reactions { emoji count reactedByMe } } }"
REMOVE = (
    "mutation($m: ID!, $e: String!) { removeReaction(messageId: $m, emoji: $e) "
    "{ id reactions { emoji count reactedByMe } } }"
)
HISTORY = "query($c: ID!) { messages(chatId: $c) { id reactions { emoji count reactedByMe } } }"
LAST = "{ myChats { id lastMessage { id reactions { emoji count reactedByMe } } } }"


async def react(api: Api, user: User, message_id: str, emoji: str, *, add: bool = True) -> list[dict[str, Any]]:
    data = await api.data(ADD if add else REMOVE, {"m": message_id, "e": emoji}, token=user.token)
    reactions: list[dict[str, Any]] = data["addReaction" if add else "removeReaction"]["reactions"]
    return reactions


async def reactions_in_history(api: Api, user: User, chat_id: str, message_id: str) -> list[dict[str, Any]]:
    page = (await api.data(HISTORY, {"c": chat_id}, token=user.token))["messages"]
    found: list[dict[str, Any]] = next(m for m in page if m["id"] == message_id)["reactions"]
    return found


def counts(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"emoji": e, "count": n} for e, n in pairs]


def mine(*triples: tuple[str, int, bool]) -> list[dict[str, Any]]:
    return [{"emoji": e, "count": n, "reactedByMe": me} for e, n, me in triples]


async def test_reactions_of_two_users_reach_every_member_with_the_counts_and_show_in_history(api: Api) -> None:
    alice, bob, carol, chat_id = await group(api)
    sent = await api.send(alice, chat_id, "Rex found a stick")
    async with (
        subscribed(api, alice) as alice_gql,
        legacy(api, alice) as alice_laptop,
        legacy(api, carol) as carol_legacy,
    ):
        assert await react(api, bob, sent["id"], "👍") == mine(("👍", 1, True))
        assert await react(api, carol, sent["id"], "👍") == mine(("👍", 2, True))
        await carol_legacy.send("add_reaction", {"message_id": sent["id"], "emoji": "🐶"})

        expected = [
            (bob.id, "👍", True, counts(("👍", 1))),
            (carol.id, "👍", True, counts(("👍", 2))),
            (carol.id, "🐶", True, counts(("👍", 2), ("🐶", 1))),
        ]
        heard = [await alice_gql.next("ReactionChanged") for _ in expected]
        assert [(e["userId"], e["emoji"], e["added"], e["counts"]) for e in heard] == expected
        assert all(e["chatId"] == chat_id and e["messageId"] == sent["id"] and e["cursor"] for e in heard)
        for client in (alice_laptop, carol_legacy):  # carol's own connection hears her change too
            frames = [await client.next("reaction_changed") for _ in expected]
            assert [
                (f["data"]["user_id"], f["data"]["emoji"], f["data"]["added"], f["data"]["counts"]) for f in frames
            ] == [(u, e, a, [{"emoji": c["emoji"], "count": c["count"]} for c in cs]) for u, e, a, cs in expected]
            assert all(f["cursor"] and f["data"]["message_id"] == sent["id"] for f in frames)

        # Bob takes his back: the counts after it.
        assert await react(api, bob, sent["id"], "👍", add=False) == mine(("👍", 1, False), ("🐶", 1, False))
        event = await alice_gql.next("ReactionChanged")
        assert (event["userId"], event["added"], event["counts"]) == (bob.id, False, counts(("👍", 1), ("🐶", 1)))

    # History and the chat list, per viewer: whether I reacted is mine.
    assert await reactions_in_history(api, carol, chat_id, sent["id"]) == mine(("👍", 1, True), ("🐶", 1, True))
    assert await reactions_in_history(api, bob, chat_id, sent["id"]) == mine(("👍", 1, False), ("🐶", 1, False))
    chats = {c["id"]: c for c in (await api.data(LAST, token=carol.token))["myChats"]}
    assert chats[chat_id]["lastMessage"]["reactions"] == mine(("👍", 1, True), ("🐶", 1, True))
    async with legacy(api, carol) as client:
        page = await client.request("get_messages", {"chat_id": chat_id}, reply="messages")
        assert page["data"]["messages"][0]["reactions"] == [
            {"emoji": "👍", "count": 1, "reacted_by_me": True},
            {"emoji": "🐶", "count": 1, "reacted_by_me": True},
        ]


async def test_repeating_a_reaction_or_removing_an_absent_one_changes_nothing(api: Api) -> None:
    alice, bob, _, chat_id = await group(api)
    sent = await api.send(alice, chat_id, "walk?")
    async with subscribed(api, alice) as alice_gql, legacy(api, bob) as bob_legacy:
        await react(api, bob, sent["id"], "❤️")
        assert await react(api, bob, sent["id"], "❤️") == mine(("❤️", 1, True))
        await bob_legacy.send("add_reaction", {"message_id": sent["id"], "emoji": "❤️"})
        assert await react(api, bob, sent["id"], "🎉", add=False) == mine(("❤️", 1, True))
        await bob_legacy.send("remove_reaction", {"message_id": sent["id"], "emoji": "🎉"})
        assert kinds(await alice_gql.marker("after the repeats")) == ["ReactionChanged"]
        assert kinds(await bob_legacy.marker("after the repeats")) == ["reaction_changed"]


async def test_reactions_are_refused_past_the_limit_with_bad_emoji_and_to_outsiders(api: Api) -> None:
    alice, bob, _, chat_id = await group(api)
    mallory = await api.new_user("mallory")
    sent = await api.send(alice, chat_id, "pick one")
    limit = 20  # MAX_REACTIONS_PER_MESSAGE's default, which the suite's server keeps
    emoji = [chr(0x1F600 + i) for i in range(limit + 1)]
    for e in emoji[:limit]:
        await react(api, alice, sent["id"], e)
    assert await api.error_code(ADD, {"m": sent["id"], "e": emoji[limit]}, token=bob.token) == "BAD_REQUEST"
    async with legacy(api, bob) as client:
        await client.send("add_reaction", {"message_id": sent["id"], "emoji": emoji[limit]})
        error = (await client.next("error"))["data"]
        assert error["code"] == "BAD_REQUEST" and error["details"] == {"limit": limit}
    # At the limit, the emoji already there may still be added by others.
    assert (await react(api, bob, sent["id"], emoji[0]))[0] == {"emoji": emoji[0], "count": 2, "reactedByMe": True}
    assert len(await reactions_in_history(api, bob, chat_id, sent["id"])) == limit

    fresh = await api.send(alice, chat_id, "and this one?")
    for bad in ("", "ok", "OK123", "👍 ", "\t", "a\x01", "👍" * 17, "a\x00"):
        assert await api.error_code(ADD, {"m": fresh["id"], "e": bad}, token=bob.token) == "BAD_REQUEST", bad
    async with legacy(api, bob) as client:
        await client.send("add_reaction", {"message_id": fresh["id"], "emoji": "ok"})
        assert (await client.next("error"))["data"]["code"] == "BAD_REQUEST"
    # A symbol besides letters and digits is enough; 16 characters are allowed.
    assert [r["emoji"] for r in await react(api, bob, fresh["id"], "+1")] == ["+1"]
    assert len((await react(api, bob, fresh["id"], "👍" * 16))[1]["emoji"]) == 16
    assert await api.error_code(ADD, {"m": sent["id"], "e": "👍"}, token=mallory.token) == "FORBIDDEN"
    assert await api.error_code(REMOVE, {"m": sent["id"], "e": "👍"}, token=mallory.token) == "FORBIDDEN"
    assert await api.error_code(ADD, {"m": sent["id"], "e": "👍"}, token=api.service_token) == "FORBIDDEN"


async def test_a_deleted_message_loses_its_reactions_and_takes_no_more(api: Api) -> None:
    alice, bob, _, chat_id = await group(api)
    sent = await api.send(alice, chat_id, "soon gone")
    await react(api, bob, sent["id"], "👍")
    await api.data(DELETE, {"m": sent["id"]}, token=alice.token)
    assert await reactions_in_history(api, bob, chat_id, sent["id"]) == []
    assert await api.error_code(ADD, {"m": sent["id"], "e": "👍"}, token=bob.token) == "BAD_REQUEST"
    assert await react(api, bob, sent["id"], "👍", add=False) == []  # nothing to take back: no change


async def test_resume_replays_reaction_changes_on_both_protocols(api: Api) -> None:
    alice, bob, _, chat_id = await group(api)
    sent, *cursors = await cursors_after(api, bob, chat_id, alice)

    await react(api, alice, sent["id"], "🦴")
    await react(api, alice, sent["id"], "🦴", add=False)

    kinds = [("ReactionChanged", "reaction_changed")] * 2
    events, frames = await replayed(api, bob, (cursors[0], cursors[1]), kinds)
    assert [(e["added"], e["counts"]) for e in events] == [(True, counts(("🦴", 1))), (False, [])]
    assert [(f["data"]["added"], f["data"]["counts"]) for f in frames] == [(True, counts(("🦴", 1))), (False, [])]


async def test_a_blocked_users_edits_and_reactions_do_not_reach_the_blocker(api: Api) -> None:
    alice, bob, carol, chat_id = await group(api)
    sent = await api.send(alice, chat_id, "hello all")
    theirs = await api.send(carol, chat_id, "hello from carol")
    await api.data("mutation($u: ID!) { blockUser(userId: $u) }", {"u": alice.id}, token=bob.token)
    async with subscribed(api, bob) as bob_gql, legacy(api, bob) as bob_legacy, subscribed(api, carol) as carol_gql:
        await api.data(EDIT, {"m": sent["id"], "t": "hello, edited", "k": None}, token=alice.token)
        await react(api, alice, theirs["id"], "👋")
        assert kinds(await carol_gql.marker("after alice")) == ["MessageEdited", "ReactionChanged"]
        assert kinds(await bob_gql.marker("after alice")) == []
        assert kinds(await bob_legacy.marker("after alice")) == []
        await react(api, carol, theirs["id"], "👋")  # carol's reaction reaches bob, with every reaction counted
        assert (await bob_gql.next("ReactionChanged"))["counts"] == counts(("👋", 2))
