"""The running backend, built from settings and started by the app: the composition root of the process's parts —
the database and its store, the event bus, the hub, the sequencer, presence and typing, the relay between this
process and the others (services.relay), the periodic work (services.housekeeping) and the metrics page
(services.process_metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from models import Database
from realtime import gcpolicy
from realtime.admission import Admission
from realtime.bus import EventBus
from realtime.events import UserStoppedTyping, UserTyping
from realtime.hub import Hub
from realtime.presence import HEARTBEAT_SECONDS, Presence
from realtime.sequencer import Sequencer
from realtime.typing_state import TypingTracker
from server.config import ConfigError, Settings, uvicorn_workers
from services import housekeeping, journal, process_metrics
from services.presence_feed import PresenceFeed
from services.relay import Relay
from storage import Store, open_store

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
        # What this process commits goes out, what the bus brings comes in (services.relay).
        self.relay = Relay(self)
        # Every durable change goes through the store, which publishes what it recorded once committed.
        self.store: Store = open_store(self.db, self.relay.publish_recorded)
        self.admission = Admission(
            per_user=settings.max_connections_per_user, pending_per_address=settings.max_pending_sockets_per_address
        )
        self.presence = Presence(self.process_id, timeout=settings.presence_timeout, send=self._send_control)
        self.bus = EventBus(
            settings.broadcast_url,
            self.relay.on_bus_message,
            heartbeat=self.presence.heartbeat,
            process_id=self.process_id,
            on_connected=self.relay.on_bus_connected,
            on_lost=self.relay.on_bus_lost,
        )
        # The hub tells the bus which chats and users this process needs (routed subscriptions).
        self.hub = Hub(
            outbox_max_events=settings.outbox_max_events,
            outbox_max_bytes=settings.outbox_max_bytes,
            interest=self.bus,
            history_from_joining=settings.history_visibility == "joined",
        )
        self.sequencer = Sequencer(self.hub.dispatch, self.relay.fetch_chat)
        # Replay windows read once for every stream resuming over them (a reconnect storm).
        self.replays = journal.ReplayWindows()
        self.typing = TypingTracker(
            settings.typing_ttl,
            self._announce_typing,
            interval=settings.typing_broadcast_interval,
            per_second=settings.typing_per_second,
            burst=settings.typing_burst,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.gc_policy: gcpolicy.GcPolicy | None = None

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
        self.relay.start(baseline)
        if self._manage_gc:
            self.gc_policy = gcpolicy.GcPolicy()
        if not await self.bus.start(wait=BUS_START_WAIT_SECONDS):
            log.warning(
                "event bus %s unreachable: not ready; connecting in the background",
                _safe_url(self.settings.broadcast_url),
            )
        self.spawn(self.relay.run())
        self.spawn(housekeeping.retention(self))
        self.spawn(housekeeping.maintenance(self))
        self.spawn(PresenceFeed(self).run())

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

    async def presence_settled(self) -> None:
        """Wait until the other processes have announced who is online (for a process with no connections of
        its own, such as a script using `websocket_manager`): two heartbeats, then every peer's snapshot."""
        await asyncio.sleep(2 * HEARTBEAT_SECONDS)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PRESENCE_SETTLE_MAX_SECONDS):
                while not self.presence.settled():
                    self.presence.updated.clear()
                    await self.presence.updated.wait()

    def _send_control(self, message: dict[str, Any]) -> None:
        self.bus.send_control(message)

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
        self.relay.publish_soon(event(chat_id=chat_id, user_id=user_id))

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
