"""The client process: every workload against one server, pinned by the orchestrator to a core of its own.

`python -m bench.client SPEC.json` reads the server's address and pid, the plan and the users' tokens, runs
the workloads in order (idle connections first, on a fresh server, so its memory baseline is clean), writes
the figures to the spec's `result` path and reports progress on stderr.

Readiness is proven, never assumed: connections open in batches, and a batch counts as live once each of its
connections has received one of the workload's messages (sent one at a time until all have). Between
workloads, and before each measured window, the server is left to finish what came before (closing thousands
of connections, say) until its CPU is quiet.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from bench import procstat
from bench.dialects import DIALECTS, Dialect, Legacy
from bench.load import Peer, ResumingPeer, Tally, pace, percentiles_ms
from bench.plan import Plan
from bench.wsclient import WebSocket, connect

HOST = "127.0.0.1"
CONNECT_CONCURRENCY = 100  # upgrades in flight at once
READY_TIMEOUT = 120.0  # for every connection of a workload to have received a message
PROOF_RATE = 5.0  # messages/s to a lobby chat while proving its idle connections live
DRAIN_TIMEOUT = 10.0  # after a window's last send, for its deliveries to arrive
ACK_TIMEOUT = 10.0  # a closed-loop sender's wait for its acknowledgement
QUIET_CPU = 0.10  # share of a core below which the server counts as idle
QUIET_SAMPLE = 0.3
QUIET_TIMEOUT = 120.0
RSS_STABLE = 0.01  # consecutive readings this close (relative) are settled
# A server falls behind when messages queue up for good: the median waits over a second, or the window
# delivered under this share of what was offered. (A tail alone is not enough: one garbage-collection pause
# can hold every delivery for a second at any rate.)
FELL_BEHIND_P50_MS = 1000.0
KEPT_UP_SHARE = 0.9
STORM_TIMEOUT = 300.0  # for a storm's connections to open, and for its clients to catch up
# A storm's clients have stopped catching up once no message arrived for this long (longer than the product's
# database pool timeout, 30 s, so a client waiting on the pool is still waited for).
STORM_STALL = 45.0
# A storm's connection that fails to open (refused, or closed by the server before its handshake completed: the one
# client process, busy with thousands of sockets on one core, can send a request head later than the server waits
# for one) is opened again, as a real client does, after STORM_RETRY_DELAY seconds times the attempt, plus up to as
# much again at random (clients spread their retries); at most STORM_ATTEMPTS attempts in all. Both storms (the
# product's and the floor's) retry alike, and count the retries.
STORM_ATTEMPTS = 3
STORM_RETRY_DELAY = 1.0


T = TypeVar("T")


class WorkloadError(RuntimeError):
    pass


class Retried:
    """Storm connections opened with retries (STORM_ATTEMPTS): how many attempts failed and were tried again."""

    def __init__(self) -> None:
        self.retries = 0

    async def open(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for n in range(1, STORM_ATTEMPTS):
            try:
                return await attempt()
            except TimeoutError:  # no answer within STORM_TIMEOUT: a server that slow is not helped by another try
                raise
            except Exception:
                self.retries += 1
                await asyncio.sleep(STORM_RETRY_DELAY * n * (1 + random.random()))
        return await attempt()  # the last attempt: its error is the connection's


def shown(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


class Client:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.server = spec["server"]
        self.pid: int = spec["pid"]
        self.plan = Plan.from_json(spec["plan"])
        self.port: int = spec["port"]
        self.tokens: list[str] = spec["tokens"]
        self.dialect: Dialect = DIALECTS[self.server](HOST, self.port, self.tokens)
        self.tally = Tally(self.dialect)
        self.started = time.monotonic()

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {self.server}: {message}", file=sys.stderr, flush=True)

    # -- the workloads ------------------------------------------------------------------------------

    async def idle(self) -> dict[str, Any]:
        """(c) Server memory per idle connection: RSS with N live idle connections minus RSS before them.

        Each group of connections is proven live through its own lobby chat, by a sender connection of its
        first user; those senders are idle connections too and count in N."""
        groups = self.plan.idle_groups()
        warm = await self.open_lobby(0, groups[0], "warm-up")
        await self.quiesce()
        rss_before = await self.settled_rss()
        started, cpu_before = time.monotonic(), procstat.cpu_seconds(self.pid)
        idle: list[Peer] = []
        for g in range(1, len(groups)):
            idle += await self.open_lobby(g, groups[g], "idle")
            self.log(f"idle: {len(idle):,} connections open and live")
        connect_seconds = time.monotonic() - started
        connect_cpu = procstat.cpu_seconds(self.pid) - cpu_before
        await self.quiesce()
        rss_after = await self.settled_rss()
        per_connection = (rss_after - rss_before) / len(idle)
        self.log(f"{len(idle):,} idle connections: {per_connection / 1024:.1f} KiB each")
        figures = {
            "connections": len(idle),
            "proof_senders": len(groups) - 1,
            "connect_seconds": round(connect_seconds, 2),
            "connect_cpu_ms_per_connection": round(connect_cpu / len(idle) * 1e3, 3),
            "rss_before": rss_before,
            "rss_after": rss_after,
            "rss_per_connection": round(per_connection),
            "closed_early": self.closed_early([*warm, *idle]),
        }
        await self.close_all([*warm, *idle])
        return figures

    async def open_lobby(self, group: int, users: range, label: str) -> list[Peer]:
        """A group of idle connections and the sender that proves them live: its first user's second
        connection, in the group's lobby chat."""
        lobby = self.plan.lobby(group)
        sender = Peer(await self.dialect.open_sender(users[0], lobby), self.tally, room=lobby)
        await self.prove_live([sender], [sender], PROOF_RATE)
        members = await self.open_live(
            users, lambda i: self.dialect.open_receiver(i, [lobby]), [sender], PROOF_RATE, label
        )
        return [sender, *members]

    async def fanout(self) -> dict[str, Any]:
        """(a) One chat, one sender, a ramp of rates; stops at the first rate from the headline rate on that the
        server cannot keep up with (the headline rate is always measured: the acceptance checks need it)."""
        plan, chat = self.plan, self.plan.big_chat
        sender = Peer(await self.dialect.open_sender(0, chat), self.tally, room=chat)
        await self.prove_live([sender], [sender], plan.ramp[0])
        receivers = await self.open_live(
            range(plan.big_members),
            lambda i: self.dialect.open_receiver(i, [chat]),
            [sender],
            plan.ramp[0],
            "receivers",
        )
        peers = [sender, *receivers]
        steps = []
        for rate in plan.ramp:
            await self.quiesce()
            step = await self.measure(peers, [sender], rate, f"1 chat x {plan.big_members}")
            steps.append(step)
            if step["fell_behind"] and rate >= plan.headline_rate:
                self.log(f"fell behind at {rate:g} msg/s: ramp stopped")
                break
        await self.close_all(peers)
        return {"members": plan.big_members, "steps": steps}

    async def small(self) -> dict[str, Any]:
        """(b) Many small chats, one sender each, a fixed total rate."""
        plan = self.plan
        return await self.chats(
            plan.small_chats, plan.small_members, plan.small_chat, plan.small_member, plan.small_rate
        )

    async def mid(self) -> dict[str, Any]:
        """(b2) Chats of a hundred members, one sender each, a fixed total rate."""
        plan = self.plan
        return await self.chats(plan.mid_chats, plan.mid_members, plan.mid_chat, plan.mid_member, plan.mid_rate)

    async def chats(
        self, count: int, m: int, chat: Callable[[int], str], member: Callable[[int, int], int], rate: float
    ) -> dict[str, Any]:
        """`count` chats of `m` members, each member on a receiving connection and member 0 also on a sending one
        (like a second device: a message reaches m + 1 connections); one measured window at `rate` messages a
        second in all."""
        senders = await self.open_senders(count, chat, member)
        await self.prove_live(senders, senders, rate)

        async def receiver(i: int) -> WebSocket:
            c, j = divmod(i, m)
            return await self.dialect.open_receiver(member(c, j), [chat(c)])

        receivers = await self.open_live(range(count * m), receiver, senders, rate, "receivers")
        for i, peer in enumerate(receivers):
            peer.group = i // m
        peers = [*senders, *receivers]
        await self.quiesce()
        step = await self.measure(peers, senders, rate, f"{count} chats x {m}")
        await self.close_all(peers)
        return {"chats": count, "members": m, **step}

    async def write(self) -> dict[str, Any]:
        """(d) The write path alone: senders whose chats have no other connected member, so a send's only
        delivery is its acknowledgement. A closed loop (send, await the ack, repeat) gives the throughput; an
        open loop at a fixed rate gives the acknowledgement latency under that load."""
        plan = self.plan
        senders = await self.open_senders(plan.write_senders, plan.small_chat, plan.small_member)
        await self.prove_live(senders, senders, plan.write_open_rate)
        await self.quiesce()
        closed = await self.closed_loop(senders)
        await self.quiesce()
        opened = await self.measure(senders, senders, plan.write_open_rate, "write path, open loop")
        await self.close_all(senders)
        return {"senders": plan.write_senders, "closed_loop": closed, "open_loop": opened}

    async def storm(self) -> dict[str, Any]:
        """(e) The reconnect storm: the plan's `storm_clients` legacy and as many GraphQL clients, streaming
        their lobby chats, all drop at once; `storm_missed` messages go to each lobby while they are down; once
        the server has dealt with the drop, all reconnect at once, each resuming from the cursor of the last
        event it received (docs/resume.md). Measured from the first reconnection until every client has received
        every missed message and one live message sent once all are connected again, each exactly once. What
        goes wrong after the drop (a refused reconnection, an error instead of events) is counted, not fatal."""
        legacy = Legacy(HOST, self.port, self.tokens)
        clients, senders = await self.open_storm_clients(legacy)
        peers = [p for _, _, p in clients]
        for peer in peers:
            assert peer.ws.transport is not None
            peer.ws.transport.abort()
        await asyncio.gather(*(p.ws.closed for p in peers))
        missed, tally = self.plan.storm_missed, self.tally
        tally.begin(peers)
        for peer in peers:
            peer.expect_numbers(missed + 1)
        unacknowledged = sum(await asyncio.gather(*(self.send_all(s, range(missed)) for s in senders)))
        await self.quiesce()

        self.log(f"storm: {len(peers):,} clients reconnecting")
        started, cpu_before, errors_before = time.monotonic(), procstat.cpu_seconds(self.pid), tally.unexpected
        retried = Retried()

        async def reconnect(user: int, graphql: bool, peer: ResumingPeer) -> None:
            dialect = self.dialect if graphql else legacy
            cursor = peer.cursor
            assert isinstance(dialect, Legacy) and cursor is not None
            peer.attach(await retried.open(lambda: dialect.resume(user, cursor, STORM_TIMEOUT)))

        results = await asyncio.gather(*(reconnect(*c) for c in clients), return_exceptions=True)
        reconnected = time.monotonic() - started
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            self.log(f"storm: {len(failures)} of {len(peers)} reconnections failed, e.g. {failures[0]!r}")
        unacknowledged += sum(await asyncio.gather(*(self.send_all(s, [missed], STORM_STALL) for s in senders)))
        tally.expect((len(peers) + len(senders)) * (missed + 1))  # senders receive their own messages too
        caught_up = await self.wait_progress(STORM_TIMEOUT, STORM_STALL)
        streaming, cpu = time.monotonic() - started, procstat.cpu_seconds(self.pid) - cpu_before
        figures = {
            "clients": len(peers),
            "graphql_clients": sum(1 for _, graphql, _ in clients if graphql),
            "missed_per_client": missed,
            "caught_up": caught_up,
            "reconnect_seconds": round(reconnected, 3),
            "streaming_seconds": round(streaming, 3),
            "server_cpu_seconds": round(cpu, 3),
            "cpu_ms_per_client": round(cpu / len(peers) * 1e3, 3),
            "missing": sum(p.missing() for p in peers),
            "duplicates": sum(p.duplicates() for p in peers),
            "closed_early": self.closed_early(peers),
            "failed_reconnections": len(failures),
            "retried_reconnections": retried.retries,
            "unacknowledged_sends": unacknowledged,
            "error_frames": tally.unexpected - errors_before,
        }
        self.log(
            f"storm: {len(peers):,} clients reconnected in {reconnected:.2f}s, "
            + (f"all streaming after {streaming:.2f}s" if caught_up else f"not all caught up after {streaming:.2f}s")
            + f", server CPU {cpu:.2f}s, missing {figures['missing']}, duplicates {figures['duplicates']}, "
            f"{figures['error_frames']} error frames, {figures['closed_early']} closed by the server, "
            f"{retried.retries} reconnections retried"
        )
        await self.close_all(peers + senders)
        return figures

    async def open_storm_clients(self, legacy: Legacy) -> tuple[list[tuple[int, bool, ResumingPeer]], list[Peer]]:
        """The storm's clients, (user, GraphQL?, peer) each, streaming and holding the cursor of their lobby's
        last event, and a legacy sender per lobby (sender g's messages reach the clients of group g)."""
        plan, tally = self.plan, self.tally
        clients: list[tuple[int, bool, ResumingPeer]] = []
        senders: list[Peer] = []
        for group, users in plan.storm_groups():
            lobby = plan.lobby(group)
            sender = Peer(await legacy.open_sender(users[0], lobby), tally, group=len(senders), room=lobby)
            await self.prove_live([sender], [sender], PROOF_RATE)

            def opener(i: int, lobby: str = lobby, users: range = users) -> Awaitable[WebSocket]:
                dialect = self.dialect if i % 2 else legacy
                return dialect.open_receiver(users[i // 2], [lobby])

            opened = await self.open_live(
                range(2 * len(users)), opener, [sender], PROOF_RATE, "storm clients", lambda ws: ResumingPeer(ws, tally)
            )
            for i, peer in enumerate(opened):
                assert isinstance(peer, ResumingPeer)
                peer.group = len(senders)
                clients.append((users[i // 2], bool(i % 2), peer))
            senders.append(sender)
        peers = [p for _, _, p in clients]
        self.log(f"storm: {len(peers):,} clients streaming")
        # One more message to each lobby: every client's cursor is then that of its lobby's last event.
        await self.send_each(peers, senders, [0])
        without = sum(1 for p in peers if p.cursor is None)
        if without:
            raise WorkloadError(f"{without} storm clients received no cursor")
        return clients, senders

    async def socket_storm(self) -> dict[str, Any]:
        """(e) The floor of the reconnect storm: twice the plan's `storm_clients` plain sockets opened at once
        (each upgraded), nothing more. A socket that fails to open is counted, not fatal."""
        count = 2 * self.plan.storm_clients
        room = self.plan.lobby(0)
        started, cpu_before = time.monotonic(), procstat.cpu_seconds(self.pid)
        retried = Retried()

        async def one() -> WebSocket:
            return await retried.open(lambda: connect(HOST, self.port, f"/ws?rooms={room}", within=STORM_TIMEOUT))

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        seconds = time.monotonic() - started
        cpu = procstat.cpu_seconds(self.pid) - cpu_before
        opened = [r for r in results if isinstance(r, WebSocket)]
        await asyncio.gather(*(ws.close() for ws in opened))
        failures = [r for r in results if not isinstance(r, WebSocket)]
        if failures:
            self.log(f"socket storm: {len(failures)} of {count} sockets failed to open, e.g. {failures[0]!r}")
        self.log(
            f"socket storm: {count:,} sockets opened at once in {seconds:.2f}s, server CPU {cpu:.2f}s, "
            f"{retried.retries} retried"
        )
        return {
            "sockets": count,
            "failed": len(failures),
            "retried": retried.retries,
            "open_seconds": round(seconds, 3),
            "server_cpu_seconds": round(cpu, 3),
            "cpu_ms_per_socket": round(cpu / count * 1e3, 3),
        }

    async def send_each(self, peers: Sequence[Peer], senders: Sequence[Peer], numbers: Sequence[int]) -> None:
        """A new phase over `peers`: each sender sends `numbers` (acknowledged), then wait until every peer has
        received at least one message of the phase."""
        self.tally.begin(peers)
        if sum(await asyncio.gather(*(self.send_all(s, numbers) for s in senders))):
            raise WorkloadError("a message was not acknowledged")
        if not await self.wait(self.tally.ready, READY_TIMEOUT):
            raise WorkloadError(f"{self.tally.waiting} of {len(peers)} connections never received a message")

    @staticmethod
    async def send_all(sender: Peer, numbers: Sequence[int], within: float = ACK_TIMEOUT) -> int:
        """Send `numbers` in turn, each acknowledged (stored and fanned out) or given up on after `within`
        seconds before the next; how many were not acknowledged."""
        return sum([not await sender.send_acknowledged(n, within) for n in numbers])

    # -- measuring ------------------------------------------------------------------------------------

    async def measure(self, peers: Sequence[Peer], senders: Sequence[Peer], rate: float, label: str) -> dict[str, Any]:
        """Warm up, then one measured window at `rate` msg/s (round-robin over `senders`), then wait for every
        delivery of the window's messages. A peer of group g receives sender g's messages."""
        tally, k = self.tally, len(senders)

        def send(i: int) -> None:
            senders[i % k].send_message(i)

        tally.begin(peers)
        await pace(rate, self.plan.warmup, send)
        tally.begin(peers)
        window = self.open_window()
        sent = await pace(rate, self.plan.window, send)
        figures = self.close_window(window)
        expected = {g: len(range(g, sent, k)) for g in range(k)}
        tally.expect(sum(expected[p.group] for p in peers))
        drained = await self.wait(tally.complete, DRAIN_TIMEOUT)
        missing = sum(max(0, expected[p.group] - p.got) for p in peers)
        duplicates = sum(max(0, p.got - expected[p.group]) for p in peers)
        latency = percentiles_ms(tally.latencies)
        closed = self.closed_early(peers)
        p50, p99 = latency["p50"], latency["p99"]
        offered = tally.expected / figures["window_seconds"]
        behind = []
        if not drained:
            behind.append(f"{missing:,} deliveries missing {DRAIN_TIMEOUT:g} s after the last send")
        if closed:
            behind.append(f"{closed} connections closed by the server")
        if p50 is not None and p50 > FELL_BEHIND_P50_MS:
            behind.append(f"p50 {p50:,.0f} ms > {FELL_BEHIND_P50_MS:,.0f} ms")
        if figures["deliveries_per_second"] < KEPT_UP_SHARE * offered:
            behind.append(f"{figures['deliveries_per_second']:,.0f} of {offered:,.0f} offered deliveries/s")
        step = {
            "rate": rate,
            "messages": sent,
            "expected": tally.expected,
            "delivered": tally.delivered,
            "missing": missing,
            "duplicates": duplicates,
            "latency_ms": latency,
            "fell_behind": bool(behind),
            "fell_behind_because": "; ".join(behind),
            "closed_early": closed,
            **figures,
        }
        self.log(
            f"{label} at {rate:g} msg/s: {step['deliveries_per_second']:,.0f} deliveries/s, "
            f"{shown(step['cpu_us_per_delivery'], '.1f')} us CPU each, p50 {latency['p50']} ms, p99 {p99} ms, "
            f"missing {missing}, client CPU {figures['client_cpu']:.0%}"
        )
        return step

    async def closed_loop(self, senders: Sequence[Peer]) -> dict[str, Any]:
        tally = self.tally
        loop = asyncio.get_running_loop()
        failures = {"refused": 0, "timed_out": 0}

        async def one(peer: Peer, stop: float) -> None:
            n = 0
            while loop.time() < stop:
                acked = await peer.send_acknowledged(n, ACK_TIMEOUT)
                if acked is None:
                    failures["timed_out"] += 1
                    return
                if not acked:
                    failures["refused"] += 1
                n += 1

        tally.begin(senders)
        stop = loop.time() + self.plan.warmup
        await asyncio.gather(*(one(p, stop) for p in senders))
        tally.begin(senders)
        window = self.open_window()
        stop = loop.time() + self.plan.window
        await asyncio.gather(*(one(p, stop) for p in senders))
        figures = self.close_window(window)
        acked = tally.delivered
        latency = percentiles_ms(tally.latencies)
        result = {
            "acked": acked,
            "acked_per_second": round(acked / figures["window_seconds"], 1),
            "ack_latency_ms": latency,
            **failures,
            "closed_early": self.closed_early(senders),
            **figures,
        }
        self.log(
            f"write path, closed loop x {len(senders)}: {result['acked_per_second']:,.0f} acked sends/s, "
            f"ack p50 {latency['p50']} ms, p99 {latency['p99']} ms, {shown(figures['cpu_us_per_delivery'], '.0f')} us CPU each"
        )
        return result

    def open_window(self) -> tuple[float, float, float]:
        self.tally.window = True
        self.tally.window_deliveries = 0
        return time.monotonic(), procstat.cpu_seconds(self.pid), time.process_time()

    def close_window(self, window: tuple[float, float, float]) -> dict[str, Any]:
        """Server CPU, client CPU and deliveries over the window (deliveries of any phase: what the server
        did while its CPU was counted)."""
        wall = time.monotonic() - window[0]
        server_cpu = procstat.cpu_seconds(self.pid) - window[1]
        client_cpu = (time.process_time() - window[2]) / wall
        self.tally.window = False
        deliveries = self.tally.window_deliveries
        return {
            "window_seconds": round(wall, 3),
            "window_deliveries": deliveries,
            "deliveries_per_second": round(deliveries / wall, 1),
            "server_cpu_seconds": round(server_cpu, 3),
            "server_cpu": round(server_cpu / wall, 3),
            "cpu_us_per_delivery": round(server_cpu / deliveries * 1e6, 2) if deliveries else None,
            "client_cpu": round(client_cpu, 3),
        }

    # -- connections ----------------------------------------------------------------------------------

    async def open_live(
        self,
        users: range,
        opener: Callable[[int], Awaitable[WebSocket]],
        senders: Sequence[Peer],
        rate: float,
        label: str,
        peer: Callable[[WebSocket], Peer] | None = None,
    ) -> list[Peer]:
        """A connection for each of `users`, opened in batches of the plan's `batch`; each batch is proven live
        (every connection received a message from `senders`) before the next opens.

        A server may accept a WebSocket before it has set the connection up (the product loads the user's
        chats after the upgrade), so bounding upgrades in flight alone does not bound its backlog: a burst of
        10,000 upgrades would measure a reconnect storm, not idle connections."""
        peers: list[Peer] = []
        size = self.plan.batch
        for start in range(users.start, users.stop, size):
            batch = await self.open_many(range(start, min(users.stop, start + size)), opener, label, peer)
            await self.prove_live(batch, senders, rate)
            peers += batch
            if len(users) > size:
                self.log(f"{label}: {len(peers):,}/{len(users):,} connected and live")
        return peers

    async def open_many(
        self,
        users: range,
        opener: Callable[[int], Awaitable[WebSocket]],
        label: str,
        peer: Callable[[WebSocket], Peer] | None = None,
    ) -> list[Peer]:
        """A connection for each of `users` (a `peer` each, a plain Peer by default), at most
        CONNECT_CONCURRENCY upgrades at a time; any failure fails the workload."""
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        make = peer or (lambda ws: Peer(ws, self.tally))

        async def one(i: int) -> Peer:
            async with gate:
                return make(await opener(i))

        results = await asyncio.gather(*(one(i) for i in users), return_exceptions=True)
        peers = [r for r in results if isinstance(r, Peer)]
        failures = [r for r in results if not isinstance(r, Peer)]
        if failures:
            await self.close_all(peers)
            raise WorkloadError(f"{len(failures)} of {len(users)} {label} connections failed: {failures[0]!r}")
        return peers

    async def open_senders(
        self, count: int, chat: Callable[[int], str], member: Callable[[int, int], int]
    ) -> list[Peer]:
        """Sender c is member 0 of chat c, on a connection of its own: it receives its own messages."""
        senders = []
        for c in range(count):
            ws = await self.dialect.open_sender(member(c, 0), chat(c))
            senders.append(Peer(ws, self.tally, group=c, room=chat(c)))
        return senders

    async def prove_live(self, peers: Sequence[Peer], senders: Sequence[Peer], rate: float) -> None:
        """Send messages (round-robin over `senders`, at most `rate` a second) until every peer has received
        one. Each waits for the previous one to come back to its sender, so proofs never pile up on a server
        still busy setting connections up."""
        tally = self.tally
        tally.begin(peers)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        i = 0
        while not tally.ready.is_set() and loop.time() < deadline:
            turn = loop.time() + 1 / rate
            await senders[i % len(senders)].send_acknowledged(i, ACK_TIMEOUT)
            i += 1
            await self.wait(tally.ready, turn - loop.time())
        if not tally.ready.is_set():
            codes = sorted({p.ws.closed.result() for p in peers if p.ws.closed.done()})
            raise WorkloadError(
                f"{tally.waiting} of {len(peers)} connections never received a message "
                f"({self.closed_early(peers)} closed by the server, codes {codes})"
            )

    async def close_all(self, peers: Sequence[Peer]) -> None:
        await asyncio.gather(*(p.ws.close() for p in peers))

    @staticmethod
    def closed_early(peers: Sequence[Peer]) -> int:
        """Connections the server closed while the workload ran (a slow consumer's 1013, say)."""
        return sum(1 for p in peers if p.ws.closed.done())

    # -- waiting for the server -----------------------------------------------------------------------

    async def quiesce(self) -> None:
        """Wait until the server's CPU is below QUIET_CPU of a core (it finished the last workload's work)."""
        deadline = time.monotonic() + QUIET_TIMEOUT
        before, then = procstat.cpu_seconds(self.pid), time.monotonic()
        while True:
            await asyncio.sleep(QUIET_SAMPLE)
            now_cpu, now = procstat.cpu_seconds(self.pid), time.monotonic()
            if (now_cpu - before) / (now - then) < QUIET_CPU:
                return
            if now > deadline:
                self.log(f"server still busy after {QUIET_TIMEOUT:.0f}s; going on")
                return
            before, then = now_cpu, now

    async def settled_rss(self) -> int:
        """The server's RSS once two readings QUIET_SAMPLE apart agree within RSS_STABLE."""
        deadline = time.monotonic() + QUIET_TIMEOUT
        previous = procstat.rss_bytes(self.pid)
        while True:
            await asyncio.sleep(QUIET_SAMPLE)
            current = procstat.rss_bytes(self.pid)
            if abs(current - previous) <= RSS_STABLE * previous or time.monotonic() > deadline:
                return current
            previous = current

    async def wait_progress(self, within: float, stall: float) -> bool:
        """Wait for the phase's expected deliveries, at most `within` seconds, and give up sooner once none has
        arrived for `stall` seconds. True if they all arrived."""
        deadline = time.monotonic() + within
        while True:
            delivered = self.tally.delivered
            left = deadline - time.monotonic()
            if await self.wait(self.tally.complete, min(stall, left)):
                return True
            if self.tally.delivered == delivered or time.monotonic() >= deadline:
                return False

    @staticmethod
    async def wait(event: asyncio.Event, within: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), within)
        except TimeoutError:
            return False
        return True


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    client = Client(spec)
    result: dict[str, Any] = {"server": client.server}
    for workload in spec["workloads"]:
        await client.quiesce()
        client.log(f"workload {workload}")
        result[workload] = await getattr(client, workload)()
    result["unexpected_frames"] = client.tally.unexpected
    result["presence_frames"] = client.tally.presence
    result["unexpected_sample"] = client.tally.unexpected_sample
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m bench.client SPEC.json (written by python -m bench)", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    result = uvloop.run(run(spec))
    Path(spec["result"]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
