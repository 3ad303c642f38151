"""Scale-out: several server processes on a private Redis and a private PostgreSQL database behave as one.

Under CI=true these tests run (PostgreSQL and redis-server must be there); on a laptop without them they skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from realtime.bus import EventBus
from tests.conftest import PG_ADMIN_DSN, _pg_admin, unavailable
from tests.legacy_client import LegacyClient, legacy
from tests.scale_support import RedisServer, fresh_pg_name, ready, readyz
from tests.support import EVENT_TIMEOUT, ROOT, SECRET, Api, Server, free_port, metrics_text, subscribed, without_cursor
from tests.test_resume import reconnect_under_fire

# Presence bound for these tests: a SIGKILLed process's users are offline within this (default 15 s).
PRESENCE_TIMEOUT = 3.0
PRESENCE_GRACE = 1.0


@pytest.fixture(scope="module")
def scale_database_url() -> Iterator[str]:
    name = fresh_pg_name()
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        unavailable(f"PostgreSQL ({exc.__class__.__name__})")
    yield PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not Path("/usr/bin/redis-server").exists() and not any(
        (Path(d) / "redis-server").exists() for d in os.environ.get("PATH", "").split(":")
    ):
        unavailable("redis-server")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def cluster(scale_database_url: str, redis_server: RedisServer, tmp_path: Path) -> Iterator[list[Server]]:
    """Two server processes sharing the database and the broker."""
    env = {
        "DATABASE_URL": scale_database_url,
        "BROADCAST_URL": redis_server.url,
        "PRESENCE_TIMEOUT": str(PRESENCE_TIMEOUT),
        "PRESENCE_GRACE": str(PRESENCE_GRACE),
        "TYPING_TTL": "60",  # typing ends here by an explicit stop or a death, never by the clock
        "TYPING_BROADCAST_INTERVAL": "0",  # each change at once: the tests follow typing across processes
    }
    servers = [Server(env, tmp_path / f"node{i}.log").start() for i in range(2)]
    for server in servers:
        ready(server)
    yield servers
    for server in servers:
        server.stop()


async def wait_until(predicate: Any, what: str, timeout: float = EVENT_TIMEOUT) -> float:
    """Poll an async predicate until true; the seconds it took."""
    started = time.monotonic()
    while not await predicate():
        assert time.monotonic() - started < timeout, f"{what} not within {timeout}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def is_online(api: Api, user_id: str) -> bool:
    data = await api.data("query($u: ID!) { isUserOnline(userId: $u) }", {"u": user_id}, token=api.service_token)
    return bool(data["isUserOnline"])


async def test_events_cross_between_processes_and_protocols(cluster: list[Server]) -> None:
    a, b = Api(cluster[0]), Api(cluster[1])
    alice, bob = await a.new_user("alice"), await a.new_user("bob")
    chat_id = await a.new_chat(alice, bob)
    async with legacy(a, alice) as alice_on_a, subscribed(b, bob) as bob_on_b:
        # message: legacy on A -> GraphQL on B, and HTTP on B -> legacy on A
        await alice_on_a.send("send_message", {"chat_id": chat_id, "content": "from A"})
        assert (await bob_on_b.next("NewMessage"))["message"]["content"] == "from A"
        await b.send(bob, chat_id, "from B")
        frames = [await alice_on_a.next("new_message"), await alice_on_a.next("new_message")]
        assert [f["data"]["content"] for f in frames] == ["from A", "from B"]
        # read receipt: B -> A
        await b.data("mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }", {"c": chat_id}, token=bob.token)
        read = await alice_on_a.next("messages_read")
        assert read["data"]["user_id"] == bob.id
        # typing: A -> B, and its stop
        await alice_on_a.send("typing", {"chat_id": chat_id, "is_typing": True})
        assert (await bob_on_b.next("UserTyping"))["userId"] == alice.id
        status = await b.data("{ chatStatus { chats { chatId typingUserIds onlineUserIds } } }", token=bob.token)
        assert status["chatStatus"]["chats"] == [
            {"chatId": chat_id, "typingUserIds": [alice.id], "onlineUserIds": [alice.id]}
        ]
        await alice_on_a.send("typing", {"chat_id": chat_id, "is_typing": False})
        assert (await bob_on_b.next("UserStoppedTyping"))["userId"] == alice.id
        # joins / leaves: A -> B
        await alice_on_a.send("leave_chat", {"chat_id": chat_id})
        assert without_cursor(await bob_on_b.next("UserLeft")) == {
            "__typename": "UserLeft",
            "chatId": chat_id,
            "userId": alice.id,
        }
        await alice_on_a.send("join_chat", {"chat_id": chat_id})
        assert (await bob_on_b.next("UserJoined"))["userId"] == alice.id
        # notifications: requested on A, delivered on B; requested on B, delivered on A
        await a.notify_user(bob.id, {"type": "account_warning", "n": 1})
        assert without_cursor(await bob_on_b.next("GlobalNotification"))["payload"] == {
            "type": "account_warning",
            "n": 1,
        }
        await b.data(
            "mutation($c: ID!, $n: JSON!) { notifyChatParticipants(chatId: $c, notification: $n) }",
            {"c": chat_id, "n": {"type": "system_message"}},
            token=b.service_token,
        )
        note = await alice_on_a.next("global_notification")
        assert note["data"] == {
            "type": "chat_notification",
            "chat_id": chat_id,
            "notification": {"type": "system_message"},
        }


def _counter(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


async def test_a_process_receives_only_what_its_connections_need(cluster: list[Server]) -> None:
    """alice and bob chat on process A; carol and dave on B. Routed channels: B does not receive A's chat's
    events at all, and its own chat works, in order, meanwhile."""
    a, b = Api(cluster[0]), Api(cluster[1])
    alice, bob, carol, dave = [await a.new_user(n) for n in ("alice", "bob", "carol", "dave")]
    on_a, on_b = await a.new_chat(alice, bob), await a.new_chat(carol, dave)
    async with legacy(a, alice) as alice_on_a, legacy(b, carol) as carol_on_b:
        before_a = _counter(await metrics_text(cluster[0]), "tailtrail_events_received_total")
        before_b = _counter(await metrics_text(cluster[1]), "tailtrail_events_received_total")
        for i in range(20):
            await alice_on_a.send("send_message", {"chat_id": on_a, "content": f"a{i}"})
        for i in range(20):
            assert (await alice_on_a.next("new_message"))["data"]["content"] == f"a{i}"
        await b.send(dave, on_b, "for carol")
        assert (await carol_on_b.next("new_message"))["data"]["content"] == "for carol"
        received_a = _counter(await metrics_text(cluster[0]), "tailtrail_events_received_total") - before_a
        received_b = _counter(await metrics_text(cluster[1]), "tailtrail_events_received_total") - before_b
        assert received_a >= 20, received_a  # A got its own chat's events back from the bus
        assert received_b < 5, received_b  # B: carol's message (and no more than a stray typing event)
        assert [f for f in await carol_on_b.marker("done") if f["type"] == "new_message"] == []


async def test_a_new_connection_gets_no_history_and_each_live_message_once(cluster: list[Server]) -> None:
    """A connection without a cursor starts at "now", also when its process had to subscribe for it (no events
    between the subscription and its confirmation: nothing to read from the log)."""
    a, b = Api(cluster[0]), Api(cluster[1])
    alice, bob = await a.new_user("alice"), await a.new_user("bob")
    chat_id = await a.new_chat(alice, bob)
    for i in range(3):
        await a.send(alice, chat_id, f"old {i}")
    bob_on_b = await LegacyClient(b, bob).connect()
    try:
        await bob_on_b.send("get_chat_status")  # served once the stream is open, and answered after its replay
        frames = await bob_on_b.collect_until(lambda f: f["type"] == "chat_status")
        assert [f["type"] for f in frames] == ["chat_status"]
        await a.send(alice, chat_id, "new")
        frames = await bob_on_b.marker("after")
        assert [(f["type"], f["data"]["content"]) for f in frames] == [("new_message", "new")]
    finally:
        await bob_on_b.close()


async def test_a_channel_is_new_to_every_connection_until_the_broker_confirms_it(redis_server: RedisServer) -> None:
    """Two connections asking for one chat before Redis confirms its subscription both read what they missed
    from the log (the second did not cause the subscription, but its events did not come here either)."""
    heartbeat = {"type": "_heartbeat", "process": "test"}
    bus = EventBus(redis_server.url, lambda message, raw: None, heartbeat=lambda: heartbeat, process_id="test")
    assert await bus.start(wait=EVENT_TIMEOUT)
    try:
        chat = uuid.uuid4()
        assert bus.want(chats=[chat]) is True
        assert bus.want(chats=[chat]) is True  # asked for, not confirmed yet
        await asyncio.wait_for(bus.subscribed(), EVENT_TIMEOUT)
        assert bus.want(chats=[chat]) is False
        bus.drop(chats=[chat])
        assert bus.want(chats=[chat]) is False  # wanted again before it was dropped: never left
    finally:
        await bus.stop()


async def test_connections_opening_while_a_chat_is_busy_get_each_message_once(cluster: list[Server]) -> None:
    """Members connect, one after another on both processes, while a sender posts to their chat: each member
    gets every message from the moment it connected on, once, in seq order."""
    a = Api(cluster[0])
    sender = await a.new_user("sender")
    members = [await a.new_user(f"m{i}") for i in range(12)]
    chat_id = await a.new_chat(sender, *members, is_group=True)
    stop = asyncio.Event()

    async def post() -> int:
        n = 0
        while not stop.is_set():
            await a.send(sender, chat_id, f"p{n}")
            n += 1
        await a.send(sender, chat_id, "end")
        return n

    posting = asyncio.create_task(post())
    clients: list[tuple[LegacyClient, list[dict[str, Any]]]] = []
    try:
        for i, member in enumerate(members):
            client = await LegacyClient(Api(cluster[i % 2]), member).connect()
            await client.send("get_chat_status")  # answered once its stream is open (and after its replay)
            clients.append((client, await client.collect_until(lambda f: f["type"] == "chat_status")))
        stop.set()
        assert await posting > 0
        for client, opening in clients:
            frames = opening + await client.collect_until(lambda f: f["data"].get("content") == "end")
            seqs = [f["data"]["seq"] for f in frames if f["type"] == "new_message"]
            assert seqs == sorted(set(seqs)), seqs  # no duplicate, no reordering
            assert seqs == list(range(seqs[0], seqs[-1] + 1)), seqs  # and no gap once it started
    finally:
        for client, _ in clients:
            await client.close()


@pytest.mark.parametrize("protocol", ["graphql", "legacy"])
async def test_reconnect_under_fire_across_two_writing_processes(cluster: list[Server], protocol: str) -> None:
    """Both processes write to the same two chats at once (two writers, one chat order each), and alice resumes
    with her cursor on one process, then the other: every message exactly once, each chat in order."""
    await reconnect_under_fire([Api(cluster[0]), Api(cluster[1])], protocol, total=600)


async def test_presence_agrees_and_a_killed_process_users_go_offline_typing_cleared(cluster: list[Server]) -> None:
    a, b = Api(cluster[0]), Api(cluster[1])
    alice, bob = await a.new_user("alice"), await a.new_user("bob")
    chat_id = await a.new_chat(alice, bob)
    async with legacy(a, alice) as alice_on_a, subscribed(b, bob) as bob_on_b:
        for api in (a, b):
            await wait_until(lambda api=api: is_online(api, alice.id), "alice online everywhere")
            await wait_until(lambda api=api: is_online(api, bob.id), "bob online everywhere")
        online_a = (await a.data("{ onlineUsers }", token=a.service_token))["onlineUsers"]
        online_b = (await b.data("{ onlineUsers }", token=b.service_token))["onlineUsers"]
        assert {alice.id, bob.id} <= set(online_a) and {alice.id, bob.id} <= set(online_b)

        await alice_on_a.send("typing", {"chat_id": chat_id, "is_typing": True})
        assert (await bob_on_b.next("UserTyping"))["userId"] == alice.id

        assert cluster[0].proc is not None
        cluster[0].proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        stopped = await bob_on_b.next("UserStoppedTyping", timeout=PRESENCE_TIMEOUT + 10)
        assert stopped["userId"] == alice.id
        await wait_until(lambda: _not(is_online(b, alice.id)), "alice offline on B", timeout=PRESENCE_TIMEOUT + 10)
        assert time.monotonic() - killed <= PRESENCE_TIMEOUT + 3, "offline later than the configured bound allows"
        status = await b.data("{ chatStatus { chats { typingUserIds onlineUserIds } } }", token=bob.token)
        assert status["chatStatus"]["chats"] == [{"typingUserIds": [], "onlineUserIds": []}]


async def test_presence_events_cross_processes_and_a_killed_process_user_goes_offline(cluster: list[Server]) -> None:
    """Alice's first connection, on A, is news to Bob, on B; A dies: Bob hears she went offline within the bound
    (PRESENCE_TIMEOUT for B to forget A, then PRESENCE_GRACE)."""
    a, b = Api(cluster[0]), Api(cluster[1])
    alice, bob = await a.new_user("alice"), await a.new_user("bob")
    chat_id = await a.new_chat(alice, bob)
    async with subscribed(b, bob, presence=True) as bob_on_b, legacy(b, bob) as bob_legacy_on_b:
        async with legacy(a, alice):
            online = await bob_on_b.next("UserOnline")
            assert (online["chatId"], online["userId"]) == (chat_id, alice.id)
            assert (await bob_legacy_on_b.next("user_online"))["data"]["user_id"] == alice.id
            assert cluster[0].proc is not None
            cluster[0].proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            bound = PRESENCE_TIMEOUT + PRESENCE_GRACE
            offline = await bob_on_b.next("UserOffline", timeout=bound + 10)
            assert time.monotonic() - killed <= bound + 3, "offline later than the configured bound allows"
            assert (offline["chatId"], offline["userId"]) == (chat_id, alice.id)
            assert (await bob_legacy_on_b.next("user_offline"))["data"]["user_id"] == alice.id


async def _not(awaitable: Any) -> bool:
    return not await awaitable


WEBSOCKET_MANAGER_SCRIPT = """
import asyncio, json, sys
from server.config import Settings
from websocket_manager import websocket_manager

async def main():
    settings = Settings(database_url=sys.argv[1], broadcast_url=sys.argv[2], secret_key=sys.argv[3])
    async with websocket_manager.connect(settings) as manager:
        await manager.send_global_notification(sys.argv[4], {"type": "account_warning", "from": "script"})
        await manager.notify_chat_participants(sys.argv[5], {"type": "system_message", "from": "script"})
        print(json.dumps({"online": await manager.get_online_users(),
                          "chats": await manager.get_user_chats_list(sys.argv[4])}))

asyncio.run(main())
"""


async def test_websocket_manager_in_a_separate_process_reaches_both_servers(
    cluster: list[Server], scale_database_url: str, redis_server: RedisServer
) -> None:
    a, b = Api(cluster[0]), Api(cluster[1])
    alice, bob = await a.new_user("alice"), await a.new_user("bob")
    chat_id = await a.new_chat(alice, bob)
    async with legacy(a, alice) as alice_on_a, subscribed(b, bob) as bob_on_b:
        result = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-c",
                WEBSOCKET_MANAGER_SCRIPT,
                scale_database_url,
                redis_server.url,
                SECRET,
                bob.id,
                chat_id,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        answer = __import__("json").loads(result.stdout.strip().splitlines()[-1])
        assert {alice.id, bob.id} <= set(answer["online"])
        assert answer["chats"] == [chat_id]
        assert without_cursor(await bob_on_b.next("GlobalNotification"))["payload"] == {
            "type": "account_warning",
            "from": "script",
        }
        note = await alice_on_a.next("global_notification")
        assert note["data"]["notification"] == {"type": "system_message", "from": "script"}
        assert without_cursor(await bob_on_b.next("GlobalNotification"))["payload"]["notification"]["from"] == "script"


async def test_redis_outage_under_traffic_loses_nothing_and_recovers(
    cluster: list[Server], redis_server: RedisServer
) -> None:
    a, b = Api(cluster[0]), Api(cluster[1])
    alice, bob, carol = await a.new_user("alice"), await a.new_user("bob"), await a.new_user("carol")
    chat_id = await a.new_chat(alice, bob, carol, name="outage", is_group=True)
    receivers = {"alice@A": await LegacyClient(a, alice).connect(), "carol@B": await LegacyClient(b, carol).connect()}
    for client in receivers.values():
        await client.ready()
    seen: dict[str, Counter[str]] = {name: Counter() for name in receivers}
    committed: list[str] = []
    stop = asyncio.Event()
    slowest = 0.0

    async def traffic() -> None:
        nonlocal slowest
        async with httpx.AsyncClient(timeout=30) as http:
            i = 0
            while not stop.is_set():
                started = time.monotonic()
                response = await http.post(
                    f"{cluster[i % 2].url}/graphql",
                    json={
                        "query": "mutation($c: ID!, $t: String!) { sendMessage(chatId: $c, content: $t) { seq } }",
                        "variables": {"c": chat_id, "t": f"t{i}"},
                    },
                    headers={"Authorization": f"Bearer {bob.token}"},
                )
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 200 and not response.json().get("errors"), response.text
                committed.append(f"t{i}")
                i += 1
                await asyncio.sleep(0.05)

    async def drain(name: str, until: set[str], timeout: float) -> None:
        """Read `name`'s frames until every message in `until` has arrived at least once."""
        client = receivers[name]
        deadline = time.monotonic() + timeout
        while not until <= set(seen[name]):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{name} still misses {sorted(until - set(seen[name]))[:5]}"
            frame = await client.next(timeout=remaining)
            if frame["type"] == "new_message":
                seen[name][frame["data"]["content"]] += 1

    sender = asyncio.create_task(traffic())
    try:
        await wait_until(lambda: _true(len(committed) >= 10), "traffic flowing")
        redis_server.stop()
        for server in cluster:
            await wait_until(lambda server=server: _true(readyz(server) == 503), "readiness reports the outage")
        during = len(committed)
        await asyncio.sleep(5)  # the outage itself: 5 s of steady traffic with the broker gone
        assert len(committed) > during + 20, "sends stalled during the outage"
        redis_server.start()
        restarted = time.monotonic()
        for server in cluster:
            await wait_until(lambda server=server: _true(readyz(server) == 200), "ready again")
        # Delivering again: what B commits now reaches alice on A through the broker.
        await b.send(bob, chat_id, "after the outage")
        await drain("alice@A", {"after the outage"}, timeout=EVENT_TIMEOUT)
        recovered = time.monotonic() - restarted
        assert recovered <= 5.0, f"delivering again only {recovered:.1f}s after Redis returned"
        for server in cluster:  # /metrics counted the reconnection
            metrics = await metrics_text(server)
            assert "\ntailtrail_broker_reconnects_total 0" not in metrics, metrics
    finally:
        stop.set()
        await sender
    assert slowest < 5.0, f"a send hung for {slowest:.1f}s during the outage"
    expected = set(committed) | {"after the outage"}
    for name, client in receivers.items():
        await drain(name, expected, timeout=30)
        for frame in await client.marker(f"end-{name}"):  # anything that came twice has arrived by now
            if frame["type"] == "new_message":
                seen[name][frame["data"]["content"]] += 1
        duplicated = sorted(m for m, n in seen[name].items() if n > 1)
        assert not duplicated, f"{name} got duplicates: {duplicated[:5]}"
        assert set(seen[name]) == expected
        await client.close()


async def _true(value: bool) -> bool:
    return value


async def test_server_started_while_redis_is_down_becomes_ready_by_itself(
    scale_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.stop()
    server = Server(
        {"DATABASE_URL": scale_database_url, "BROADCAST_URL": redis_server.url}, tmp_path / "late.log"
    ).start()
    try:
        assert readyz(server) == 503
        redis_server.start()
        ready(server)
        api = Api(server)
        alice, bob = await api.new_user("alice"), await api.new_user("bob")
        chat_id = await api.new_chat(alice, bob)
        async with legacy(api, alice) as client:
            await api.send(bob, chat_id, "hello after the broker came back")
            assert (await client.next("new_message"))["data"]["content"] == "hello after the broker came back"
    finally:
        server.stop()


async def test_first_subscriber_of_a_fresh_process_receives_events(cluster: list[Server], tmp_path: Path) -> None:
    # redis-py is pinned below 8, where broadcaster's RedisBackend stalls the first subscriber (docs/library-notes.md).
    fresh = Server(cluster[0].env, tmp_path / "fresh.log").start()
    try:
        ready(fresh)
        a, f = Api(cluster[0]), Api(fresh)
        alice, bob = await a.new_user("alice"), await a.new_user("bob")
        chat_id = await a.new_chat(alice, bob)
        first = await LegacyClient(f, alice).connect()
        try:
            await first.ready()
            await a.send(bob, chat_id, "to the first subscriber")
            assert (await first.next("new_message"))["data"]["content"] == "to the first subscriber"
        finally:
            await first.close()
    finally:
        fresh.stop()


def test_redis_client_is_pinned_below_8() -> None:
    import redis

    assert int(redis.__version__.split(".")[0]) < 8


@pytest.mark.parametrize("broker", ["redis", "memory"])
async def test_uvicorn_workers_2(
    broker: str, scale_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SECRET_KEY": SECRET,
        "DATABASE_URL": scale_database_url,
        "BROADCAST_URL": redis_server.url if broker == "redis" else "memory://",
    }
    log_path = tmp_path / "workers.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the test then talks to it asynchronously
            [sys.executable, "-m", "uvicorn", "app:app", "--workers", "2", "--port", str(port), "--host", "127.0.0.1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if broker == "memory":
            # Refused: the workers fail start-up and uvicorn stops the parent (its exit status is uvicorn's own).
            await asyncio.to_thread(proc.wait, 60)
            output = log_path.read_text()
            assert "BROADCAST_URL=memory://" in output and "set BROADCAST_URL=redis://" in output
            assert "Application startup complete" not in output
            return
        server = Server({}, log_path)
        server.port = port
        ready(server, timeout=30)
        api = Api(server)
        alice, bob = await api.new_user("alice"), await api.new_user("bob")
        chat_id = await api.new_chat(alice, bob)
        # Several connections of each protocol: the kernel spreads them over both workers.
        clients = [await LegacyClient(api, alice).connect() for _ in range(4)]
        for client in clients:
            await client.ready()
        async with subscribed(api, alice) as sub1, subscribed(api, alice) as sub2:
            for i in range(3):
                await api.send(bob, chat_id, f"w{i}")
            for client in clients:
                assert [(await client.next("new_message"))["data"]["content"] for _ in range(3)] == ["w0", "w1", "w2"]
            for sub in (sub1, sub2):
                assert [(await sub.next("NewMessage"))["message"]["content"] for _ in range(3)] == ["w0", "w1", "w2"]
        for client in clients:
            await client.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def test_four_processes_each_receive_only_their_share(
    scale_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Four processes, each holding a disjoint quarter of the users, chatting in small chats: each process
    receives from the bus at most 30 % of the events the cluster published (routed channels), and every message
    reaches its chat's members."""
    env = {"DATABASE_URL": scale_database_url, "BROADCAST_URL": redis_server.url, "PRESENCE_TIMEOUT": "5"}
    servers = [Server(env, tmp_path / f"quarter{i}.log").start() for i in range(4)]
    try:
        for server in servers:
            ready(server)
        apis = [Api(server) for server in servers]
        pairs = []  # per process: two chats of two users, both users connected to that process
        for api in apis:
            for _ in range(2):
                a, b = await api.new_user("a"), await api.new_user("b")
                pairs.append((api, a, b, await api.new_chat(a, b)))
        before = [await metrics_text(server) for server in servers]
        async with contextlib.AsyncExitStack() as stack:
            readers = [await stack.enter_async_context(legacy(api, b)) for api, _, b, _ in pairs]
            for round_ in range(10):
                for api, a, _, chat in pairs:
                    await api.send(a, chat, f"r{round_}")
            for reader in readers:
                got = [
                    f["data"]["content"] for f in await reader.collect_until(lambda f: f["data"].get("content") == "r9")
                ]
                assert [c for c in got if c is not None and c.startswith("r")] == [f"r{i}" for i in range(10)]
        after = [await metrics_text(server) for server in servers]
        published = sum(
            _counter(a, "tailtrail_events_published_total") - _counter(b, "tailtrail_events_published_total")
            for a, b in zip(after, before, strict=True)
        )
        received = [
            _counter(a, "tailtrail_events_received_total") - _counter(b, "tailtrail_events_received_total")
            for a, b in zip(after, before, strict=True)
        ]
        assert published >= 80, published
        shares = [r / published for r in received]
        assert all(share <= 0.30 for share in shares), (published, received)
    finally:
        for server in servers:
            server.stop()
