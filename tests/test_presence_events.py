"""Live presence (docs/protocols.md): a user's first connection anywhere sends `UserOnline` / `user_online` to the
people who share a chat with them; their last connection closing sends `UserOffline` / `user_offline` once they
have stayed away for PRESENCE_GRACE; a reconnect within the grace sends nothing. Across processes and after a
SIGKILL: tests/test_scale_out.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tests.conftest import SUITE_PRESENCE_GRACE
from tests.legacy_client import legacy
from tests.support import EVENT_TIMEOUT, Api, Server, subscribed

GRACE = float(SUITE_PRESENCE_GRACE)
PRESENCE = ("UserOnline", "UserOffline")


async def test_a_first_connection_says_online_and_the_last_one_offline_after_the_grace(api: Api) -> None:
    alice, bob, eve = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("eve")
    chat_id = await api.new_chat(alice, bob)
    async with (
        subscribed(api, bob, presence=True) as bob_sub,
        legacy(api, bob) as bob_legacy,
        subscribed(api, eve, presence=True) as eve_sub,
    ):
        async with legacy(api, alice), subscribed(api, alice):  # two connections: one UserOnline
            assert await bob_sub.next("UserOnline") == {
                "__typename": "UserOnline",
                "chatId": chat_id,
                "userId": alice.id,
            }
            frame = await bob_legacy.next("user_online")
            assert frame["data"] == {"chat_id": chat_id, "user_id": alice.id}
            assert "cursor" not in frame  # ephemeral: not stored, not replayed
        closed = time.monotonic()
        offline = await bob_sub.next("UserOffline", timeout=GRACE + EVENT_TIMEOUT)
        assert time.monotonic() - closed >= GRACE * 0.9, "offline before the grace was over"
        assert (offline["chatId"], offline["userId"]) == (chat_id, alice.id)
        assert datetime.fromisoformat(offline["lastSeen"]).tzinfo is not None
        frame = await bob_legacy.next("user_offline")
        assert frame["data"] == {"chat_id": chat_id, "user_id": alice.id, "last_seen": offline["lastSeen"]}
        # Nothing of it reached someone who shares no chat with Alice.
        assert [e for e in await eve_sub.marker("eve") if e["__typename"] in PRESENCE] == []
        # The snapshot agrees.
        query = "query($c: ID!) { chat(id: $c) { participants { id isOnline } } }"
        data = await api.data(query, {"c": chat_id}, token=bob.token)
        assert {p["id"]: p["isOnline"] for p in data["chat"]["participants"]} == {alice.id: False, bob.id: True}


async def test_a_reconnect_within_the_grace_says_nothing(
    database_url: str, start_server: Callable[..., Server]
) -> None:
    grace = 4.0
    api = Api(start_server({"DATABASE_URL": database_url, "PRESENCE_GRACE": str(grace)}))
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with subscribed(api, bob, presence=True) as bob_sub:
        async with legacy(api, alice):
            await bob_sub.next("UserOnline")
        async with legacy(api, alice):  # a reload: back at once
            reconnected = time.monotonic()
        # Away for good now: the one presence event Bob gets is this absence's UserOffline.
        events: list[dict[str, Any]] = await bob_sub.collect_until(
            lambda e: e["__typename"] == "UserOffline", timeout=grace + EVENT_TIMEOUT
        )
        assert [e["__typename"] for e in events if e["__typename"] in PRESENCE] == ["UserOffline"]
        assert time.monotonic() - reconnected >= grace * 0.9
        assert {e["chatId"] for e in events if e["__typename"] in PRESENCE} == {chat_id}


async def test_chats_over_presence_max_members_get_no_presence_events(
    database_url: str, start_server: Callable[..., Server]
) -> None:
    api = Api(start_server({"DATABASE_URL": database_url, "PRESENCE_MAX_MEMBERS": "2", "PRESENCE_GRACE": "0"}))
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    direct = await api.new_chat(alice, bob)
    await api.new_chat(alice, bob, carol, name="three is a crowd", is_group=True)
    async with subscribed(api, bob, presence=True) as bob_sub:
        async with legacy(api, alice):
            assert (await bob_sub.next("UserOnline"))["chatId"] == direct
        assert (await bob_sub.next("UserOffline"))["chatId"] == direct
        # Nothing for the group: every presence event Bob got by now was the direct chat's.
        assert [e for e in await bob_sub.marker("after") if e["__typename"] in PRESENCE] == []


async def test_users_leaving_together_are_each_said_offline_once_with_their_own_last_seen(api: Api) -> None:
    """Graces that end at the same moment are announced together (one read of their chats): still one
    `UserOffline` per user and shared chat, each with the moment that user left."""
    watcher = await api.new_user("watcher")
    leavers = [await api.new_user(f"leaver{i}") for i in range(3)]
    group = await api.new_chat(watcher, *leavers, name="crowd", is_group=True)
    pairs = {leaver.id: await api.new_chat(watcher, leaver) for leaver in leavers}
    async with subscribed(api, watcher, presence=True) as sub:
        async with subscribed(api, leavers[0]), subscribed(api, leavers[1]), subscribed(api, leavers[2]):
            online = {(e["chatId"], e["userId"]) for e in [await sub.next("UserOnline") for _ in range(6)]}
            assert online == {(chat, u.id) for u in leavers for chat in (group, pairs[u.id])}
        offline = [await sub.next("UserOffline", timeout=GRACE + EVENT_TIMEOUT) for _ in range(6)]
        assert sorted((e["chatId"], e["userId"]) for e in offline) == sorted(online)
        last_seen: dict[str, set[str]] = {}
        for e in offline:
            last_seen.setdefault(e["userId"], set()).add(e["lastSeen"])
        assert all(len(moments) == 1 for moments in last_seen.values()), "one moment per user, in every chat"
        assert [e for e in await sub.marker("end") if e["__typename"] in PRESENCE] == []
