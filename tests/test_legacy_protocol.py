"""The legacy JSON protocol at /websocket/ws/{user_id}, through a real server and real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import websockets

from services.auth import issue_user_token
from tests.legacy_client import LegacyClient, legacy
from tests.support import EVENT_TIMEOUT, ROOT, Api, subscribed

JS_DIR = ROOT / "tests" / "js"


async def _read_lines_until(proc: asyncio.subprocess.Process, needle: str, timeout: float = EVENT_TIMEOUT) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} not printed within {timeout}s; got {lines}")
        raw = await asyncio.wait_for(proc.stdout.readline(), remaining)
        if not raw:
            raise AssertionError(f"process exited before printing {needle!r}; got {lines}")
        lines.append(raw.decode().rstrip("\n"))
        if needle in lines[-1]:
            return lines


async def test_guide_javascript_example_prints_sender_email_and_text(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(bob, alice)
    env = {**os.environ, "USER_ID": alice.id, "PORT": str(api.server.port), "TOKEN": alice.token}
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS_DIR / "run_guide_example.js"), env=env, stdout=asyncio.subprocess.PIPE, cwd=JS_DIR
    )
    try:
        await _read_lines_until(proc, "Подключен")
        # The example asks for its chats one second after connecting: once they arrive it is streaming.
        await _read_lines_until(proc, f"[ui] chat {chat_id}")
        await api.send(bob, chat_id, "Привет из GraphQL")
        lines = await _read_lines_until(proc, "Текст:")
    finally:
        proc.kill()
        await proc.wait()
    assert f"От: {bob.email}" in lines
    assert lines[-1] == "Текст: Привет из GraphQL"


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["other_users_token", "expired", "forged", "missing"])
async def test_connection_refused_with_1008_for_bad_tokens(api: Api, case: str) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    token = {
        "other_users_token": bob.token,
        "expired": api.token(alice.id, ttl=timedelta(seconds=-300)),
        "forged": issue_user_token(alice.id, key="not-the-server-key-but-long-enough-0123456789"),
        "missing": "",
    }[case]
    url = f"{api.server.ws_url}/websocket/ws/{alice.id}" + (f"?token={token}" if token else "")
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT)
        assert ws.close_code == 1008


async def test_token_in_authorization_header_is_accepted(api: Api) -> None:
    alice = await api.new_user("alice")
    url = f"{api.server.ws_url}/websocket/ws/{alice.id}"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {alice.token}"}) as ws:
        await ws.send(json.dumps({"type": "get_chat_status", "data": {}}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))
    assert frame["type"] == "chat_status"


# -- cross-protocol -------------------------------------------------------------------------------


async def test_message_from_legacy_reaches_graphql_and_back(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with legacy(api, alice) as a, subscribed(api, bob) as b:
        await a.send("send_message", {"chat_id": chat_id, "content": "from legacy"})
        event = await b.next("NewMessage")
        assert event["message"]["content"] == "from legacy"
        assert event["message"]["sender"]["email"] == alice.email

        await api.send(bob, chat_id, "from graphql")
        frame = await a.next("new_message")
        # the sender's own legacy message came first (new_message goes to the sender too)
        assert frame["data"]["content"] == "from legacy"
        frame = await a.next("new_message")
        assert frame["data"]["content"] == "from graphql"
        assert frame["data"]["sender"]["email"] == bob.email
        assert frame["data"]["seq"] == 2


# -- auto-subscribe and live membership -----------------------------------------------------------


async def test_events_from_all_chats_arrive_without_join_chat(api: Api) -> None:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    with_bob = await api.new_chat(alice, bob)
    group = await api.new_chat(carol, alice, bob, name="group")
    async with legacy(api, alice) as a:
        await api.send(bob, with_bob, "one")
        await api.send(carol, group, "two")
        first, second = await a.next("new_message"), await a.next("new_message")
    assert {
        (first["data"]["chat_id"], first["data"]["content"]),
        (second["data"]["chat_id"], second["data"]["content"]),
    } == {
        (with_bob, "one"),
        (group, "two"),
    }


async def test_chat_created_after_connect_streams_without_reconnecting(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    async with legacy(api, alice) as a:
        chat_id = await api.new_chat(bob, alice)
        created = await a.next("chat_created")
        assert created["data"]["chat_id"] == chat_id
        await api.send(bob, chat_id, "new chat, same socket")
        frame = await a.next("new_message")
    assert frame["data"]["chat_id"] == chat_id
    assert frame["data"]["content"] == "new chat, same socket"


async def test_member_added_later_streams_and_removal_stops(api: Api) -> None:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    group = await api.new_chat(bob, carol, name="crew", is_group=True)
    async with legacy(api, alice) as a:
        await api.data(
            "mutation($c: ID!, $u: ID!) { addChatMember(chatId: $c, userId: $u) { id } }",
            {"c": group, "u": alice.id},
            token=bob.token,
        )
        assert (await a.next("member_added"))["data"] == {"chat_id": group, "user_id": alice.id, "added_by": bob.id}
        await api.send(carol, group, "welcome alice")
        assert (await a.next("new_message"))["data"]["content"] == "welcome alice"

        await api.data(
            "mutation($c: ID!, $u: ID!) { removeChatMember(chatId: $c, userId: $u) }",
            {"c": group, "u": alice.id},
            token=bob.token,
        )
        await a.next("member_removed")
        await api.send(carol, group, "after removal")
        before = await a.marker("removed")
    assert not [f for f in before if f["type"] == "new_message"]


# -- multi-device ---------------------------------------------------------------------------------


async def test_two_connections_of_one_user_both_receive_and_one_closing_keeps_online(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with legacy(api, bob) as b:
        phone = await LegacyClient(api, alice).connect()
        laptop = await LegacyClient(api, alice).connect()
        await phone.ready()
        await laptop.ready()
        await b.send("send_message", {"chat_id": chat_id, "content": "to both devices"})
        assert (await phone.next("new_message"))["data"]["content"] == "to both devices"
        assert (await laptop.next("new_message"))["data"]["content"] == "to both devices"

        await phone.close()
        # Bob's view: Alice is still online through the laptop.
        status = await b.request("get_chat_status", reply="chat_status")
        assert status["data"]["chats"][0]["online_users"] == [alice.id]
        await b.send("typing", {"chat_id": chat_id, "is_typing": True})
        assert (await laptop.next("user_typing"))["data"]["user_id"] == bob.id
        await laptop.close()

        deadline = time.monotonic() + EVENT_TIMEOUT
        while True:
            status = await b.request("get_chat_status", reply="chat_status")
            if status["data"]["chats"][0]["online_users"] == []:
                break
            assert time.monotonic() < deadline, "alice still online after both devices closed"
            await asyncio.sleep(0.05)


# -- replies --------------------------------------------------------------------------------------


async def test_get_my_chats_and_get_chat_status_answer_per_member(api: Api) -> None:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    group = await api.new_chat(alice, bob, carol, name="trail")
    direct = await api.new_chat(alice, bob)
    await api.send(bob, group, "g1")
    await api.send(carol, group, "g2")
    await api.send(alice, group, "g3 mine")
    await api.send(bob, direct, "d1")
    async with legacy(api, alice) as a, legacy(api, bob) as b:
        await b.send("mark_read", {"chat_id": group})
        await a.next("messages_read")
        await b.send("typing", {"chat_id": group, "is_typing": True})
        await a.next("user_typing")

        mine = (await a.request("get_my_chats", reply="my_chats"))["data"]
        assert mine["total_chats"] == 2
        by_id = {c["id"]: c for c in mine["chats"]}
        assert by_id[group]["unread_count"] == 2  # g1, g2 — never my own g3
        assert by_id[group]["last_message"] == "g3 mine"
        assert by_id[direct]["unread_count"] == 1
        assert by_id[direct]["last_message"] == "d1"
        assert by_id[group]["is_group"] is True and by_id[group]["name"] == "trail"
        assert all(c["is_connected"] for c in mine["chats"])
        online = {p["id"]: p["is_online"] for p in by_id[group]["participants"]}
        assert online == {alice.id: True, bob.id: True, carol.id: False}
        assert {p["email"] for p in by_id[group]["participants"]} == {alice.email, bob.email, carol.email}

        bobs = {c["id"]: c for c in (await b.request("get_my_chats", reply="my_chats"))["data"]["chats"]}
        assert bobs[group]["unread_count"] == 0  # Bob read the group; Alice's count did not move
        assert bobs[direct]["unread_count"] == 0  # his own message

        status = (await a.request("get_chat_status", reply="chat_status"))["data"]
        by_chat = {c["chat_id"]: c for c in status["chats"]}
        assert by_chat[group] == {
            "chat_id": group,
            "online_users": [bob.id],
            "typing_users": [bob.id],
            "users_count": 3,
        }
        assert by_chat[direct] == {"chat_id": direct, "online_users": [bob.id], "typing_users": [], "users_count": 2}
        assert status["total_online_users"] == 1


# -- activity commands ----------------------------------------------------------------------------


async def test_typing_join_and_leave_reach_only_the_others_and_a_read_every_device(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    await api.send(bob, chat_id, "read me")
    async with legacy(api, alice) as a, legacy(api, bob) as b:
        await a.send("typing", {"chat_id": chat_id, "is_typing": True})
        assert (await b.next("user_typing"))["data"] == {"chat_id": chat_id, "user_id": alice.id}
        await a.send("typing", {"chat_id": chat_id, "is_typing": False})
        assert (await b.next("user_stopped_typing"))["data"] == {"chat_id": chat_id, "user_id": alice.id}
        await a.send("mark_read", {"chat_id": chat_id})
        assert (await b.next("messages_read"))["data"] == {"chat_id": chat_id, "user_id": alice.id, "last_read_seq": 1}
        await a.send("leave_chat", {"chat_id": chat_id})
        assert (await b.next("user_left"))["data"] == {"chat_id": chat_id, "user_id": alice.id}
        await a.send("join_chat", {"chat_id": chat_id})
        assert (await b.next("user_joined"))["data"] == {"chat_id": chat_id, "user_id": alice.id}

        own = await a.marker("own-events")
    # Its own read marker only (its other devices need it: tests/test_device_sync.py); Bob's coming online is his.
    mine = [f["type"] for f in own if f["data"].get("user_id") == alice.id]
    assert mine == ["messages_read"], f"the actor received its own events: {own}"


async def test_leave_chat_stops_that_connections_events_and_join_chat_resumes(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with legacy(api, alice) as a, legacy(api, alice) as other_device:
        await a.send("leave_chat", {"chat_id": chat_id})
        chats = (await a.request("get_my_chats", reply="my_chats"))["data"]["chats"]
        assert chats[0]["is_connected"] is False
        await api.send(bob, chat_id, "while paused")
        assert (await other_device.next("new_message"))["data"]["content"] == "while paused"
        paused = await a.marker("paused")
        assert [f for f in paused if f["type"] == "new_message"] == []

        await a.send("join_chat", {"chat_id": chat_id})
        chats = (await a.request("get_my_chats", reply="my_chats"))["data"]["chats"]
        assert chats[0]["is_connected"] is True
        await api.send(bob, chat_id, "after join")
        assert (await a.next("new_message"))["data"]["content"] == "after join"


# -- bad input ------------------------------------------------------------------------------------

INTERNAL_WORDS = ("Traceback", "sqlalchemy", 'File "', "Error:", "asyncpg", "sqlite")


def _bad_frames(foreign_chat: str) -> list[tuple[str, str, str]]:
    """(name, raw frame, expected code)."""
    long = "x" * 10_001
    return [
        ("not json", "{not json", "BAD_REQUEST"),
        ("not an object", "[1, 2, 3]", "BAD_REQUEST"),
        ("a string", '"send_message"', "BAD_REQUEST"),
        ("unknown type", json.dumps({"type": "drop_tables", "data": {}}), "BAD_REQUEST"),
        ("type not a string", json.dumps({"type": 7, "data": {}}), "BAD_REQUEST"),
        ("data not an object", json.dumps({"type": "send_message", "data": "hi"}), "BAD_REQUEST"),
        ("missing chat_id", json.dumps({"type": "send_message", "data": {"content": "hi"}}), "BAD_REQUEST"),
        ("missing content", json.dumps({"type": "send_message", "data": {"chat_id": foreign_chat}}), "BAD_REQUEST"),
        (
            "content not a string",
            json.dumps({"type": "send_message", "data": {"chat_id": foreign_chat, "content": 5}}),
            "BAD_REQUEST",
        ),
        ("chat_id not a uuid", json.dumps({"type": "mark_read", "data": {"chat_id": "chat-1"}}), "BAD_REQUEST"),
        ("chat_id a number", json.dumps({"type": "typing", "data": {"chat_id": 12, "is_typing": True}}), "BAD_REQUEST"),
        (
            "is_typing not a bool",
            json.dumps({"type": "typing", "data": {"chat_id": foreign_chat, "is_typing": "yes"}}),
            "BAD_REQUEST",
        ),
        (
            "someone else's chat: send",
            json.dumps({"type": "send_message", "data": {"chat_id": foreign_chat, "content": "hi"}}),
            "FORBIDDEN",
        ),
        (
            "someone else's chat: read",
            json.dumps({"type": "mark_read", "data": {"chat_id": foreign_chat}}),
            "FORBIDDEN",
        ),
        (
            "someone else's chat: typing",
            json.dumps({"type": "typing", "data": {"chat_id": foreign_chat, "is_typing": True}}),
            "FORBIDDEN",
        ),
        (
            "someone else's chat: join",
            json.dumps({"type": "join_chat", "data": {"chat_id": foreign_chat}}),
            "FORBIDDEN",
        ),
        (
            "someone else's chat: leave",
            json.dumps({"type": "leave_chat", "data": {"chat_id": foreign_chat}}),
            "FORBIDDEN",
        ),
        ("nonexistent chat", json.dumps({"type": "join_chat", "data": {"chat_id": str(uuid.uuid4())}}), "FORBIDDEN"),
        ("content too long", "", "PAYLOAD_TOO_LARGE"),  # filled in below: needs a chat of the user's own
        ("empty content", "", "BAD_REQUEST"),
        (
            "long content elsewhere",
            json.dumps({"type": "send_message", "data": {"chat_id": foreign_chat, "content": long}}),
            "PAYLOAD_TOO_LARGE",
        ),
    ]


async def test_bad_input_gets_coded_error_and_connection_keeps_working(api: Api) -> None:
    alice, bob, mallory = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("mallory")
    own_chat = await api.new_chat(mallory, bob)
    foreign_chat = await api.new_chat(alice, bob)
    cases = _bad_frames(foreign_chat)
    fill = {
        "content too long": json.dumps(
            {"type": "send_message", "data": {"chat_id": own_chat, "content": "x" * 10_001}}
        ),
        "empty content": json.dumps({"type": "send_message", "data": {"chat_id": own_chat, "content": ""}}),
    }
    async with legacy(api, alice) as victim, legacy(api, mallory) as m:
        for name, raw, code in cases:
            await m.send("", raw=fill.get(name, raw))
            frame = await m.next()
            assert frame["type"] == "error", f"{name}: {frame}"
            assert frame["data"]["code"] == code, f"{name}: {frame}"
            text = json.dumps(frame)
            assert not any(word in text for word in INTERNAL_WORDS), f"{name} leaked internals: {text}"
            # the same connection still works
            assert (await m.request("get_chat_status", reply="chat_status"))["type"] == "chat_status"
        await m.send("send_message", {"chat_id": own_chat, "content": "still alive"})
        assert (await m.next("new_message"))["data"]["content"] == "still alive"

        leaked = await victim.marker("after-attack")
    # a non-member's join/leave/typing/send was announced to no one in the victim's chat
    assert [f for f in leaked if f["data"].get("chat_id") == foreign_chat] == []


async def test_forbidden_error_reveals_nothing_about_the_chat(api: Api) -> None:
    alice, bob, mallory = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("mallory")
    real = await api.new_chat(alice, bob, name="secret plans")
    async with legacy(api, mallory) as m:
        answers = []
        for chat_id in (real, str(uuid.uuid4())):
            await m.send("send_message", {"chat_id": chat_id, "content": "hi"})
            answers.append((await m.next("error"))["data"])
    assert answers[0] == answers[1]
    assert "secret" not in json.dumps(answers)


# -- shutdown -------------------------------------------------------------------------------------


async def test_sigterm_with_open_legacy_connections_finishes_within_graceful_timeout(
    api: Api, database_url: str, start_server: Any
) -> None:
    server = start_server({"DATABASE_URL": database_url})
    local = Api(server)
    users = [await local.new_user(f"u{i}") for i in range(3)]
    clients = [await LegacyClient(local, u).connect() for u in users]
    for client in clients:
        await client.ready()
    assert server.proc is not None
    started = time.monotonic()
    returncode = await asyncio.to_thread(server.stop, 15.0)  # uvicorn's graceful timeout here is 5 s
    elapsed = time.monotonic() - started
    # uvicorn re-raises SIGTERM after a graceful shutdown, so the exit status is -15, not a kill.
    assert returncode in (0, -15)
    assert elapsed < 5.0 + 2.0, f"shutdown took {elapsed:.1f}s"
    assert "Application shutdown complete" in server.log()
    for client in clients:
        await client.wait_closed()
    log = server.log()
    assert "Traceback" not in log
    assert not any(u.token in log for u in users), "a token reached the access log"


def test_websocket_test_client_help() -> None:
    result = subprocess.run(
        [sys.executable, "websocket_test_client.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--user-id" in result.stdout and "send CHAT_ID TEXT" in result.stdout


async def test_websocket_test_client_edits_and_reacts_and_prints_the_events(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    message = await api.send(alice, chat_id, "first words")
    command = [sys.executable, "websocket_test_client.py", "--url", api.server.ws_url, "--user-id", alice.id]
    command += ["--token", alice.token, "--listen", "60"]
    command += ["--command", f"edit {message['id']} better words", "--command", f"react {message['id']} 👍"]
    proc = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    try:
        edited = await _read_lines_until(proc, "better words")
        reacted = await _read_lines_until(proc, "added 👍")
    finally:
        proc.kill()
        await proc.wait()
    assert f"✏️  [{chat_id}] {alice.id} edited {message['id']}: better words" in edited
    assert reacted[-1] == f"😀 {alice.id} added 👍 on {message['id']}: 👍1"


async def test_get_messages_pages_history_by_seq(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    sent = [await api.send(bob, chat_id, f"h{i}") for i in range(5)]
    async with legacy(api, alice) as a:
        latest = (await a.request("get_messages", {"chat_id": chat_id, "limit": 2}, reply="messages"))["data"]
        assert latest["chat_id"] == chat_id
        assert [m["content"] for m in latest["messages"]] == ["h3", "h4"]
        older = (
            await a.request(
                "get_messages", {"chat_id": chat_id, "before": sent[3]["seq"], "limit": 2}, reply="messages"
            )
        )["data"]
        assert [m["content"] for m in older["messages"]] == ["h1", "h2"]
        newer = (await a.request("get_messages", {"chat_id": chat_id, "after": sent[3]["seq"]}, reply="messages"))[
            "data"
        ]
        assert [m["content"] for m in newer["messages"]] == ["h4"]
        await a.send("get_messages", {"chat_id": chat_id, "limit": "ten"})
        assert (await a.next("error"))["data"]["code"] == "BAD_REQUEST"
