"""Typing amplification, attacked on a live server with the default limits: one user toggling typing 100 times a
second in a 1,000-member chat, from two sockets and over HTTP at once."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert

from models import Database, tables
from tests.legacy_client import LegacyClient
from tests.support import Api, Server, User, sqlite_server

MEMBERS = 1000
LISTENERS = 40  # members connected while the typer toggles (each counts the typing events it receives)
TOGGLES_PER_SECOND = 100
DURATION = 3.0
INTERVAL = 1.0  # TYPING_BROADCAST_INTERVAL's default
TYPING = ("user_typing", "user_stopped_typing")
SET_TYPING = "mutation($c: ID!, $t: Boolean!) { setTyping(chatId: $c, isTyping: $t) }"


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The default limits, but a chat as big as the attack needs (MAX_CHAT_MEMBERS is 256 by default).
    with sqlite_server(tmp_path_factory.mktemp("typing"), {"MAX_CHAT_MEMBERS": str(MEMBERS)}) as server:
        yield server


async def _members(server: Server, count: int) -> list[User]:
    """`count` users written straight into the server's database (a thousand upsertUser calls would take half a
    minute of this test's time; how users are provisioned is not what it is about)."""
    users = [User(id=str(uuid.uuid4()), email=f"m{i}@example.test", token="") for i in range(count)]
    db = Database(server.env["DATABASE_URL"])
    try:
        async with db.write() as session:
            await session.execute(insert(tables.User), [{"id": uuid.UUID(u.id), "email": u.email} for u in users])
    finally:
        await db.dispose()
    api = Api(server)
    return [User(id=u.id, email=u.email, token=api.token(u.id)) for u in users]


async def test_typing_toggles_reach_a_big_chat_at_most_once_per_interval(defaults: Server) -> None:
    api = Api(defaults)
    typer = await api.new_user("typer")
    members = await _members(defaults, MEMBERS - 1)
    chat_id = await api.new_chat(typer, *members, name="everyone", is_group=True)
    listeners = [await LegacyClient(api, member).connect() for member in members[:LISTENERS]]
    for listener in listeners:
        await listener.ready()
    sockets = [await LegacyClient(api, typer).connect(), await LegacyClient(api, typer).connect()]
    for socket in sockets:
        await socket.ready()

    refused = 0

    async def over_http(is_typing: bool) -> None:
        nonlocal refused
        body = await api.post(SET_TYPING, {"c": chat_id, "t": is_typing}, token=typer.token)
        if body.get("errors"):
            assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED", body
            refused += 1

    started = time.monotonic()
    pending: list[asyncio.Task[Any]] = []
    for toggles in range(int(TOGGLES_PER_SECOND * DURATION)):
        is_typing = toggles % 2 == 0
        where = toggles % 3
        if where == 2:
            pending.append(asyncio.create_task(over_http(is_typing)))
        else:
            await sockets[where].send("typing", {"chat_id": chat_id, "is_typing": is_typing})
        await asyncio.sleep(max(0.0, started + (toggles + 1) / TOGGLES_PER_SECOND - time.monotonic()))
    toggles += 1
    await asyncio.gather(*pending)
    toggled_for = time.monotonic() - started
    # Let the last deferred change go out (so that it is counted), then read each listener up to a marker
    # notification sent after it: every typing event published before the marker is in hand.
    await asyncio.sleep(INTERVAL)
    for socket in sockets:
        for frame in await socket.marker("typer-done"):
            if frame["type"] == "error":
                assert frame["data"]["code"] == "RATE_LIMITED", frame
                refused += 1
    received = []
    for listener in listeners:
        frames = await listener.marker("done")
        received.append(sum(1 for f in frames if f["type"] in TYPING and f["data"]["chat_id"] == chat_id))

    # The documented bound: one broadcast per interval, plus the first one at once.
    per_member = math.ceil(toggled_for / INTERVAL) + 1
    print(
        f"{toggles} toggles in {toggled_for:.1f} s, {refused} refused; typing events per listener: "
        f"{sorted(set(received))} (bound {per_member}); deliveries to {LISTENERS} listeners: {sum(received)}"
    )
    assert refused > toggles / 2, "typing is rate-limited per user, across sockets and HTTP"
    assert all(1 <= count <= per_member for count in received), received
    for client in (*listeners, *sockets):
        await client.close()
