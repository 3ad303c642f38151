"""Sending on a schedule and counting what arrives.

Every bench message's text carries a marker `~T<send time ns>~<phase>~<n>~`: the sender stamps
`time.time_ns()` when it writes the frame, and a receiver finds the marker with `bytes.find` in the raw frame
(no JSON decoding), so latency is send→receive on one machine clock. A frame without a marker is a
protocol keep-alive or something unexpected (an error frame), never a delivery. Phases (a warm-up, a measured
window) have ids unique within the client process, so a late message of one phase never counts in the next.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from time import time_ns

from bench.dialects import Dialect, cursor_in
from bench.wsclient import WebSocket

MARK = b"~T"
UNEXPECTED_SAMPLE_BYTES = 300


def marked(phase: int, n: int) -> str:
    """A chat message's text: the marker, stamped now, and some words (a short chat line)."""
    return f"~T{time_ns()}~{phase}~{n}~ on my way to the park, see you there"


class Tally:
    """The deliveries of the current phase, and the frames that were not deliveries."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._phases = 0
        self.phase = 0
        self.latencies: list[int] = []  # ns, send → receive, of the current phase's deliveries
        self.delivered = 0
        self.expected: int | None = None
        self.complete = asyncio.Event()  # `expected` deliveries arrived
        self.waiting = 0  # connections of the phase that have received none of its messages yet
        self.ready = asyncio.Event()  # ... and when that reaches 0
        self.window = False
        self.window_deliveries = 0  # every bench message received while a window is open, any phase
        self.unexpected = 0
        self.unexpected_sample = ""
        self.presence = 0  # presence events received (this product's; not deliveries, not unexpected)

    def begin(self, peers: Sequence[Peer]) -> int:
        """Start a new phase over `peers`; the id to stamp on its messages."""
        self._phases += 1
        self.phase = self._phases
        self.latencies = []
        self.delivered = 0
        self.expected = None
        self.complete.clear()
        for peer in peers:
            peer.got = 0
        self.waiting = len(peers)
        self.ready.clear()
        if not peers:
            self.ready.set()
        return self.phase

    def expect(self, deliveries: int) -> None:
        self.expected = deliveries
        if self.delivered >= deliveries:
            self.complete.set()

    def not_a_delivery(self, peer: Peer, data: bytes, start: int, end: int) -> None:
        if self.dialect.keep_alive(peer.ws, data, start, end) or self.dialect.reply(data, start, end):
            return
        if self.dialect.presence(data, start, end):
            self.presence += 1
            return
        self.unexpected += 1
        if not self.unexpected_sample:
            self.unexpected_sample = data[start : min(end, start + UNEXPECTED_SAMPLE_BYTES)].decode(errors="replace")
        waiter = peer.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(False)  # a sender waiting for its acknowledgement got an error instead


class Peer:
    """One connection in a workload: its deliveries in the current phase, and as a sender, its sends."""

    __slots__ = ("awaiting", "got", "group", "room", "tally", "waiter", "ws")

    def __init__(self, ws: WebSocket, tally: Tally, *, group: int = 0, room: str = "") -> None:
        self.ws = ws
        self.tally = tally
        self.group = group  # the sender (index) whose messages this connection receives
        self.room = room  # as a sender: the chat it sends to
        self.got = 0
        self.waiter: asyncio.Future[bool] | None = None  # a closed-loop send waiting for its acknowledgement
        self.awaiting = -1
        ws.handover(self.on_message)

    def attach(self, ws: WebSocket) -> None:
        """Carry on over a new connection (a reconnection): its messages count for this peer."""
        self.ws = ws
        ws.handover(self.on_message)

    def on_message(self, data: bytes, start: int, end: int, now: int) -> None:
        """The hot path: one call per frame received, on every connection."""
        tally = self.tally
        i = data.find(MARK, start, end)
        if i < 0:
            tally.not_a_delivery(self, data, start, end)
            return
        j = data.find(b"~", i + 2, end)
        k = data.find(b"~", j + 1, end)
        if tally.window:
            tally.window_deliveries += 1
        if int(data[j + 1 : k]) != tally.phase:
            return
        tally.latencies.append(now - int(data[i + 2 : j]))
        waiter = self.waiter
        if waiter is not None and not waiter.done() and int(data[k + 1 : data.find(b"~", k + 1, end)]) == self.awaiting:
            waiter.set_result(True)
        if self.got == 0:
            tally.waiting -= 1
            if tally.waiting == 0:
                tally.ready.set()
        self.got += 1
        tally.delivered += 1
        if tally.delivered == tally.expected:
            tally.complete.set()

    def send_message(self, n: int) -> None:
        """Send message `n` of the current phase to this sender's chat."""
        phase = self.tally.phase
        self.ws.send(self.tally.dialect.send_frame(self.room, marked(phase, n), f"{phase}-{n}"))

    async def send_acknowledged(self, n: int, within: float) -> bool | None:
        """Send message `n` and wait for it to come back to this connection (the product's acknowledgement;
        on every server, proof that the server has fanned it out). True when it did, False when an error
        frame came instead, None after `within` seconds."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.awaiting = n
        self.send_message(n)
        try:
            return await asyncio.wait_for(self.waiter, within)
        except TimeoutError:
            return None
        finally:
            self.waiter = None


class ResumingPeer(Peer):
    """A peer that keeps the resume cursor of the last event it received, and counts each message of the
    current phase by number (`expect_numbers`), so a resume can be checked for exactly-once delivery."""

    __slots__ = ("counts", "cursor")

    def __init__(self, ws: WebSocket, tally: Tally) -> None:
        self.cursor: str | None = None
        self.counts = bytearray()
        super().__init__(ws, tally)

    def expect_numbers(self, count: int) -> None:
        """Count messages 0..count-1 of the current phase from now on."""
        self.counts = bytearray(count)

    def on_message(self, data: bytes, start: int, end: int, now: int) -> None:
        super().on_message(data, start, end, now)
        cursor = cursor_in(data, start, end)
        if cursor is not None:
            self.cursor = cursor
        found = numbered(data, start, end)
        if found is not None and found[0] == self.tally.phase and found[1] < len(self.counts):
            self.counts[found[1]] = min(255, self.counts[found[1]] + 1)

    def missing(self) -> int:
        return self.counts.count(0)

    def duplicates(self) -> int:
        return sum(c - 1 for c in self.counts if c > 1)


def numbered(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The (phase, n) of a bench message's marker, None if the frame carries none."""
    i = data.find(MARK, start, end)
    if i < 0:
        return None
    j = data.find(b"~", i + 2, end)
    k = data.find(b"~", j + 1, end)
    return int(data[j + 1 : k]), int(data[k + 1 : data.find(b"~", k + 1, end)])


async def pace(
    rate: float,
    seconds: float,
    send: Callable[[int], None],
    *,
    until: Callable[[], bool] | None = None,
    max_seconds: float | None = None,
) -> int:
    """Call `send(i)` on a fixed open-loop schedule, `rate` per second, for `seconds` and then until `until()`
    (at most `max_seconds`). A call that is late is made at once, not dropped: the offered load stays the
    offered load. Returns how many were sent."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    while True:
        elapsed = i / rate
        if elapsed >= seconds and (until is None or until()):
            break
        if max_seconds is not None and elapsed >= max_seconds:
            break
        delay = start + elapsed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        send(i)
        i += 1
    return i


def percentiles_ms(samples_ns: list[int]) -> dict[str, float | None]:
    """p50, p99, p99.9 and max in milliseconds (nearest rank); None without samples."""
    if not samples_ns:
        return {"p50": None, "p99": None, "p999": None, "max": None}
    ordered = sorted(samples_ns)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] / 1e6, 3)

    return {"p50": rank(0.50), "p99": rank(0.99), "p999": rank(0.999), "max": round(ordered[-1] / 1e6, 3)}
