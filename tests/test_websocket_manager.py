"""`websocket_manager` (docs/operations.md "Server-side API"): the original backend's server-side API, bound to the running app.

The server runs in-process (a real uvicorn in the test's event loop) so the module-level object its
lifespan binds is the one this test calls; subscribers are real gql clients over WebSockets.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.inprocess import InProcessServer, settings_for
from tests.support import Api, subscribed
from websocket_manager import websocket_manager


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """Overrides conftest's `api`: these tests talk to the in-process server, not the subprocess one."""
    async with InProcessServer(settings_for(f"sqlite+aiosqlite:///{tmp_path / 'manager.db'}")) as server:
        yield Api(server)  # type: ignore[arg-type]  # Api needs only .url and .ws_url


async def test_notify_chat_participants_reaches_members_except_the_excluded_one(api: Api) -> None:
    alice, bob, carol, eve = [await api.new_user(n) for n in ("alice", "bob", "carol", "eve")]
    chat_id = await api.new_chat(alice, bob, carol, name="walkers", is_group=True)
    notification = {"type": "system_message", "message": "The park is closed today", "level": 2}
    async with (
        subscribed(api, alice) as alice_sub,
        subscribed(api, bob) as bob_sub,
        subscribed(api, carol) as carol_sub,
        subscribed(api, eve) as eve_sub,
    ):
        assert await websocket_manager.notify_chat_participants(chat_id, notification, exclude_user=carol.id) is True
        expected = {"type": "chat_notification", "chat_id": chat_id, "notification": notification}
        assert (await alice_sub.next("GlobalNotification"))["payload"] == expected
        assert (await bob_sub.next("GlobalNotification"))["payload"] == expected
        assert await carol_sub.marker("after-notify") == []  # excluded
        assert await eve_sub.marker("after-notify") == []  # not a member


async def test_send_global_notification_reaches_only_that_user(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    await api.new_chat(alice, bob)
    notification = {"type": "account_warning", "message": "Please verify your email", "nested": {"a": [1, 2]}}
    async with subscribed(api, alice) as alice_sub, subscribed(api, bob) as bob_sub:
        assert await websocket_manager.send_global_notification(uuid.UUID(bob.id), notification) is True
        event = await bob_sub.next("GlobalNotification")
        assert event["payload"] == notification
        assert await alice_sub.marker("after-global") == []


async def test_online_users_and_is_user_online_reflect_open_subscriptions(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    async with subscribed(api, alice):
        online = await websocket_manager.get_online_users()
        assert alice.id in online
        assert bob.id not in online
        assert await websocket_manager.is_user_online(alice.id) is True
        assert await websocket_manager.is_user_online(uuid.UUID(alice.id)) is True
        assert await websocket_manager.is_user_online(bob.id) is False
    deadline = time.monotonic() + 10
    while await websocket_manager.is_user_online(alice.id):
        assert time.monotonic() < deadline, "alice still online 10 s after her only subscription closed"
        await asyncio.sleep(0.05)
    assert alice.id not in await websocket_manager.get_online_users()


async def test_get_user_chats_list_lists_every_chat_of_the_user(api: Api) -> None:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    direct = await api.new_chat(alice, bob)
    group = await api.new_chat(carol, alice, bob, name="crew", is_group=True)
    others = await api.new_chat(bob, carol)

    assert sorted(await websocket_manager.get_user_chats_list(alice.id)) == sorted([direct, group])
    assert sorted(await websocket_manager.get_user_chats_list(uuid.UUID(carol.id))) == sorted([group, others])
    assert await websocket_manager.get_user_chats_list(uuid.uuid4()) == []


async def test_block_user_mirrors_a_block_of_the_main_app_and_unblock_user_undoes_it(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with subscribed(api, alice) as alice_sub:
        assert await websocket_manager.block_user(alice.id, uuid.UUID(bob.id)) is True
        assert (await alice_sub.next("BlockChanged"))["blockedUserId"] == bob.id
        await api.send(bob, chat_id, "not for alice")
        assert [e for e in await alice_sub.marker("blocked") if e["__typename"] == "NewMessage"] == []

        assert await websocket_manager.unblock_user(uuid.UUID(alice.id), bob.id) is True
        assert (await alice_sub.next("BlockChanged"))["blocked"] is False
        await api.send(bob, chat_id, "for alice again")
        assert (await alice_sub.next("NewMessage"))["message"]["content"] == "for alice again"
