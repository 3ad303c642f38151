"""Durable events delivered exactly once per process, each writer's in its order and each chat's in seq order.

Positions are per writer (realtime.positions): a writer's events reach a process in its order (one publisher
connection per writer, one subscriber connection per process: the broker keeps their order), so an event at or
below what already arrived from its writer is a duplicate. Two writers may write to one chat: the later seq can
arrive first. Its writer's stream then waits (a chat's events are dispatched in seq order, and a writer's in n
order) until the earlier seq arrives, or — after a grace — is read from the log.

Each dispatched event carries `vector`: per writer, the n up to which everything this process received has been
dispatched. That is the resume cursor of a stream once it has the event: exact, because nothing is ever
dispatched past an event of the same writer still waiting. Ephemeral events (typing) have no position and pass
straight through.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from realtime.events import Event
from realtime.positions import Vector

log = logging.getLogger(__name__)

# How long a chat's out-of-order event waits for the earlier seqs to arrive on the bus before they are read from
# the database: reordering between two writers resolves within a millisecond or two; a lost event does not.
GAP_GRACE_SECONDS = 0.05
# Chats whose order has been idle this long (and that no connection here streams) are forgotten; the next event
# of such a chat starts its order afresh.
IDLE_CHAT_SECONDS = 600.0

Dispatch = Callable[[Event, str, Vector], None]
FetchChat = Callable[[uuid.UUID, int, int], Awaitable[list[tuple[Event, str]]]]


@dataclass(order=True, slots=True)
class _Waiting:
    n: int
    event: Event = field(compare=False)
    raw: str = field(compare=False)


class Sequencer:
    def __init__(self, dispatch: Dispatch, fetch_chat: FetchChat) -> None:
        self._dispatch = dispatch
        self._fetch_chat = fetch_chat
        # Per writer: everything of it up to here has arrived (or was here when this process started).
        self.frontier: dict[int, int] = {}
        # Per writer: events arrived and not dispatched yet, by n.
        self._waiting: dict[int, list[_Waiting]] = {}
        # Per chat: the next seq to dispatch, and when the chat last moved.
        self._next_seq: dict[uuid.UUID, int] = {}
        self._moved: dict[uuid.UUID, float] = {}
        self._filler: asyncio.Task[None] | None = None
        self._gaps: set[uuid.UUID] = set()
        self._held: list[tuple[Event, str]] | None = None
        self._progress = asyncio.Event()  # set at each dispatch or skip: `reached` looks again
        self.duplicates = 0
        self.filled = 0
        self.skipped = 0

    def start(self, baseline: Vector) -> None:
        """Everything up to `baseline` is history for this process: live events start after it."""
        for writer, n in baseline.items():
            self.frontier[writer] = max(self.frontier.get(writer, 0), n)

    @property
    def vector(self) -> Vector:
        """Per writer, the n up to which everything that arrived has been dispatched."""
        return Vector({w: (queue[0].n - 1 if (queue := self._waiting.get(w)) else n) for w, n in self.frontier.items()})

    async def reached(self, target: Vector) -> None:
        """Wait until this process has dispatched everything up to `target` (bound it with asyncio.timeout)."""
        while target.beyond(self.vector):
            self._progress.clear()
            await self._progress.wait()

    # -- arrivals ----------------------------------------------------------------------------------------------

    def pause(self) -> None:
        """Hold what arrives from now on (a catch-up from the log is about to run): `resume` offers it."""
        if self._held is None:
            self._held = []

    def resume(self) -> None:
        held, self._held = self._held, None
        for event, raw in held or ():
            self.offer(event, raw)

    def offer(self, event: Event, raw: str) -> None:
        pos = event.pos
        if pos is None:
            self._dispatch(event, raw, self.vector)
            return
        if self._held is not None:
            self._held.append((event, raw))
            return
        if pos.n <= self.frontier.get(pos.writer, 0):
            self.duplicates += 1
            return
        self.frontier[pos.writer] = pos.n
        self._waiting.setdefault(pos.writer, []).append(_Waiting(pos.n, event, raw))
        self._release(pos.writer)

    def announce(self, writer: int, n: int) -> None:
        """`writer` has published everything up to `n`: what this process was to receive of it has arrived (the
        rest went to channels it does not subscribe to)."""
        if self._held is not None:
            return  # a catch-up from the log is running: it sets the frontier
        if n > self.frontier.get(writer, 0):
            self.frontier[writer] = n
            self._progress.set()

    def arrived(self, writer: int, n: int) -> bool:
        """True (and counted as a duplicate) if the durable event (writer, n) arrived before: it can be dropped
        without being decoded. False while a catch-up holds what arrives: then offer it as usual."""
        if self._held is None and n <= self.frontier.get(writer, 0):
            self.duplicates += 1
            return True
        return False

    def skip(self, writer: int, n: int, chat_id: uuid.UUID | None, seq: int | None) -> bool:
        """Take the durable event (writer, n), which no local connection wants now, without decoding or
        dispatching it (most events of a busy cluster, for a process with a share of its users) — if nothing of
        its writer waits before it and its chat's order allows. False otherwise: then offer it as usual."""
        if self._held is not None:
            return False
        if self.arrived(writer, n):
            return True
        if self._waiting.get(writer):
            return False
        if chat_id is not None and seq is not None:
            expected = self._next_seq.get(chat_id)
            if expected is not None and seq != expected:
                return False
            self._next_seq[chat_id] = seq + 1
            self._moved[chat_id] = time.monotonic()
        self.frontier[writer] = n
        self.skipped += 1
        self._progress.set()
        return True

    def inject(self, items: list[tuple[Event, str]]) -> None:
        """Events read from the log (a gap filled, a broker outage caught up): each taken unless it already
        arrived; those past their writer's frontier move it, as if they had arrived."""
        touched = set()
        for event, raw in items:
            pos = event.pos
            if pos is None:
                continue
            queue = self._waiting.setdefault(pos.writer, [])
            if pos.n <= self.frontier.get(pos.writer, 0):
                if not self._is_missing(event):
                    self.duplicates += 1
                    continue
                log.warning("event %s reached this process only from the log", pos)
                bisect.insort(queue, _Waiting(pos.n, event, raw))  # late: its writer had moved past it
            else:
                self.frontier[pos.writer] = pos.n
                queue.append(_Waiting(pos.n, event, raw))
            self.filled += 1
            touched.add(pos.writer)
        for writer in touched:
            self._release(writer)

    def _is_missing(self, event: Event) -> bool:
        """An event at or below its writer's frontier that this process never dispatched: only a chat event
        whose seq its chat still waits for can be one."""
        chat = _chat(event)
        if chat is None or event.seq is None:
            return False
        expected = self._next_seq.get(chat)
        return expected is not None and event.seq >= expected and not self._queued(event)

    def _queued(self, event: Event) -> bool:
        pos = event.pos
        assert pos is not None
        return any(w.n == pos.n for w in self._waiting.get(pos.writer, ()))

    # -- dispatch ----------------------------------------------------------------------------------------------

    def _release(self, writer: int) -> None:
        """Dispatch what can go, starting with `writer`'s; a dispatch may unblock other writers' heads."""
        pending = [writer]
        while pending:
            w = pending.pop()
            queue = self._waiting.get(w)
            while queue:
                head = queue[0]
                chat = _chat(head.event)
                if chat is not None and head.event.seq is not None:
                    expected = self._next_seq.get(chat)
                    if expected is not None and head.event.seq < expected:
                        queue.pop(0)  # that seq went out already (read from the log, then arrived)
                        self.duplicates += 1
                        continue
                    if expected is not None and head.event.seq > expected:
                        self._wait_for(chat)
                        break
                    self._next_seq[chat] = head.event.seq + 1
                    self._moved[chat] = time.monotonic()
                queue.pop(0)
                self._progress.set()
                try:
                    self._dispatch(head.event, head.raw, self.vector)
                except Exception:  # one bad event must not stop the stream for everyone
                    log.exception("failed to dispatch event at %s", head.event.pos)
                if chat is not None:
                    pending.extend(other for other, q in self._waiting.items() if q and other != w)
            if queue is not None and not queue:
                del self._waiting[w]

    def _wait_for(self, chat: uuid.UUID) -> None:
        self._gaps.add(chat)
        if self._filler is None or self._filler.done():
            # Shared work: not in the context of whichever connection's send revealed the gap.
            self._filler = asyncio.create_task(self._fill(), name="sequencer-fill", context=contextvars.Context())

    async def _fill(self) -> None:
        await asyncio.sleep(GAP_GRACE_SECONDS)
        while self._gaps:
            chat = self._gaps.pop()
            expected = self._next_seq.get(chat)
            waiting = [w.event.seq for q in self._waiting.values() for w in q if _chat(w.event) == chat]
            if expected is None or not waiting:
                continue
            upto = min(s for s in waiting if s is not None) - 1
            if upto < expected:
                continue
            try:
                items = await self._fetch_chat(chat, expected - 1, upto)
            except Exception:
                log.warning("cannot read chat %s's missing events yet; retrying", chat, exc_info=True)
                self._gaps.add(chat)
                await asyncio.sleep(1.0)
                continue
            if not items:  # not visible yet: look again shortly
                self._gaps.add(chat)
                await asyncio.sleep(GAP_GRACE_SECONDS)
                continue
            self.inject(items)

    def forget_idle_chats(self, streamed: Callable[[uuid.UUID], bool]) -> None:
        """Drop the order of chats idle for a while and not streamed here (memory stays bounded)."""
        cutoff = time.monotonic() - IDLE_CHAT_SECONDS
        for chat in [c for c, moved in self._moved.items() if moved < cutoff and not streamed(c)]:
            self._moved.pop(chat, None)
            self._next_seq.pop(chat, None)

    def stop(self) -> None:
        if self._filler is not None:
            self._filler.cancel()


def _chat(event: Event) -> uuid.UUID | None:
    return event.route().chat_id if event.seq is not None else None
