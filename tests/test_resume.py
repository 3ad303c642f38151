"""Resume after reconnect, idempotent sends, history and per-chat order (docs/resume.md), through a real server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from models import EventLog, Writer
from server.config import Settings
from services import journal
from services import messages as message_service
from services.runtime import Runtime
from tests.legacy_client import LegacyClient
from tests.support import EVENT_TIMEOUT, Api, Subscriber, User
from tests.test_store import member_pair


class Http:
    """One keep-alive HTTP client for bursts of mutations."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.client = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=20))

    async def send(self, user: User, chat_id: str, content: str, client_id: str | None = None) -> dict[str, Any]:
        response = await self.client.post(
            f"{self.api.server.url}/graphql",
            json={
                "query": "mutation($c: ID!, $t: String!, $k: String) { sendMessage(chatId: $c, content: $t, clientId: $k) { id seq content clientId } }",
                "variables": {"c": chat_id, "t": content, "k": client_id},
            },
            headers={"Authorization": f"Bearer {user.token}"},
        )
        body = response.json()
        assert not body.get("errors"), body
        message: dict[str, Any] = body["data"]["sendMessage"]
        return message

    async def close(self) -> None:
        await self.client.aclose()


@contextlib.asynccontextmanager
async def http(api: Api) -> AsyncIterator[Http]:
    client = Http(api)
    try:
        yield client
    finally:
        await client.close()


def _gql_key(event: dict[str, Any]) -> tuple[str, Any]:
    if event["__typename"] == "NewMessage":
        return ("message", event["message"]["content"])
    if event["__typename"] == "MessagesRead":
        return ("read", event["lastReadSeq"])
    return (event["__typename"], None)


def _legacy_key(frame: dict[str, Any]) -> tuple[str, Any]:
    if frame["type"] == "new_message":
        return ("message", frame["data"]["content"])
    if frame["type"] == "messages_read":
        return ("read", frame["data"]["last_read_seq"])
    return (frame["type"], None)


# -- resume ---------------------------------------------------------------------------------------


async def test_graphql_client_resumes_with_exactly_the_missed_events_then_live(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    stream = await Subscriber(api, alice).start()
    await api.send(bob, chat_id, "k")
    seen = await stream.next()
    assert seen["__typename"] == "NewMessage" and seen["message"]["content"] == "k"
    cursor = seen["cursor"]
    await stream.close()

    async with http(api) as h:
        for i in range(50):
            await h.send(bob, chat_id, f"missed {i}")
    await api.data("mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }", {"c": chat_id}, token=bob.token)

    resumed = await Subscriber(api, alice, after=cursor).start()
    try:
        replayed = [await resumed.next() for _ in range(51)]
        assert [_gql_key(e) for e in replayed] == [("message", f"missed {i}") for i in range(50)] + [("read", 51)]
        seqs = [e["message"]["seq"] for e in replayed[:50]]
        assert seqs == sorted(seqs) and len(set(seqs)) == 50
        cursors = [e["cursor"] for e in replayed]
        assert len(set(cursors)) == 51 and cursor not in cursors
        await api.send(bob, chat_id, "live after replay")
        live = await resumed.next()
        assert _gql_key(live) == ("message", "live after replay")
    finally:
        await resumed.close()


async def test_legacy_client_resumes_with_exactly_the_missed_events_then_live(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    client = await LegacyClient(api, alice).connect()
    await client.ready()
    await api.send(bob, chat_id, "k")
    seen = await client.next("new_message")
    cursor = seen["cursor"]
    await client.close()

    async with http(api) as h:
        for i in range(50):
            await h.send(bob, chat_id, f"missed {i}")
    await api.data("mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }", {"c": chat_id}, token=bob.token)

    resumed = LegacyClient(api, alice)
    resumed.url += f"&cursor={cursor}"
    await resumed.connect()
    try:
        replayed = [await resumed.next() for _ in range(51)]
        assert [_legacy_key(f) for f in replayed] == [("message", f"missed {i}") for i in range(50)] + [("read", 51)]
        assert all("cursor" in f for f in replayed)
        await resumed.ready()
        await api.send(bob, chat_id, "live after replay")
        live = await resumed.next("new_message")
        assert live["data"]["content"] == "live after replay"
        assert [f for f in await resumed.marker("end") if f["type"] == "new_message"] == []
    finally:
        await resumed.close()


@pytest.mark.parametrize("protocol", ["graphql", "legacy"])
async def test_reconnect_under_fire_delivers_every_message_exactly_once_in_order(api: Api, protocol: str) -> None:
    await reconnect_under_fire([api], protocol)


async def reconnect_under_fire(apis: list[Api], protocol: str, *, total: int = 1000) -> None:
    """Four senders fire `total` messages at two group chats (sender k through `apis[k % len(apis)]`), while
    alice reads a random share of what arrives, drops the connection mid-stream and reconnects with her last
    cursor — to `apis[round % len(apis)]` — six times. She gets every message exactly once, each chat in order."""
    api = apis[0]
    alice = await api.new_user("alice")
    senders = [await api.new_user(f"s{i}") for i in range(4)]
    chats = [await api.new_chat(senders[0], alice, *senders[1:], name=f"fire{i}", is_group=True) for i in range(2)]
    received: dict[str, list[int]] = defaultdict(list)
    contents: list[str] = []

    async def fire(h: Http, k: int) -> None:
        for i in range(k, total, len(senders)):
            await h.send(senders[k], chats[i % 2], f"m{i}")

    async def connect(on: Api, cursor: str | None) -> Any:
        if protocol == "graphql":
            return await Subscriber(on, alice, after=cursor).start()
        client = LegacyClient(on, alice)
        if cursor:
            client.url += f"&cursor={cursor}"
        await client.connect()
        return client

    def unpack(item: dict[str, Any]) -> tuple[str | None, str | None, int | None, str | None]:
        """(cursor, chat_id, seq, content) of a message event; (cursor, None...) for others."""
        if protocol == "graphql":
            if item["__typename"] == "NewMessage":
                return item["cursor"], item["chatId"], item["message"]["seq"], item["message"]["content"]
            return item.get("cursor"), None, None, None
        if item["type"] == "new_message":
            return item["cursor"], item["data"]["chat_id"], item["data"]["seq"], item["data"]["content"]
        return item.get("cursor"), None, None, None

    cursor: str | None = None
    conn = await connect(api, None)  # live before the first send: a fresh stream has nothing to resume from
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(http(a)) for a in apis]
        firing = asyncio.gather(*(fire(clients[k % len(clients)], k) for k in range(len(senders))))
        for round_ in range(6):
            if round_ > 0:
                conn = await connect(apis[round_ % len(apis)], cursor)
            # read a random share of what arrives, then drop the connection mid-stream
            budget = total if round_ == 5 else random.randint(50, 200)
            try:
                while budget > 0 and len(contents) < total:
                    item = await conn.next(timeout=30)
                    c, chat, seq, content = unpack(item)
                    if c is not None:
                        cursor = c
                    if content is not None:
                        assert chat is not None and seq is not None
                        received[chat].append(seq)
                        contents.append(content)
                        budget -= 1
            finally:
                await conn.close()
        await firing
    assert len(contents) == total
    assert sorted(contents) == sorted(f"m{i}" for i in range(total)), "a message was lost or duplicated"
    for chat, seqs in received.items():
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), f"chat {chat} out of order or duplicated"


async def test_event_cursor_read_before_a_snapshot_replays_what_happens_before_the_subscription(api: Api) -> None:
    """`eventCursor`, read before myChats/messages: subscribing after it misses nothing that happened in
    between, and replays nothing from before it."""
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    await api.send(bob, chat_id, "before the cursor")
    cursor = (await api.data("{ eventCursor }", token=alice.token))["eventCursor"]
    await api.send(bob, chat_id, "between cursor and subscription")

    stream = await Subscriber(api, alice, after=cursor).start()
    try:
        first = await stream.next("NewMessage")
        assert first["message"]["content"] == "between cursor and subscription"
        await api.send(bob, chat_id, "live")
        assert (await stream.next("NewMessage"))["message"]["content"] == "live"
    finally:
        await stream.close()
    assert "UNAUTHENTICATED" == await api.error_code("{ eventCursor }", token="not-a-token")


async def test_malformed_or_unknown_cursor_yields_resync_required_then_live(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    for bad in ("garbage", "tt1.zz", "tt1.ffffffffffff"):
        stream = await Subscriber(api, alice, after=bad).start()
        try:
            first = await stream.next()
            assert first == {"__typename": "ResyncRequired", "reason": "unknown cursor"}
            await api.send(bob, chat_id, f"live after {bad}")
            live = await stream.next()
            assert live["__typename"] == "NewMessage" and live["message"]["content"] == f"live after {bad}"
        finally:
            await stream.close()

    client = LegacyClient(api, alice)
    client.url += "&cursor=garbage"
    await client.connect()
    try:
        frame = await client.next()
        assert frame == {"type": "resync_required", "data": {"reason": "unknown cursor"}}
        await client.ready()
        await api.send(bob, chat_id, "legacy live")
        assert (await client.next("new_message"))["data"]["content"] == "legacy live"
    finally:
        await client.close()


@pytest.fixture
def own_database_url(database_url: str, tmp_path: Any) -> Any:
    """A database of this test's own (a purge must not touch the suite's shared log)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'own.db'}"
        return
    from tests.conftest import _pg_admin

    name = f"tailtrail_own_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    yield database_url.rsplit("/", 1)[0] + "/" + name
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_cursor_past_retention_yields_resync_required_then_live(own_database_url: str, start_server: Any) -> None:
    # Retention of ~1 s: the log is purged every quarter second, so an old cursor soon falls off.
    server = start_server({"DATABASE_URL": own_database_url, "RETENTION_DAYS": "0.00001"})
    api = Api(server)
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    stream = await Subscriber(api, alice).start()
    await api.send(bob, chat_id, "old")
    cursor = (await stream.next())["cursor"]
    await stream.close()

    deadline = time.monotonic() + 20
    while True:
        await api.send(bob, chat_id, "keeps the log moving")
        resumed = await Subscriber(api, alice, after=cursor).start()
        first = await resumed.next()
        if first["__typename"] == "ResyncRequired":
            break
        await resumed.close()
        assert time.monotonic() < deadline, "the cursor never fell out of retention"
    try:
        assert first["reason"] == "cursor outside the retained log"
        await api.send(bob, chat_id, "live")
        live = await resumed.next()
        assert live["__typename"] == "NewMessage" and live["message"]["content"] == "live"
    finally:
        await resumed.close()


async def test_retention_purges_exactly_the_entries_older_than_the_cutoff_and_raises_the_floor(
    own_database_url: str,
) -> None:
    """The cut is found by a binary search over each writer's positions (no index on created_at): every entry
    older than the cutoff goes, every other stays, and the writer's floor is the last one purged."""
    rt = Runtime(Settings(database_url=own_database_url, secret_key="s" * 32))
    await rt.start()
    try:
        sender, chat_id = await member_pair(rt)
        for i in range(9):
            await message_service.send_message(rt, actor=sender, chat_id=chat_id, content=f"m{i}")

        async def log() -> list[tuple[int, int, Any]]:
            async with rt.db.read() as session:
                rows = await session.execute(select(EventLog.writer, EventLog.n, EventLog.created_at))
                return sorted(rows.tuples().all())

        async def floors() -> dict[int, int]:
            async with rt.db.read() as session:
                return dict((await session.execute(select(Writer.slot, Writer.floor_n))).tuples().all())

        before = await log()
        assert len(before) >= 10  # the chat's creation and nine messages
        assert [stamp for _, _, stamp in before] == sorted(stamp for _, _, stamp in before)
        for cut in (4, 7, len(before)):  # entries strictly older than the cut-th one's stamp go
            cutoff = before[cut - 1][2] if cut < len(before) else before[-1][2] + timedelta(seconds=1)
            older = [(w, n) for w, n, stamp in before if stamp < cutoff]
            kept_before = await log()
            purged = await journal.purge_older_than(rt.db, cutoff)
            assert purged == len([row for row in kept_before if (row[0], row[1]) in older])
            assert [(w, n) for w, n, _ in await log()] == [(w, n) for w, n, _ in before if (w, n) not in older]
            writer = before[0][0]
            assert (await floors())[writer] == max(n for w, n in older if w == writer)
            assert await journal.purge_older_than(rt.db, cutoff) == 0  # again: nothing more
        # After everything was purged the writer goes on from where it was.
        sent = await message_service.send_message(rt, actor=sender, chat_id=chat_id, content="after")
        assert [(w, n) for w, n, _ in await log()] == [(before[-1][0], before[-1][1] + 1)]
        assert sent.seq == 10
    finally:
        await rt.stop()


# -- idempotent send ------------------------------------------------------------------------------


async def test_same_client_id_sequential_and_concurrent_stores_one_message(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    watcher = await LegacyClient(api, bob).connect()
    await watcher.ready()
    try:
        async with http(api) as h:
            first = await h.send(alice, chat_id, "once", client_id="retry-1")
            again = await h.send(alice, chat_id, "once", client_id="retry-1")
            burst = await asyncio.gather(*(h.send(alice, chat_id, "burst", client_id="retry-2") for _ in range(8)))
        assert again == first
        assert len({m["id"] for m in burst}) == 1
        frames = await watcher.marker("after-sends")
        messages = [f["data"]["client_id"] for f in frames if f["type"] == "new_message"]
        assert messages == ["retry-1", "retry-2"]
        history = await api.data(
            "query($c: ID!) { messages(chatId: $c) { clientId } }", {"c": chat_id}, token=bob.token
        )
        assert [m["clientId"] for m in history["messages"]] == ["retry-1", "retry-2"]
    finally:
        await watcher.close()


# -- history --------------------------------------------------------------------------------------


async def test_messages_pages_backwards_through_1000_messages_without_gaps_or_duplicates(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with http(api) as h:
        sent = [await h.send(alice if i % 2 else bob, chat_id, f"h{i}") for i in range(1000)]
    query = (
        "query($c: ID!, $b: Int, $a: Int) { messages(chatId: $c, before: $b, after: $a, limit: 100) { seq content } }"
    )
    pages: list[list[dict[str, Any]]] = []
    before = None
    while True:
        page = (await api.data(query, {"c": chat_id, "b": before}, token=alice.token))["messages"]
        if not page:
            break
        assert [m["seq"] for m in page] == sorted(m["seq"] for m in page)
        pages.append(page)
        before = page[0]["seq"]
    backwards = [m for page in reversed(pages) for m in page]
    assert [m["content"] for m in backwards] == [f"h{i}" for i in range(1000)]
    assert [m["seq"] for m in backwards] == [m["seq"] for m in sent]

    forwards: list[dict[str, Any]] = []
    after = 0
    while page := (await api.data(query, {"c": chat_id, "a": after}, token=alice.token))["messages"]:
        forwards.extend(page)
        after = page[-1]["seq"]
    assert forwards == backwards


# -- order under concurrent writers ---------------------------------------------------------------


async def test_concurrent_writers_to_one_chat_get_gap_free_seqs_seen_in_order(api: Api) -> None:
    writers = [await api.new_user(f"w{i}") for i in range(8)]
    watcher = await api.new_user("watcher")
    chat_id = await api.new_chat(writers[0], watcher, *writers[1:], name="race", is_group=True)
    legacy = await LegacyClient(api, watcher).connect()
    await legacy.ready()
    graph = await Subscriber(api, watcher).start()
    per_writer = 40
    try:
        async with http(api) as h:
            results = await asyncio.gather(
                *(h.send(w, chat_id, f"{i}-{n}") for n in range(per_writer) for i, w in enumerate(writers))
            )
        total = len(writers) * per_writer
        assert sorted(m["seq"] for m in results) == list(range(1, total + 1))
        legacy_seqs = [(await legacy.next("new_message"))["data"]["seq"] for _ in range(total)]
        graph_seqs = []
        while len(graph_seqs) < total:
            event = await graph.next()
            if event["__typename"] == "NewMessage":
                graph_seqs.append(event["message"]["seq"])
        assert legacy_seqs == list(range(1, total + 1))
        assert graph_seqs == list(range(1, total + 1))
    finally:
        await legacy.close()
        await graph.close()


def test_cursor_is_opaque_string() -> None:
    from realtime.positions import Pos, Vector

    cursor = Vector({0: 42, 3: 7}).cursor()
    assert isinstance(cursor, str)
    decoded = Vector.from_cursor(cursor)
    assert decoded == Vector({0: 42, 3: 7})
    assert decoded.covers(Pos(3, 7)) and not decoded.covers(Pos(3, 8))
    assert Vector.from_cursor("tt1.2a") == Vector({0: 42})  # an earlier build's cursor: writer 0's positions
    assert Vector.from_cursor(json.dumps({"pos": 1})) is None
    assert Vector.from_cursor(str(uuid.uuid4())) is None
    assert Vector.from_cursor("tt2.0-1.0-2") is None  # a writer twice


@pytest.mark.parametrize("protocol", ["legacy", "graphql"])
async def test_resume_demo_example_prints_what_was_missed(api: Api, protocol: str, tmp_path: Any) -> None:
    import sys

    from tests.support import ROOT

    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    state = tmp_path / "cursor"
    command = [
        sys.executable,
        str(ROOT / "examples" / "resume_demo.py"),
        "--url",
        api.server.ws_url,
        "--user-id",
        alice.id,
        "--token",
        alice.token,
        "--protocol",
        protocol,
        "--state",
        str(state),
    ]

    async def run_until(expected: list[str], *, replayed: str | None = None) -> list[str]:
        """Run the example until it has printed the `expected` messages. `replayed`: the last message of the
        previous run, which may come once more first — that run was killed between printing it and saving its
        cursor, and the example replays rather than loses (at least once, by design)."""
        proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        lines: list[str] = []
        try:
            while [line for line in lines if line.startswith("message") and line != replayed] != expected:
                raw = await asyncio.wait_for(proc.stdout.readline(), EVENT_TIMEOUT)
                assert raw, f"example exited; printed {lines}"
                lines.append(raw.decode().strip())
        finally:
            proc.kill()
            await proc.wait()
        return lines

    # First run: live. Wait until it is connected (its first event) before sending.
    first = asyncio.create_task(run_until(["message #1: first"]))
    deadline = time.monotonic() + EVENT_TIMEOUT
    while not state.exists():
        assert time.monotonic() < deadline, "the example never saw an event"
        await api.notify_user(alice.id, {"hello": "example"})
        await asyncio.sleep(0.2)
    await api.send(bob, chat_id, "first")
    await first

    for text in ("missed a", "missed b", "missed c"):
        await api.send(bob, chat_id, text)
    lines = await run_until(
        ["message #2: missed a", "message #3: missed b", "message #4: missed c"], replayed="message #1: first"
    )
    assert "resync required: refetch chats and history" not in lines
