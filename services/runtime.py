"""The running backend: database, event bus, hub, presence and typing — built from settings, started by the app."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import json
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from models import Database
from realtime import gcpolicy
from realtime.admission import Admission
from realtime.bus import CONTROL, EventBus, channels_of
from realtime.codec import decode_envelope
from realtime.events import Event, UserStoppedTyping, UserTyping
from realtime.hub import Hub
from realtime.positions import Pos, Vector
from realtime.presence import HEARTBEAT_SECONDS, Presence
from realtime.sequencer import Sequencer
from realtime.typing_state import TypingTracker
from server.config import ConfigError, Settings, uvicorn_workers
from services import housekeeping, journal, process_metrics
from storage import Recorded, Store, open_store

log = logging.getLogger(__name__)

# Events read from the log per round trip while catching up.
FETCH_BATCH = 1000
# A script's runtime waits at most this long for the server processes' presence snapshots.
PRESENCE_SETTLE_MAX_SECONDS = 5.0
# Committed events waiting for the broker; beyond this (a hanging broker) the oldest go unpublished and
# other processes read them from the log.
OUTGOING_MAX = 10_000
# Events published in one round trip at most: a burst goes out in bounded pieces.
PUBLISH_BATCH = 500
# How long start-up waits for the broker before it reports not-ready and carries on connecting.
BUS_START_WAIT_SECONDS = 3.0


class Runtime:
    def __init__(self, settings: Settings, *, manage_gc: bool = False) -> None:
        """`manage_gc`: this runtime is the server of its process and runs its garbage collection policy
        (realtime.gcpolicy); scripts and tests that embed a runtime leave their process's collector alone."""
        self.settings = settings
        self._manage_gc = manage_gc
        self.process_id = uuid.uuid4().hex[:12]
        self.db = Database(settings.database_url)
        # Every durable change goes through the store, which publishes what it recorded once committed.
        self.store: Store = open_store(self.db, self.publish_recorded)
        self.admission = Admission(
            per_user=settings.max_connections_per_user, pending_per_address=settings.max_pending_sockets_per_address
        )
        self.presence = Presence(self.process_id, timeout=settings.presence_timeout, send=self._send_control)
        self.bus = EventBus(
            settings.broadcast_url,
            self._on_bus_message,
            heartbeat=self.presence.heartbeat,
            process_id=self.process_id,
            on_connected=self._on_bus_connected,
            on_lost=self._on_bus_lost,
        )
        # The hub tells the bus which chats and users this process needs (routed subscriptions).
        self.hub = Hub(
            outbox_max_events=settings.outbox_max_events, outbox_max_bytes=settings.outbox_max_bytes, interest=self.bus
        )
        self.sequencer = Sequencer(self.hub.dispatch, self._fetch_chat)
        self.typing = TypingTracker(
            settings.typing_ttl,
            self._announce_typing,
            interval=settings.typing_broadcast_interval,
            per_second=settings.typing_per_second,
            burst=settings.typing_burst,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.gc_policy: gcpolicy.GcPolicy | None = None
        self.events_published = 0  # by this process (each reaches every process once)
        self.events_received = 0  # from the bus, this process's own included
        self._outgoing: collections.deque[tuple[list[str], str, Pos]] = collections.deque()  # channels, raw, pos
        self._outgoing_ready = asyncio.Event()
        self._started = False
        # While not None, what arrives from the bus waits here until the log has been read (see `catch_up`).
        self._catching_up: list[tuple[dict[str, Any], str]] | None = []
        self._resync_from = Vector()

    async def start(self) -> None:
        if self.settings.broadcast_url.startswith("memory://") and uvicorn_workers() > 1:
            raise ConfigError(
                "BROADCAST_URL=memory:// connects the processes of one server only, but this is one of several "
                "uvicorn workers: set BROADCAST_URL=redis://… (and a shared DATABASE_URL), or run one worker."
            )
        if self.settings.dev_mode:
            log.warning(
                "SECRET_KEY is not set: DEVELOPMENT MODE, tokens are signed with a public key. "
                "Set SECRET_KEY before exposing this server."
            )
        await self.db.create_schema()
        await self.store.start()
        # Everything after this position reaches this process by the bus, or by catch-up from the log when
        # the bus connects (again).
        baseline = await journal.current(self.db)
        self.sequencer.start(baseline)
        # Until the bus is connected and what was recorded since the baseline is read from the log, what
        # arrives waits (see `catch_up`).
        self._catching_up = []
        self._resync_from = baseline
        self._started = True
        if self._manage_gc:
            self.gc_policy = gcpolicy.GcPolicy()
        if not await self.bus.start(wait=BUS_START_WAIT_SECONDS):
            log.warning(
                "event bus %s unreachable: not ready; connecting in the background",
                _safe_url(self.settings.broadcast_url),
            )
        self.spawn(self._publish_loop())
        self.spawn(housekeeping.retention(self))
        self.spawn(housekeeping.maintenance(self))

    async def stop(self) -> None:
        self.sequencer.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.bus.stop()
        await self.store.close()
        await self.db.dispose()

    @property
    def ready(self) -> bool:
        return self.bus.connected

    @property
    def catching_up(self) -> bool:
        """True while what arrives from the bus waits for a catch-up from the log."""
        return self._catching_up is not None

    async def presence_settled(self) -> None:
        """Wait until the other processes have announced who is online (for a process with no connections of
        its own, such as a script using `websocket_manager`): two heartbeats, then every peer's snapshot."""
        await asyncio.sleep(2 * HEARTBEAT_SECONDS)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PRESENCE_SETTLE_MAX_SECONDS):
                while not self.presence.settled():
                    self.presence.updated.clear()
                    await self.presence.updated.wait()

    # -- events -------------------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Publish an ephemeral event (never raises). This process's own connections get it at once."""
        await self.bus.publish_raw(self._publish_here(event))

    def publish_soon(self, event: Event) -> None:
        """`publish` without waiting: this process's connections get it now, the other processes a moment later."""
        self.spawn(self.bus.publish_raw(self._publish_here(event)))

    def _publish_here(self, event: Event) -> str:
        event = dataclasses.replace(event, origin=self.process_id)
        raw = event.encode()
        self.events_published += 1
        self._offer(event, raw)
        return raw

    def publish_recorded(self, recorded: Recorded) -> None:
        """Publish a durable event whose data is committed (never raises, never waits). Local connections get
        it at once; the bus's copy, sent in commit order by one task, is then a duplicate the sequencer drops."""
        self._offer(recorded.event, recorded.raw)
        self.events_published += 1
        if len(self._outgoing) >= OUTGOING_MAX:
            # The broker is hanging: the oldest event stays in the log, and other processes read it from there
            # when the next one they get shows the gap.
            self._outgoing.popleft()
            self.bus.publish_failures += 1
        pos = recorded.event.pos
        assert pos is not None  # recorded: positioned
        self._outgoing.append((channels_of(recorded.event), recorded.raw, pos))
        self._outgoing_ready.set()

    async def _publish_loop(self) -> None:
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
            await self.bus.publish_many(batch)

    def _offer(self, event: Event, raw: str) -> None:
        change = event.typing_change()
        if change is not None:
            chat_id, user_id, typing = change
            if typing:
                self.presence.typing_started(chat_id, user_id, event.origin)
            else:
                self.presence.typing_stopped(chat_id, user_id)
        self.sequencer.offer(event, raw)

    def _on_bus_message(self, message: dict[str, Any], raw: str) -> None:
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
                self.sequencer.announce(writer, n)
            return
        if isinstance(kind, str) and kind.startswith("_"):
            self.presence.handle(message)
            return
        self.events_received += 1
        if self._skipped(message):
            return  # durable, in its turn, and for nobody here: no need to decode it
        event = decode_envelope(message)
        if event.pos is None and event.origin == self.process_id:
            return  # our own ephemeral event, delivered locally when it was published
        self._offer(event, raw)

    def _send_control(self, message: dict[str, Any]) -> None:
        self.bus.send_control(message)

    def _skipped(self, message: dict[str, Any]) -> bool:
        """Take a durable event that nobody here wants without decoding it, if the sequencer allows."""
        pos = message.get("pos")
        if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(v, int) for v in pos)):
            return False
        if self.hub.wants(message):
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
        return self.sequencer.skip(pos[0], pos[1], chat_id, seq if isinstance(seq, int) else None)

    def _on_bus_lost(self) -> None:
        """The bus dropped: what it will carry after the reconnection waits until what it could not carry in
        between has been read from the log."""
        if self._catching_up is None:
            self._catching_up = []
            self._resync_from = Vector(self.sequencer.frontier)

    async def _on_bus_connected(self) -> None:
        self.presence.hello()
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
        self.sequencer.pause()
        count = 0
        try:
            after = since
            while True:
                rows = await journal.fetch_after(self.db, after, limit=FETCH_BATCH)
                self.sequencer.inject([(r.event, r.raw) for r in rows])
                count += len(rows)
                for row in rows:
                    assert row.event.pos is not None
                    after = after.with_(row.event.pos)
                if len(rows) < FETCH_BATCH:
                    return count
        finally:
            self.sequencer.resume()

    async def _fetch_chat(self, chat_id: uuid.UUID, after_seq: int, upto_seq: int) -> list[tuple[Event, str]]:
        return [(r.event, r.raw) for r in await journal.fetch_chat(self.db, chat_id, after_seq, upto_seq)]

    def spawn(self, coro: Coroutine[Any, Any, Any], *, context: contextvars.Context | None = None) -> None:
        """Run a follow-up in the background, keeping a reference until it ends (in `context`: by default the
        caller's, so a connection's follow-up logs with its connection id)."""
        task = asyncio.create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _announce_typing(self, chat_id: uuid.UUID, user_id: uuid.UUID, typing: bool) -> None:
        event = UserTyping if typing else UserStoppedTyping
        self.publish_soon(event(chat_id=chat_id, user_id=user_id))

    def metrics(self) -> str:
        """This process's metrics in the Prometheus text format (services.process_metrics)."""
        return process_metrics.render(self)

    # -- presence (global: every process's connections) ---------------------------------------------

    def mark_online(self, user_id: uuid.UUID) -> None:
        self.presence.connected(user_id)

    def mark_offline(self, user_id: uuid.UUID) -> bool:
        """True if that was the user's last open stream in this process."""
        return self.presence.disconnected(user_id)

    def is_online(self, user_id: uuid.UUID) -> bool:
        return self.presence.is_online(user_id)

    def online_users(self) -> set[uuid.UUID]:
        return self.presence.online_users()

    def typing_in(self, chat_id: uuid.UUID) -> set[uuid.UUID]:
        return self.presence.typing_in(chat_id)


def _safe_url(url: str) -> str:
    """A broker URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
