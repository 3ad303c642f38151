"""A client that stops reading cannot hurt anyone else (docs/protocols.md, close code 1013): it is closed with 1013, server memory
stays bounded, and the other members' latency does not move.

The loaded run's event count is SLOW_CONSUMER_EVENTS: CI runs 3,000 (enough to overflow the stalled
client's outbox twice over); the full run is `SLOW_CONSUMER_EVENTS=10000 make test` or
`SLOW_CONSUMER_EVENTS=10000 .venv/bin/python -m pytest -s tests/test_slow_consumer.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import time
from pathlib import Path

import pytest
import websockets

from tests.legacy_client import LegacyClient
from tests.support import EVENT_TIMEOUT, Api, Server, metrics_text

EVENTS = int(os.environ.get("SLOW_CONSUMER_EVENTS", "3000"))
BASELINE_EVENTS = 1000
# Sent at a steady rate the server sustains with room to spare (it acknowledges thousands of sends a second), so
# latency is delivery, not queueing.
RATE = 100
# Both runs at RATE, with room for start-up and the close: the full run takes about two minutes.
pytestmark = pytest.mark.timeout(int(120 + 1.5 * (EVENTS + 2 * BASELINE_EVENTS) / RATE))
OUTBOX_MAX_BYTES = 1024 * 1024
# What one stalled connection may cost before it is closed: its outbox (OUTBOX_MAX_BYTES) plus the socket's
# write buffer, with room for the allocator's slack (the figure SECURITY.md documents).
RSS_BOUND = 8 * 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def run(
    sender: LegacyClient, watcher: LegacyClient, chat_id: str, tag: str, pid: int, events: int
) -> tuple[list[float], int]:
    """Send `events` messages at RATE; the watcher's send->receive latencies (s) and the peak RSS seen."""
    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    peak = rss(pid)

    async def receive() -> None:
        while len(latencies) < events:
            frame = await watcher.next("new_message", timeout=30)
            content = frame["data"]["content"]
            if content.startswith(tag):
                latencies.append(time.monotonic() - sent_at[content])

    receiver = asyncio.create_task(receive())
    started = time.monotonic()
    for i in range(events):
        content = f"{tag}{i}"
        sent_at[content] = time.monotonic()
        await sender.send("send_message", {"chat_id": chat_id, "content": content})
        if i % 200 == 0:
            peak = max(peak, rss(pid))
        await asyncio.sleep(max(0.0, started + (i + 1) / RATE - time.monotonic()))
    await asyncio.wait_for(receiver, 60)
    return latencies, max(peak, rss(pid))


async def test_stalled_client_is_closed_with_1013_and_others_do_not_notice(tmp_path: Path) -> None:
    server = Server(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}",
            "RATE_LIMIT_PER_SECOND": "100000",
            "RATE_LIMIT_BURST": "100000",
        },
        tmp_path / "server.log",
        cli=True,  # the production start: capped kernel send buffers (SECURITY.md)
    ).start()
    try:
        assert server.proc is not None
        api = Api(server)
        alice, bob, stalled = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("stalled")
        chat_id = await api.new_chat(alice, bob, stalled, name="busy", is_group=True)
        sender = await LegacyClient(api, alice).connect()
        watcher = await LegacyClient(api, bob).connect()
        await sender.ready()
        await watcher.ready()
        # The sender's own echoes are not read by this test: drop them as they come.
        drain_sender = asyncio.create_task(_discard(sender))

        # Unloaded runs before and after the loaded one: the database grows during the test, so the loaded run
        # is compared with the unloaded latency of its own moment (the mean of the two around it).
        before, _ = await run(sender, watcher, chat_id, "u", server.proc.pid, BASELINE_EVENTS)
        baseline_rss = rss(server.proc.pid)

        # A member that stops reading: its library reads at most one frame ahead and its socket buffers 4 KiB,
        # so TCP backs up into the server almost at once.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        url = f"{server.ws_url}/websocket/ws/{stalled.id}?token={stalled.token}"
        slow = await websockets.connect(url, sock=sock, max_queue=1)
        await slow.send(json.dumps({"type": "get_chat_status", "data": {}}))

        async def told_to_go() -> int | None:
            """Once the server gives up on the stalled client, read what is left: it ends with the close."""
            while "closing slow consumer" not in server.log():  # noqa: ASYNC110 - a log file has nothing to await
                await asyncio.sleep(0.05)
            try:
                async for _ in slow:
                    pass
            except websockets.ConnectionClosed:
                pass
            return slow.close_code

        closing = asyncio.create_task(told_to_go())
        loaded, peak = await run(sender, watcher, chat_id, "l", server.proc.pid, EVENTS)
        # The stalled client was told to go away with 1013 ("try again later": resume from your cursor).
        assert await asyncio.wait_for(closing, EVENT_TIMEOUT) == 1013
        metrics = await metrics_text(server)  # and /metrics counted it
        assert "\ntailtrail_outbox_overflows_total 1\n" in metrics, metrics
        after, _ = await run(sender, watcher, chat_id, "a", server.proc.pid, BASELINE_EVENTS)
        unloaded = before + after

        growth = peak - baseline_rss
        assert growth <= RSS_BOUND, f"RSS grew by {growth / 2**20:.1f} MiB with a stalled client"
        u50 = (statistics.median(before) + statistics.median(after)) / 2
        l50 = statistics.median(loaded)
        u99 = statistics.quantiles(unloaded, n=100)[98]
        l99 = statistics.quantiles(loaded, n=100)[98]
        print(
            f"\nslow consumer: {EVENTS} events at {RATE}/s; watcher latency p50 {u50 * 1000:.2f} -> {l50 * 1000:.2f} ms "
            f"(unloaded before {statistics.median(before) * 1000:.2f}, after {statistics.median(after) * 1000:.2f}), "
            f"p99 {u99 * 1000:.2f} -> {l99 * 1000:.2f} ms; RSS growth {growth / 2**20:.2f} MiB"
        )
        assert l50 <= u50 * 1.2, f"median latency {l50 * 1000:.2f} ms vs {u50 * 1000:.2f} ms unloaded"
        assert len(loaded) == EVENTS  # nothing lost for the healthy member
        drain_sender.cancel()
        await sender.close()
        await watcher.close()
    finally:
        server.stop()


async def _discard(client: LegacyClient) -> None:
    while True:
        await client.frames.get()
