"""Between this process and the others: what it commits goes out, what the bus brings comes in, in order.

Out: a durable event whose data is committed is handed to this process's connections at once and, on a routed bus
(Redis), queued; one task publishes the queue in commit order, in batches, each followed by how far this writer has
got (`_upto`, on the control channel). `memory://` has no other process to tell. Ephemeral events (typing) are
published as they happen.
In: what the bus brings is taken in each writer's and each chat's order (realtime.sequencer), a durable event that
arrived before (this process's own, back from Redis) or that no local connection wants is taken without being
decoded, and after a broker outage (or at start) what arrives waits until what was recorded meanwhile has been read
from the log (`catch_up`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from realtime.bus import CONTROL, channels_of
from realtime.codec import decode_envelope
from realtime.events import Event
from realtime.positions import Pos, Vector
from services import journal
from storage import Recorded

if TYPE_CHECKING:
    from services.runtime import Runtime

log = logging.getLogger(__name__)

# Events read from the log per round trip while catching up.
FETCH_BATCH = 1000
# Committed events waiting for the broker; beyond this (a hanging broker) the oldest go unpublished and
# other processes read them from the log.
OUTGOING_MAX = 10_000
# Events published in one round trip at most: a burst goes out in bounded pieces.
PUBLISH_BATCH = 500


class Relay:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt  # the process's parts: its bus, hub, sequencer, presence and database
        self.events_published = 0  # by this process (each reaches every process once)
        self.events_received = 0  # from the bus, this process's own included
        self._outgoing: collections.deque[tuple[list[str], str, Pos]] = collections.deque()  # channels, raw, pos
        self._outgoing_ready = asyncio.Event()
        self._started = False
        # While not None, what arrives from the bus waits here until the log has been read (see `catch_up`).
        self._catching_up: list[tuple[dict[str, Any], str]] | None = []
        self._resync_from = Vector()

    def start(self, baseline: Vector) -> None:
        """Everything after `baseline` reaches this process by the bus, or by catch-up from the log when the bus
        connects (again): until then, what arrives waits."""
        self._catching_up = []
        self._resync_from = baseline
        self._started = True

    @property
    def catching_up(self) -> bool:
        """True while what arrives from the bus waits for a catch-up from the log."""
        return self._catching_up is not None

    def publish_soon(self, event: Event) -> None:
        """Publish an ephemeral event (never raises, never waits): this process's connections get it now, the other
        processes a moment later."""
        event = dataclasses.replace(event, origin=self.rt.process_id)
        raw = event.encode()
        self.events_published += 1
        self._offer(event, raw)
        self.rt.spawn(self.rt.bus.publish_raw(raw))

    def publish_recorded(self, recorded: Recorded) -> None:
        """Publish a durable event whose data is committed (never raises, never waits). Local connections get
        it at once; the bus's copy, sent in commit order by one task, is then a duplicate the sequencer drops."""
        self._offer(recorded.event, recorded.raw)
        self.events_published += 1
        if not self.rt.bus.routed:
            return  # `memory://` serves this process alone: no other process is there to hear it
        if len(self._outgoing) >= OUTGOING_MAX:
            # The broker is hanging: the oldest event stays in the log, and other processes read it from there
            # when the next one they get shows the gap.
            self._outgoing.popleft()
            self.rt.bus.publish_failures += 1
        pos = recorded.event.pos
        assert pos is not None  # recorded: positioned
        self._outgoing.append((channels_of(recorded.event), recorded.raw, pos))
        self._outgoing_ready.set()

    async def run(self) -> None:
        """Publish what committed, in commit order: everything waiting at a moment in one batch, then how far
        this writer has got (on the control channel: every process hears it, whichever channels it follows)."""
        while True:
            while not self._outgoing:
                self._outgoing_ready.clear()
                await self._outgoing_ready.wait()
            taken = [self._outgoing.popleft() for _ in range(min(len(self._outgoing), PUBLISH_BATCH))]
            batch = [(channels, raw) for channels, raw, _ in taken]
            reached: dict[int, int] = {}
            for _, _, pos in taken:
                reached[pos.writer] = max(reached.get(pos.writer, 0), pos.n)
            for writer, n in reached.items():
                batch.append(([CONTROL], json.dumps({"type": "_upto", "writer": writer, "n": n})))
            await self.rt.bus.publish_many(batch)

    def _offer(self, event: Event, raw: str) -> None:
        change = event.typing_change()
        if change is not None:
            chat_id, user_id, typing = change
            if typing:
                self.rt.presence.typing_started(chat_id, user_id, event.origin)
            else:
                self.rt.presence.typing_stopped(chat_id, user_id)
        self.rt.sequencer.offer(event, raw)

    def on_bus_message(self, message: dict[str, Any], raw: str) -> None:
        kind = message.get("type")
        if self._catching_up is not None and not (isinstance(kind, str) and kind.startswith("_presence")):
            self._catching_up.append((message, raw))  # after the catch-up from the log
            return
        self._take(message, raw)

    def _take(self, message: dict[str, Any], raw: str) -> None:
        kind = message.get("type")
        if kind == "_upto":
            writer, n = message.get("writer"), message.get("n")
            if isinstance(writer, int) and isinstance(n, int):
                self.rt.sequencer.announce(writer, n)
            return
        if isinstance(kind, str) and kind.startswith("_"):
            self.rt.presence.handle(message)
            return
        self.events_received += 1
        if self._skipped(message):
            return  # durable, in its turn, and for nobody here: no need to decode it
        event = decode_envelope(message)
        if event.pos is None and event.origin == self.rt.process_id:
            return  # our own ephemeral event, delivered locally when it was published
        self._offer(event, raw)

    def _skipped(self, message: dict[str, Any]) -> bool:
        """Take a durable event that nobody here wants without decoding it, if the sequencer allows."""
        pos = message.get("pos")
        if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(v, int) for v in pos)):
            return False
        if self.rt.sequencer.arrived(pos[0], pos[1]):
            return True  # a duplicate: this process's own event coming back, or one read from the log first
        if self.rt.hub.wants(message):
            return False
        seq = message.get("seq")
        data = message.get("data")
        chat = data.get("chat_id") if isinstance(data, dict) else None
        if message.get("type") == "global_notification":
            route = message.get("route")
            chat = route.get("chat_id") if isinstance(route, dict) else None
        try:
            chat_id = uuid.UUID(chat) if isinstance(chat, str) and isinstance(seq, int) else None
        except ValueError:
            return False
        return self.rt.sequencer.skip(pos[0], pos[1], chat_id, seq if isinstance(seq, int) else None)

    def on_bus_lost(self) -> None:
        """The bus dropped: what it will carry after the reconnection waits until what it could not carry in
        between has been read from the log."""
        if self._catching_up is None:
            self._catching_up = []
            self._resync_from = Vector(self.rt.sequencer.frontier)

    async def on_bus_connected(self) -> None:
        self.rt.presence.hello()
        if self._started and self._catching_up is not None:
            try:
                caught_up = await self.catch_up(self._resync_from)
            finally:
                held, self._catching_up = self._catching_up or [], None
                for message, raw in held:
                    self._take(message, raw)
            if caught_up:
                log.info("caught up %d events from the log", caught_up)

    async def catch_up(self, since: Vector) -> int:
        """Take from the log everything recorded past `since` that did not come here by the bus (a broker
        outage, a process starting): each writer's events in order, duplicates dropped."""
        self.rt.sequencer.pause()
        count = 0
        try:
            after = since
            while True:
                rows = await journal.fetch_after(self.rt.db, after, limit=FETCH_BATCH)
                self.rt.sequencer.inject([(r.event, r.raw) for r in rows])
                count += len(rows)
                for row in rows:
                    assert row.event.pos is not None
                    after = after.with_(row.event.pos)
                if len(rows) < FETCH_BATCH:
                    return count
        finally:
            self.rt.sequencer.resume()

    async def fetch_chat(self, chat_id: uuid.UUID, after_seq: int, upto_seq: int) -> list[tuple[Event, str]]:
        return [(r.event, r.raw) for r in await journal.fetch_chat(self.rt.db, chat_id, after_seq, upto_seq)]
