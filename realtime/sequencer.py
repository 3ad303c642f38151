"""Durable events in log order, exactly once per process, whatever order the bus delivers them in.

Two writers commit log positions 5 and 6 in that order, but may publish them the other way round (two
tasks, two processes), and a broker outage loses whatever was published during it. The sequencer keeps
the last position it dispatched: a duplicate is dropped, the next position is dispatched at once, and a
later one waits while the gap is filled from the database — the log is gap-free, so a committed 6 means
a committed 5. Ephemeral events (typing) have no position and pass straight through.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable

from realtime.events import Event, decode

log = logging.getLogger(__name__)

# How long an out-of-order event waits for the missing ones to arrive on the bus before they are read from
# the database: reordering between two publishers resolves within a millisecond or two; a lost event does
# not resolve at all.
GAP_GRACE_SECONDS = 0.05
# Events read from the database per round trip while filling a gap.
FILL_BATCH = 1000

Dispatch = Callable[[Event, str], None]
Fetch = Callable[[int, int | None], Awaitable[list[str]]]


class Sequencer:
    def __init__(self, dispatch: Dispatch, fetch: Fetch) -> None:
        self._dispatch = dispatch
        self._fetch = fetch
        self.last_pos = 0
        self._pending: dict[int, tuple[Event, str]] = {}
        self._filler: asyncio.Task[None] | None = None
        self.duplicates = 0
        self.filled = 0
        self.skipped = 0

    def offer(self, event: Event, raw: str) -> None:
        pos = event.pos
        if pos is None:
            self._dispatch(event, raw)
            return
        if pos <= self.last_pos or pos in self._pending:
            self.duplicates += 1
            return
        if pos == self.last_pos + 1:
            self._emit(event, raw)
            self._drain()
            return
        self._pending[pos] = (event, raw)
        self._start_filler()

    def _start_filler(self) -> None:
        if self._filler is None or self._filler.done():
            # Shared work: not in the context of whichever connection's send revealed the gap (its logs would
            # carry that connection's id).
            self._filler = asyncio.create_task(self._fill_gaps(), name="sequencer-fill", context=contextvars.Context())

    def skip(self, pos: int) -> bool:
        """Take the durable event at `pos`, which no local connection wants now, without decoding or dispatching
        it (most events of a busy cluster, for a process with a share of its users) — if it is the next one or a
        duplicate. False if it arrived early: then the caller offers it as usual (by the time the gap is filled,
        a connection may want it)."""
        if pos <= self.last_pos or pos in self._pending:
            self.duplicates += 1
            return True
        if pos != self.last_pos + 1:
            return False
        self.last_pos = pos
        self.skipped += 1
        self._drain()
        return True

    def _emit(self, event: Event, raw: str) -> None:
        self.last_pos = event.pos  # type: ignore[assignment]
        try:
            self._dispatch(event, raw)
        except Exception:  # one bad event must not stop the stream for everyone
            log.exception("failed to dispatch event at %s", event.pos)

    def _drain(self) -> None:
        while (entry := self._pending.pop(self.last_pos + 1, None)) is not None:
            self._emit(*entry)

    async def _fill_gaps(self) -> None:
        await asyncio.sleep(GAP_GRACE_SECONDS)
        while self._pending:
            first_waiting = min(self._pending)
            if first_waiting <= self.last_pos + 1:
                self._drain()
                continue
            try:
                rows = await self._fetch(self.last_pos, first_waiting - 1)
            except Exception:
                log.warning("cannot fill the event gap after %s yet; retrying", self.last_pos, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for raw in rows:
                self.filled += 1
                self.offer(decode(raw), raw)
            if not rows:
                # Not visible yet (a replica lagging, or a commit not yet visible): look again shortly.
                await asyncio.sleep(GAP_GRACE_SECONDS)
            self._drain()

    async def catch_up(self) -> int:
        """Dispatch everything recorded after the last dispatched position (after a broker outage)."""
        count = 0
        while True:
            rows = await self._fetch(self.last_pos, None)
            if not rows:
                return count
            for raw in rows:
                self.offer(decode(raw), raw)
                count += 1
            if len(rows) < FILL_BATCH:
                return count

    def stop(self) -> None:
        if self._filler is not None:
            self._filler.cancel()
