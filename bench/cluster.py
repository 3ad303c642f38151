"""`python -m bench.cluster`: the scale-out topology (PostgreSQL + Redis, 1, 2 and 4 server processes) next to the
embedded one (SQLite, `memory://`, one process), on the write path and on fan-out.

Every configuration starts from a fresh database, seeded directly (bench.seed's way), and `python cli.py serve`
processes. Legacy connections go to the processes round robin; a small chat's members all connect to the same
process (each process holds a disjoint share of the users, as a deployment that routes users to processes would).

Workloads, each a warm-up and a measured window:
- **write, closed loop**: `senders` connections, each in a 1:1 chat of its own with its partner connected too;
  each sends, waits for its own `new_message` (the acknowledgement), sends again. Throughput and ack latency.
- **write, closed loop, the same load per process** (2 and 4 processes): `senders` x processes senders, so each
  process has as many in flight as the single process had. The plain closed loop spreads one load over more
  processes, so each commits smaller batches (reported: sends per commit), which costs CPU per send by itself;
  this one shows what several processes cost beyond that.
- **write, open loop**: the first `senders` at a fixed total rate: ack latency under that load.
- **fan-out**: one chat of `members` connected members spread over the processes; one sender at `rate` msg/s.

CPU is read from /proc for every server process, every PostgreSQL process and redis-server, before and after each
window: CPU per send (write) and per delivery (fan-out) is the servers' sum divided by what they did. Results:
`cluster.json` and `cluster.md` in --out (default bench/results).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.procstat import cpu_model, cpu_seconds
from bench.seed import group_row
from bench.servers import ROOT, SECRET
from bench.wsclient import WebSocket, connect
from models import Chat, Database, Member, User, utcnow
from services.auth import issue_user_token

PG_ADMIN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
METRICS_TOKEN = "bench-metrics"
STARTUP_TIMEOUT = 60.0
ACK_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
# How long a window's last deliveries may take to arrive after its last send.
DRAIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    senders: int
    open_rate: float
    members: int
    fanout_rate: float
    warmup: float
    window: float
    configs: tuple[tuple[str, int], ...]


FULL = ClusterPlan(
    name="full",
    senders=100,
    open_rate=500,
    members=1000,
    fanout_rate=20,
    warmup=2.0,
    window=8.0,
    configs=(("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 4)),
)
SMOKE = ClusterPlan(
    name="smoke",
    senders=6,
    open_rate=30,
    members=12,
    fanout_rate=10,
    warmup=0.5,
    window=1.0,
    configs=(("sqlite", 1), ("postgresql", 2)),
)


def log(message: str) -> None:
    print(f"bench.cluster: {message}", file=sys.stderr, flush=True)


# -- databases and servers ----------------------------------------------------------------------------------


async def _pg_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@dataclass
class Users:
    ids: list[uuid.UUID]
    tokens: list[str]


async def seed(url: str, plan: ClusterPlan, senders: int) -> tuple[Users, list[uuid.UUID], uuid.UUID]:
    """2 x senders users in 1:1 chats (user 2k sends, 2k+1 receives), `members` more in one big chat."""
    db = Database(url)
    try:
        await db.create_schema()
        now = utcnow()
        count = 2 * senders + plan.members
        ids = [uuid.uuid4() for _ in range(count)]
        chats = [uuid.uuid4() for _ in range(senders)]
        big = uuid.uuid4()
        chat_rows = [group_row(c, None, now) for c in [*chats, big]]
        members = [
            {"chat_id": c, "user_id": ids[2 * k + j], "joined_at": now, "last_read_seq": 0, "joined_seq": 0}
            for k, c in enumerate(chats)
            for j in (0, 1)
        ]
        members += [
            {"chat_id": big, "user_id": u, "joined_at": now, "last_read_seq": 0, "joined_seq": 0}
            for u in ids[2 * senders :]
        ]
        users = [
            {"id": u, "email": f"c{i}@bench.test", "image_url": None, "created_at": now} for i, u in enumerate(ids)
        ]
        async with db.write() as session:
            for table, rows in ((User, users), (Chat, chat_rows), (Member, members)):
                for start in range(0, len(rows), 2000):
                    await session.execute(insert(table), rows[start : start + 2000])
    finally:
        await db.dispose()
    tokens = [issue_user_token(u, key=SECRET, ttl=timedelta(hours=6)) for u in ids]
    return Users(ids, tokens), chats, big


class Cluster:
    """`python cli.py serve` processes on one database and bus."""

    def __init__(self, database_url: str, broadcast_url: str, processes: int, work: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "BROADCAST_URL": broadcast_url,
            "SECRET_KEY": SECRET,
            "LOG_LEVEL": "WARNING",
            # The bench's clients send faster than people and from one address.
            "RATE_LIMIT_PER_SECOND": "100000",
            "RATE_LIMIT_BURST": "100000",
            "MAX_CONNECTIONS_PER_ADDRESS": "0",
            "MAX_CONNECTIONS_PER_USER": "100",
            "METRICS_TOKEN": METRICS_TOKEN,
        }
        from bench.servers import free_port

        for i in range(processes):
            port = free_port()
            with (work / f"server{i}.log").open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "cli.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            self.ports.append(port)

    async def ready(self) -> None:
        import httpx

        deadline = time.monotonic() + STARTUP_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as client:
            for proc, port in zip(self.procs, self.ports, strict=True):
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"a server exited with {proc.returncode}")
                    try:
                        if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the cluster did not become ready")
                    await asyncio.sleep(0.1)

    async def batching(self) -> tuple[float, float]:
        """Committed transactions and the units of work they held, summed over the processes (`/metrics`)."""
        import httpx

        totals = [0.0, 0.0]
        async with httpx.AsyncClient(timeout=5) as client:
            for port in self.ports:
                answer = await client.get(
                    f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
                )
                answer.raise_for_status()
                text = answer.text
                for line in text.splitlines():
                    for i, name in enumerate(("tailtrail_store_transactions_total ", "tailtrail_store_units_total ")):
                        if line.startswith(name):
                            totals[i] += float(line.split()[1])
        return totals[0], totals[1]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _pids(name: str) -> list[int]:
    done = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


class Cpu:
    """CPU seconds of the servers, of PostgreSQL (all its processes) and of redis-server."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def read(self) -> dict[str, float]:
        def total(pids: Sequence[int]) -> float:
            seconds = 0.0
            for pid in pids:
                try:
                    seconds += cpu_seconds(pid)
                except (FileNotFoundError, ProcessLookupError):
                    pass
            return seconds

        return {
            "servers": total([p.pid for p in self.cluster.procs]),
            "postgresql": total(_pids("postgres")),
            "redis": total(_pids("redis-server")),
        }

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: after[k] - before[k] for k in before}


# -- the load -----------------------------------------------------------------------------------------------


class Tally:
    """Deliveries counted across peers; `reached` is set once `expected` are in."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = -1
        self.reached = asyncio.Event()

    def add(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.reached.set()

    def expect(self, total: int) -> None:
        self.expected = total
        if self.count >= total:
            self.reached.set()


class Peer:
    """One legacy connection, counting `new_message` frames and waking a waiter on its own acknowledgement."""

    def __init__(self, ws: WebSocket, tally: Tally) -> None:
        self.ws = ws
        self.tally = tally
        self.waiter: asyncio.Future[float] | None = None
        ws.on_message = self.on_message  # type: ignore[method-assign]

    def on_message(self, data: bytes, start: int, end: int, now: int) -> None:
        if data.find(b'"new_message"', start, end) < 0:
            return
        self.tally.add()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(time.perf_counter())


async def open_peers(
    cluster: Cluster, users: Users, indexes: Sequence[int], where: Callable[[int], int], tally: Tally
) -> list[Peer]:
    peers = []
    for i in indexes:
        port = cluster.ports[where(i) % len(cluster.ports)]
        path = f"/websocket/ws/{users.ids[i]}?token={users.tokens[i]}"
        peers.append(Peer(await connect("127.0.0.1", port, path, within=CONNECT_TIMEOUT), tally))
    await asyncio.sleep(0.2)  # their streams are opened by the server right after the handshake
    return peers


def send_frame(chat: uuid.UUID, n: int) -> bytes:
    return json.dumps({"type": "send_message", "data": {"chat_id": str(chat), "content": f"bench {n}"}}).encode()


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def closed_loop(senders: list[tuple[Peer, uuid.UUID]], seconds: float) -> tuple[int, list[float], int]:
    acked, latencies, timeouts = 0, [], 0
    stop = time.monotonic() + seconds

    async def one(peer: Peer, chat: uuid.UUID) -> None:
        nonlocal acked, timeouts
        n = 0
        while time.monotonic() < stop:
            peer.waiter = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            peer.ws.send(send_frame(chat, n))
            try:
                done = await asyncio.wait_for(peer.waiter, ACK_TIMEOUT)
            except TimeoutError:
                timeouts += 1
                return
            latencies.append(done - started)
            acked += 1
            n += 1

    await asyncio.gather(*(one(peer, chat) for peer, chat in senders))
    return acked, latencies, timeouts


async def open_loop(senders: list[tuple[Peer, uuid.UUID]], rate: float, seconds: float) -> tuple[int, list[float]]:
    """`rate` sends a second in all, round robin; each acknowledgement's latency."""
    latencies: list[float] = []
    pending: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()

    async def one(peer: Peer, chat: uuid.UUID, n: int) -> None:
        previous = peer.waiter
        if previous is not None and not previous.done():  # one in flight per sender
            await asyncio.wait({previous})
        peer.waiter = loop.create_future()
        started = time.perf_counter()
        peer.ws.send(send_frame(chat, n))
        try:
            latencies.append(await asyncio.wait_for(peer.waiter, ACK_TIMEOUT) - started)
        except TimeoutError:
            pass

    start, n = loop.time(), 0
    while n / rate < seconds:
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        peer, chat = senders[n % len(senders)]
        pending.append(asyncio.create_task(one(peer, chat, n)))
        n += 1
    await asyncio.gather(*pending)
    return n, latencies


async def measure(cpu: Cpu, run: Callable[[], Awaitable[Any]]) -> tuple[Any, dict[str, float], float]:
    before, started = cpu.read(), time.monotonic()
    result = await run()
    elapsed = time.monotonic() - started
    return result, Cpu.spent(before, cpu.read()), elapsed


class LockWaits:
    """Samples PostgreSQL's ungranted locks every 20 ms while a window runs: what waited on a lock, if anything."""

    INTERVAL = 0.02

    def __init__(self, database: str | None) -> None:
        self.database = database
        self.samples = 0
        self.waiting_samples = 0
        self.most = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LockWaits:
        if self.database is not None:
            self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _sample(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{self.database}")
        try:
            while True:
                waiting = await connection.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE NOT l.granted AND a.datname = current_database()"
                )
                self.samples += 1
                self.waiting_samples += waiting > 0
                self.most = max(self.most, waiting)
                await asyncio.sleep(self.INTERVAL)
        finally:
            await connection.close()

    def report(self) -> dict[str, Any] | None:
        if self.database is None:
            return None
        share = self.waiting_samples / self.samples if self.samples else None
        return {"samples": self.samples, "share_with_a_wait": share, "most_waiting": self.most}


async def run_config(database: str, processes: int, plan: ClusterPlan, work: Path) -> dict[str, Any]:
    name = None
    if database == "sqlite":
        url, bus = f"sqlite+aiosqlite:///{work / 'cluster.db'}", "memory://"
    else:
        name = f"bench_cluster_{uuid.uuid4().hex[:8]}"
        await _pg_admin(f'CREATE DATABASE "{name}"')
        url, bus = f"{PG_ADMIN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://')}/{name}", REDIS_URL
    total = plan.senders * processes  # the same load per process as one process had (2 and 4 processes)
    users, chats, big = await seed(url, plan, total)
    cluster = Cluster(url, bus, processes, work)
    result: dict[str, Any] = {"database": database, "processes": processes}
    try:
        await cluster.ready()
        cpu = Cpu(cluster)

        async def closed(senders: list[tuple[Peer, uuid.UUID]]) -> dict[str, Any]:
            await closed_loop(senders, plan.warmup)
            committed = await cluster.batching()
            async with LockWaits(name) as waits:
                (acked, latencies, timeouts), spent, elapsed = await measure(
                    cpu, lambda: closed_loop(senders, plan.window)
                )
            transactions, units = (b - a for a, b in zip(committed, await cluster.batching(), strict=True))
            return {
                "senders": len(senders),
                "acked_per_second": acked / elapsed,
                "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99),
                "timeouts": timeouts,
                "cpu_ms_per_send": {k: v * 1000 / max(acked, 1) for k, v in spent.items()},
                "units_per_transaction": units / max(transactions, 1),
                "lock_waits": waits.report(),
            }

        # write: a chat's two members on the same process
        pairs = await open_peers(cluster, users, range(2 * total), lambda i: i // 2, Tally())
        everyone = [(pairs[2 * k], chats[k]) for k in range(total)]
        senders = everyone[: plan.senders]
        result["write_closed"] = await closed(senders)
        result["lock_waits"] = result["write_closed"].pop("lock_waits")
        if processes > 1:
            result["write_closed_per_process"] = await closed(everyone)
        await open_loop(senders, plan.open_rate, plan.warmup)
        (sent, latencies), spent, _ = await measure(cpu, lambda: open_loop(senders, plan.open_rate, plan.window))
        result["write_open"] = {
            "rate": plan.open_rate,
            "sent": sent,
            "acked": len(latencies),
            "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99),
            "cpu_ms_per_send": {k: v * 1000 / max(len(latencies), 1) for k, v in spent.items()},
        }
        for peer in pairs:
            peer.ws.transport.close()
        # fan-out: the big chat's members round robin over the processes
        first = 2 * total
        tally = Tally()
        members = await open_peers(cluster, users, range(first, first + plan.members), lambda i: i, tally)
        sender = members[0]

        async def fanout(seconds: float) -> tuple[int, int]:
            tally.count, tally.expected = 0, -1
            tally.reached.clear()
            loop = asyncio.get_running_loop()
            start, n = loop.time(), 0
            while n / plan.fanout_rate < seconds:
                delay = start + n / plan.fanout_rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sender.ws.send(send_frame(big, n))
                n += 1
            tally.expect(n * len(members))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.reached.wait(), DRAIN_TIMEOUT)
            return n, tally.count

        await fanout(plan.warmup)
        (messages, deliveries), spent, _ = await measure(cpu, lambda: fanout(plan.window))
        result["fanout"] = {
            "members": plan.members,
            "rate": plan.fanout_rate,
            "messages": messages,
            "deliveries": deliveries,
            "expected": messages * plan.members,
            "cpu_us_per_delivery": {k: v * 1e6 / max(deliveries, 1) for k, v in spent.items()},
        }
        for peer in members:
            peer.ws.transport.close()
    finally:
        cluster.stop()
        if name is not None:
            await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return result


# -- the report ------------------------------------------------------------------------------------------------


def _f(value: float | None, shape: str = "{:,.0f}") -> str:
    return "–" if value is None else shape.format(value)


def _waits(waits: dict[str, Any] | None) -> str:
    if waits is None or waits["share_with_a_wait"] is None:
        return "–"
    return f"{waits['share_with_a_wait'] * 100:.1f} % of {waits['samples']} (at most {waits['most_waiting']})"


def _ok(r: dict[str, Any]) -> bool:
    return "error" not in r


def ratios(data: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """The scale-out targets, from this run alone: (what, target, measured, met)."""
    by = {(r["database"], r["processes"]): r for r in data["results"] if _ok(r)}
    checks: list[tuple[str, str, str, bool]] = []
    one, lite = by.get(("postgresql", 1)), by.get(("sqlite", 1))
    if one is None:
        return checks
    send = one["write_closed"]["cpu_ms_per_send"]["servers"]
    delivery = one["fanout"]["cpu_us_per_delivery"]["servers"]
    rate = one["write_closed"]["acked_per_second"]
    checks.append(("PostgreSQL + Redis, 1 process: acked sends/s", "≥ 2,000", f"{rate:,.0f}", rate >= 2000))
    if lite is not None:
        ratio = send / lite["write_closed"]["cpu_ms_per_send"]["servers"]
        checks.append(("1 process: server CPU per send ÷ SQLite's", "≤ 2", f"{ratio:.2f}", ratio <= 2))
    p99 = one["write_open"]["p99_ms"]
    checks.append(
        (f"1 process: ack p99 at {data['plan']['open_rate']:g} sends/s", "≤ 25 ms", f"{p99:.1f} ms", p99 <= 25)
    )
    for processes in (2, 4):
        r = by.get(("postgresql", processes))
        if r is None:
            continue
        per_send = r["write_closed"]["cpu_ms_per_send"]["servers"] / send
        per_delivery = r["fanout"]["cpu_us_per_delivery"]["servers"] / delivery
        checks.append(
            (f"{processes} processes: server CPU per send ÷ 1 process's", "≤ 1.25", f"{per_send:.2f}", per_send <= 1.25)
        )
        if "write_closed_per_process" in r:
            same = r["write_closed_per_process"]["cpu_ms_per_send"]["servers"] / send
            checks.append(
                (
                    f"{processes} processes, the same load per process: server CPU per send ÷ 1 process's",
                    "≤ 1.25",
                    f"{same:.2f}",
                    same <= 1.25,
                )
            )
        checks.append(
            (
                f"{processes} processes: server CPU per delivery ÷ 1 process's",
                "≤ 1.25",
                f"{per_delivery:.2f}",
                per_delivery <= 1.25,
            )
        )
    for r in by.values():
        waits = r.get("lock_waits")
        if waits and waits["share_with_a_wait"] is not None:
            share = waits["share_with_a_wait"]
            checks.append(
                (
                    f"{r['processes']} process(es): PostgreSQL lock waits (share of samples)",
                    "≈ 0",
                    f"{share * 100:.1f} %",
                    share <= 0.01,
                )
            )
    exact = all(r["fanout"]["deliveries"] == r["fanout"]["expected"] for r in by.values())
    checks.append(("fan-out: every message delivered to every member, once", "all", "all" if exact else "no", exact))
    return checks


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = [r for r in data["results"] if _ok(r)]
    names = [f"{'SQLite' if r['database'] == 'sqlite' else 'PG + Redis'}\n{r['processes']} proc." for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.bar(names, [r["write_closed"]["acked_per_second"] for r in rows], color="#4477aa")
    left.set_title(f"acked sends/s ({data['plan']['senders']} closed-loop senders)")
    left.grid(True, axis="y", alpha=0.3)
    xs = range(len(rows))
    width = 0.4
    right.bar(
        [x - width / 2 for x in xs],
        [r["write_closed"]["cpu_ms_per_send"]["servers"] * 1000 for r in rows],
        width,
        color="#ee6677",
        label="per send (µs)",
    )
    right.bar(
        [x + width / 2 for x in xs],
        [r["fanout"]["cpu_us_per_delivery"]["servers"] * 10 for r in rows],
        width,
        color="#228833",
        label="per delivery (µs × 10)",
    )
    right.set_xticks(list(xs), names)
    right.set_title("server CPU, all processes summed")
    right.grid(True, axis="y", alpha=0.3)
    right.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(data: dict[str, Any]) -> str:
    lines = [
        f"# Cluster benchmark ({data['plan']['name']})",
        "",
        f"{data['machine']}, {data['when']}. Command: `{data['command']}`.",
        "",
        "| configuration | acked sends/s (closed loop, "
        f"{data['plan']['senders']} senders) | ack p50 / p99 | sends per commit | server CPU per send | "
        "PostgreSQL / Redis CPU per send | "
        f"ack p50 / p99 at {data['plan']['open_rate']:g}/s | fan-out: server CPU per delivery | deliveries | "
        "PostgreSQL lock waits (share of 20 ms samples) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        if "error" in r:
            lines.append(f"| {r['database']}, {r['processes']} process(es) | error: {r['error']} | | | | | | | | |")
            continue
        w, o, f = r["write_closed"], r["write_open"], r["fanout"]
        lines.append(
            f"| {r['database']}, {r['processes']} process{'es' if r['processes'] > 1 else ''} "
            f"| {_f(w['acked_per_second'])} "
            f"| {_f(w['p50_ms'], '{:.1f}')} / {_f(w['p99_ms'], '{:.1f}')} ms "
            f"| {_f(w.get('units_per_transaction'), '{:.1f}')} "
            f"| {_f(w['cpu_ms_per_send']['servers'], '{:.2f}')} ms "
            f"| {_f(w['cpu_ms_per_send']['postgresql'], '{:.2f}')} / {_f(w['cpu_ms_per_send']['redis'], '{:.2f}')} ms "
            f"| {_f(o['p50_ms'], '{:.1f}')} / {_f(o['p99_ms'], '{:.1f}')} ms "
            f"| {_f(f['cpu_us_per_delivery']['servers'], '{:.0f}')} µs "
            f"| {f['deliveries']:,} / {f['expected']:,} "
            f"| {_waits(r.get('lock_waits'))} |"
        )
    lines += [
        "",
        "Closed loop with the same load per process as the single process had (senders x processes):",
        "",
        "| configuration | senders | acked sends/s | ack p50 / p99 | sends per commit | server CPU per send | "
        "PostgreSQL / Redis CPU per send |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        w = r.get("write_closed_per_process") or (r.get("write_closed") if r.get("processes") == 1 else None)
        if w is None or r["database"] != "postgresql":
            continue
        lines.append(
            f"| {r['database']}, {r['processes']} process{'es' if r['processes'] > 1 else ''} | {w['senders']} "
            f"| {_f(w['acked_per_second'])} "
            f"| {_f(w['p50_ms'], '{:.1f}')} / {_f(w['p99_ms'], '{:.1f}')} ms "
            f"| {_f(w.get('units_per_transaction'), '{:.1f}')} "
            f"| {_f(w['cpu_ms_per_send']['servers'], '{:.2f}')} ms "
            f"| {_f(w['cpu_ms_per_send']['postgresql'], '{:.2f}')} / {_f(w['cpu_ms_per_send']['redis'], '{:.2f}')} ms |"
        )
    checks = ratios(data)
    if checks:
        lines += ["", "| target (this run) | bound | measured | |", "|---|---|---|---|"]
        lines += [f"| {what} | {bound} | {value} | {'pass' if met else 'FAIL'} |" for what, bound, value, met in checks]
    return "\n".join(lines) + "\n"


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves the harness, measures nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch:
        for database, processes in plan.configs:
            log(f"{database}, {processes} process(es)")
            work = Path(scratch) / f"{database}-{processes}"
            work.mkdir()
            try:
                results.append(await run_config(database, processes, plan, work))
            except Exception as exc:  # a configuration that fails is reported, the others still run
                log(f"{database}, {processes}: {exc!r}")
                results.append({"database": database, "processes": processes, "error": repr(exc)})
    data = {
        "plan": asdict(plan),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "when": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": "python -m bench.cluster" + (" --smoke" if args.smoke else ""),
        "results": results,
    }
    (args.out / "cluster.json").write_text(json.dumps(data, indent=2))
    (args.out / "cluster.md").write_text(markdown(data))
    plot(data, args.out / "cluster.png")
    print(markdown(data))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
