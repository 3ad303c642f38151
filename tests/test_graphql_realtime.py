"""Real-time semantics of `chatEvents` (docs/protocols.md, docs/resume.md): live auto-subscribe, typing, presence, privacy and
server-side notifications, through real servers and real gql subscriptions on each database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import Api, Server, Subscriber, User, subscribed, without_cursor

CHAT_STATUS = "{ chatStatus { totalOnlineUsers chats { chatId onlineUserIds typingUserIds usersCount } } }"
# How long a closed subscription may take to count as gone (the server notices the socket closing).
OFFLINE_DEADLINE = 10.0
# How long a user with one subscription left is watched for (wrongly) going offline.
STAYS_ONLINE_WINDOW = 1.0


@pytest.fixture(scope="module")
def slow_typing_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second server on the same database whose typing lasts 60 s unless stopped: whatever stops typing
    on it within seconds is not the TTL."""
    log = tmp_path_factory.mktemp("slow-typing") / "server.log"
    # Typing is broadcast unthrottled, as on the suite's server: these tests read chatStatus right after a change.
    srv = Server({"DATABASE_URL": database_url, "TYPING_TTL": "60", "TYPING_BROADCAST_INTERVAL": "0"}, log).start()
    yield srv
    srv.stop()


@pytest.fixture
def slow_api(slow_typing_server: Server) -> Api:
    return Api(slow_typing_server)


async def set_typing(api: Api, user: User, chat_id: str, is_typing: bool) -> None:
    await api.data(
        "mutation($c: ID!, $t: Boolean!) { setTyping(chatId: $c, isTyping: $t) }",
        {"c": chat_id, "t": is_typing},
        token=user.token,
    )


async def is_online(api: Api, user: User) -> bool:
    data = await api.data("query($u: ID!) { isUserOnline(userId: $u) }", {"u": user.id}, token=api.service_token)
    online: bool = data["isUserOnline"]
    return online


async def online_users(api: Api) -> list[str]:
    users: list[str] = (await api.data("{ onlineUsers }", token=api.service_token))["onlineUsers"]
    return users


async def wait_offline(api: Api, user: User) -> float:
    """Poll until the server counts the user offline; the seconds it took."""
    start = time.monotonic()
    while await is_online(api, user):
        assert time.monotonic() - start < OFFLINE_DEADLINE, f"{user} still online after {OFFLINE_DEADLINE}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


# -- auto-subscribe, live --------------------------------------------------------------------------


async def test_subscription_opened_before_a_chat_is_created_streams_that_chat(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    async with subscribed(api, bob) as bob_sub:
        chat_id = await api.new_chat(alice, bob)
        created = await bob_sub.next()
        assert without_cursor(created) == {
            "__typename": "ChatCreated",
            "chatId": chat_id,
            "name": None,
            "isGroup": False,
            "createdBy": alice.id,
            "memberIds": sorted([alice.id, bob.id]),
        }
        await api.send(alice, chat_id, "hi bob, new chat")
        event = await bob_sub.next()
        assert event["__typename"] == "NewMessage"
        assert event["message"]["content"] == "hi bob, new chat"
        assert event["message"]["sender"]["id"] == alice.id


async def test_added_member_starts_receiving_and_removed_member_stops(api: Api) -> None:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    chat_id = await api.new_chat(alice, bob, name="trail crew", is_group=True)
    await api.send(bob, chat_id, "before carol")
    async with subscribed(api, carol) as carol_sub, subscribed(api, alice) as alice_sub:
        await api.data(
            "mutation($c: ID!, $u: ID!) { addChatMember(chatId: $c, userId: $u) { id } }",
            {"c": chat_id, "u": carol.id},
            token=alice.token,
        )
        added = await carol_sub.next()
        assert without_cursor(added) == {
            "__typename": "ChatMemberAdded",
            "chatId": chat_id,
            "userId": carol.id,
            "addedBy": alice.id,
        }

        await api.send(bob, chat_id, "welcome carol")
        event = await carol_sub.next()
        assert event["__typename"] == "NewMessage"
        assert event["message"]["content"] == "welcome carol"

        removed = await api.data(
            "mutation($c: ID!, $u: ID!) { removeChatMember(chatId: $c, userId: $u) }",
            {"c": chat_id, "u": carol.id},
            token=alice.token,
        )
        assert removed["removeChatMember"] is True
        gone = await carol_sub.next()
        assert without_cursor(gone) == {
            "__typename": "ChatMemberRemoved",
            "chatId": chat_id,
            "userId": carol.id,
            "removedBy": alice.id,
        }

        await api.send(bob, chat_id, "after carol left")
        await set_typing(api, bob, chat_id, True)
        # The chat's remaining members still get it...
        await alice_sub.collect_until(
            lambda e: e["__typename"] == "NewMessage" and e["message"]["content"] == "after carol left"
        )
        # ...carol's open subscription does not.
        assert await carol_sub.marker("after-removal") == []


# -- typing ----------------------------------------------------------------------------------------


async def test_typing_reaches_the_other_members_but_not_the_typer(api: Api) -> None:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    chat_id = await api.new_chat(alice, bob, carol, is_group=True)
    async with (
        subscribed(api, alice) as alice_sub,
        subscribed(api, bob) as bob_sub,
        subscribed(api, carol) as carol_sub,
    ):
        await set_typing(api, alice, chat_id, True)
        for sub in (bob_sub, carol_sub):
            assert await sub.next() == {"__typename": "UserTyping", "chatId": chat_id, "userId": alice.id}
        await set_typing(api, alice, chat_id, False)
        for sub in (bob_sub, carol_sub):
            assert await sub.next() == {"__typename": "UserStoppedTyping", "chatId": chat_id, "userId": alice.id}
        assert await alice_sub.marker("typer") == []


async def test_typing_not_refreshed_is_followed_by_user_stopped_typing(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with subscribed(api, bob) as bob_sub:
        started = time.monotonic()
        await set_typing(api, alice, chat_id, True)
        assert await bob_sub.next() == {"__typename": "UserTyping", "chatId": chat_id, "userId": alice.id}
        # The suite's server expires typing after 1 s (conftest.SUITE_TYPING_TTL).
        stopped = await bob_sub.next(timeout=5)
        elapsed = time.monotonic() - started
        assert stopped == {"__typename": "UserStoppedTyping", "chatId": chat_id, "userId": alice.id}
        assert elapsed >= 0.9, f"typing stopped after {elapsed:.2f}s, before the 1 s TTL"
        status = await api.data(CHAT_STATUS, token=bob.token)
        entry = next(c for c in status["chatStatus"]["chats"] if c["chatId"] == chat_id)
        assert entry["typingUserIds"] == []


async def test_typers_disconnect_stops_typing_at_once(slow_api: Api) -> None:
    api = slow_api  # typing lasts 60 s here
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with subscribed(api, bob) as bob_sub:
        alice_sub = await Subscriber(api, alice).start()
        await set_typing(api, alice, chat_id, True)
        assert await bob_sub.next() == {"__typename": "UserTyping", "chatId": chat_id, "userId": alice.id}

        closed = time.monotonic()
        await alice_sub.close()
        stopped = await bob_sub.next(timeout=5)
        assert stopped == {"__typename": "UserStoppedTyping", "chatId": chat_id, "userId": alice.id}
        assert time.monotonic() - closed < 5


# -- presence --------------------------------------------------------------------------------------


async def test_chat_status_shows_who_else_is_online_and_typing_per_chat(slow_api: Api) -> None:
    api = slow_api  # typing set here outlives the test
    alice, bob, carol, dave = [await api.new_user(n) for n in ("alice", "bob", "carol", "dave")]
    group = await api.new_chat(alice, bob, carol, name="crew", is_group=True)
    direct = await api.new_chat(alice, dave)  # dave stays offline

    async def status(user: User) -> tuple[int, dict[str, dict[str, Any]]]:
        data = (await api.data(CHAT_STATUS, token=user.token))["chatStatus"]
        return data["totalOnlineUsers"], {c["chatId"]: c for c in data["chats"]}

    async with subscribed(api, alice), subscribed(api, bob):
        await set_typing(api, bob, group, True)

        total, chats = await status(alice)
        assert set(chats) == {group, direct}
        assert chats[group] == {
            "chatId": group,
            "onlineUserIds": [bob.id],
            "typingUserIds": [bob.id],
            "usersCount": 3,
        }
        assert chats[direct] == {"chatId": direct, "onlineUserIds": [], "typingUserIds": [], "usersCount": 2}
        assert total == 1  # bob; never alice herself

        total, chats = await status(bob)  # his own typing and presence are not listed
        assert chats[group] == {"chatId": group, "onlineUserIds": [alice.id], "typingUserIds": [], "usersCount": 3}
        assert total == 1

        total, chats = await status(carol)  # offline herself, she still sees the others
        assert chats[group]["onlineUserIds"] == sorted([alice.id, bob.id])
        assert chats[group]["typingUserIds"] == [bob.id]
        assert total == 2

        await set_typing(api, bob, group, False)
        _, chats = await status(alice)
        assert chats[group]["typingUserIds"] == []


async def test_user_with_two_subscriptions_stays_online_until_both_close(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    phone = await Subscriber(api, alice).start()
    laptop = await Subscriber(api, alice).start()
    try:
        assert await is_online(api, alice)
        await phone.close()
        # Still online, and the remaining device still streams.
        watch_until = time.monotonic() + STAYS_ONLINE_WINDOW
        while time.monotonic() < watch_until:
            assert await is_online(api, alice), "alice went offline with a subscription still open"
            assert alice.id in await online_users(api)
            await asyncio.sleep(0.05)
        await api.send(bob, chat_id, "to the laptop")
        assert (await laptop.next("NewMessage"))["message"]["content"] == "to the laptop"
    finally:
        await phone.close()
        await laptop.close()
    await wait_offline(api, alice)
    assert alice.id not in await online_users(api)


async def test_online_users_and_is_user_online_answer_for_subscribed_users(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    assert not await is_online(api, alice)
    async with subscribed(api, alice):
        assert await is_online(api, alice)
        assert not await is_online(api, bob)
        online = await online_users(api)
        assert alice.id in online
        assert bob.id not in online
        # Members see it too.
        data = await api.data(
            "query($c: ID!) { chat(id: $c) { participants { id isOnline } } }", {"c": chat_id}, token=bob.token
        )
        assert {p["id"]: p["isOnline"] for p in data["chat"]["participants"]} == {alice.id: True, bob.id: False}
    await wait_offline(api, alice)
    assert alice.id not in await online_users(api)


# -- privacy ---------------------------------------------------------------------------------------


async def test_non_participants_subscription_never_receives_the_chats_events(api: Api) -> None:
    alice, bob, eve = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("eve")
    chat_id = await api.new_chat(alice, bob)
    async with subscribed(api, alice) as alice_sub, subscribed(api, bob) as bob_sub, subscribed(api, eve) as eve_sub:
        await api.send(alice, chat_id, "for bob only")
        assert (await bob_sub.next("NewMessage"))["message"]["content"] == "for bob only"
        await set_typing(api, bob, chat_id, True)
        assert (await alice_sub.next("UserTyping"))["userId"] == bob.id
        await api.data("mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }", {"c": chat_id}, token=bob.token)
        assert (await alice_sub.next("MessagesRead"))["userId"] == bob.id

        assert await eve_sub.marker("eve") == []


# -- server-side notifications ---------------------------------------------------------------------


async def test_notify_chat_participants_reaches_members_except_the_excluded_one(api: Api) -> None:
    alice, bob, carol, eve = [await api.new_user(n) for n in ("alice", "bob", "carol", "eve")]
    chat_id = await api.new_chat(alice, bob, carol, is_group=True)
    notification = {"type": "system_message", "message": "Walk moved to 7pm", "tags": ["walk", 7], "meta": {"x": None}}
    async with (
        subscribed(api, alice) as alice_sub,
        subscribed(api, bob) as bob_sub,
        subscribed(api, carol) as carol_sub,
        subscribed(api, eve) as eve_sub,
    ):
        data = await api.data(
            "mutation($c: ID!, $n: JSON!, $x: ID) { notifyChatParticipants(chatId: $c, notification: $n, excludeUserId: $x) }",
            {"c": chat_id, "n": notification, "x": carol.id},
            token=api.service_token,
        )
        assert data["notifyChatParticipants"] is True
        expected = {"type": "chat_notification", "chat_id": chat_id, "notification": notification}
        for sub in (alice_sub, bob_sub):
            assert without_cursor(await sub.next()) == {"__typename": "GlobalNotification", "payload": expected}
        assert await carol_sub.marker("excluded") == []
        assert await eve_sub.marker("outsider") == []


async def test_send_global_notification_reaches_only_that_user_as_given(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    await api.new_chat(alice, bob)
    notification = {"type": "account_warning", "message": "Please verify your email", "n": 3, "ok": False}
    async with subscribed(api, alice) as alice_sub, subscribed(api, bob) as bob_sub:
        data = await api.data(
            "mutation($u: ID!, $n: JSON!) { sendGlobalNotification(userId: $u, notification: $n) }",
            {"u": bob.id, "n": notification},
            token=api.service_token,
        )
        assert data["sendGlobalNotification"] is True
        assert without_cursor(await bob_sub.next()) == {"__typename": "GlobalNotification", "payload": notification}
        assert await alice_sub.marker("not-for-alice") == []
