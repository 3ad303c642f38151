"""The bus's own liveness check (realtime.bus), on the in-process broker: a heartbeat sent every HEARTBEAT_SECONDS
must come back; SILENT_BEATS sent and none back ends the session. An event loop held up for longer than that (a
reconnect storm, a full garbage collection) sends no heartbeats meanwhile and is not taken for a dead broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from realtime.bus import SILENCE_SECONDS, EventBus
from realtime.presence import HEARTBEAT_SECONDS
from tests.support import EVENT_TIMEOUT

PROCESS = "bus-test"
# Heartbeats to see go out after the held-up loop: each checks for silence after its pause.
SILENT_BEATS_AFTER = 3


class Beats:
    """The heartbeat messages the bus sends; from `stop_echoing()` on they name another process, so none is taken
    for ours when it comes back (as if the broker had stopped delivering to us)."""

    def __init__(self) -> None:
        self.sent = 0
        self.process = PROCESS
        self.more = asyncio.Event()

    def __call__(self) -> dict[str, Any]:
        self.sent += 1
        self.more.set()
        return {"type": "_heartbeat", "process": self.process}

    async def wait_sent(self, count: int) -> None:
        target = self.sent + count
        while self.sent < target:
            self.more.clear()
            await asyncio.wait_for(self.more.wait(), EVENT_TIMEOUT)


async def started(beats: Beats, lost: asyncio.Event) -> EventBus:
    bus = EventBus("memory://", lambda message, raw: None, heartbeat=beats, process_id=PROCESS, on_lost=lost.set)
    assert await bus.start(wait=EVENT_TIMEOUT)
    return bus


async def test_an_event_loop_held_up_past_the_silence_is_not_a_dead_broker() -> None:
    beats, lost = Beats(), asyncio.Event()
    bus = await started(beats, lost)
    try:
        await beats.wait_sent(2)
        # Halfway through the pause after that beat, its echo long back, the loop does other work for longer than the
        # silence (holding it is the point); then heartbeats go out again, each checking for silence.
        asyncio.get_running_loop().call_later(HEARTBEAT_SECONDS / 2, time.sleep, SILENCE_SECONDS + 1)
        await beats.wait_sent(1 + SILENT_BEATS_AFTER)
        assert not lost.is_set() and bus.connected and bus.reconnects == 0
    finally:
        await bus.stop()


async def test_a_broker_that_stops_echoing_is_noticed_within_the_silence() -> None:
    beats, lost = Beats(), asyncio.Event()
    bus = await started(beats, lost)
    try:
        await beats.wait_sent(2)
        beats.process = "someone-else"
        stopped = time.monotonic()
        await asyncio.wait_for(lost.wait(), EVENT_TIMEOUT)
        assert SILENCE_SECONDS <= time.monotonic() - stopped <= SILENCE_SECONDS + 2
    finally:
        await bus.stop()
