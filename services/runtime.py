"""The running backend: database, event bus, hub, typing state — built from settings, started by the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from config import Settings
from models import Database
from realtime.bus import EventBus
from realtime.events import Event, UserStoppedTyping, decode
from realtime.hub import Hub
from realtime.sequencer import FILL_BATCH, Sequencer
from realtime.typing_state import TypingTracker
from services import journal

log = logging.getLogger(__name__)

# Retention runs every 10 minutes (the window is days: a purge a little late costs a little disk), or a
# quarter of the window when it is shorter than that.
RETENTION_INTERVAL_SECONDS = 600


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.hub = Hub(outbox_max_events=settings.outbox_max_events, outbox_max_bytes=settings.outbox_max_bytes)
        self.bus = EventBus(settings.broadcast_url, self._on_bus_message)
        self.sequencer = Sequencer(self.hub.dispatch, self._fetch_log)
        self.typing = TypingTracker(settings.typing_ttl, self._typing_expired)
        self._online: dict[uuid.UUID, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._chat_locks: dict[uuid.UUID, asyncio.Lock] = {}

    async def start(self) -> None:
        if self.settings.dev_mode:
            log.warning(
                "SECRET_KEY is not set: DEVELOPMENT MODE, tokens are signed with a public key. "
                "Set SECRET_KEY before exposing this server."
            )
        await self.db.create_schema()
        await self.bus.start()
        # Subscribed first, then read the log's end: everything after it reaches this process by the bus
        # or, if the bus loses it, by the sequencer filling the gap from the log.
        self.sequencer.last_pos = await journal.current_pos(self.db)
        self.spawn(self._retention_loop())

    async def stop(self) -> None:
        self.sequencer.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.bus.stop()
        await self.db.dispose()

    # -- events -------------------------------------------------------------------------------------

    async def publish(self, event: Event, raw: str | None = None) -> None:
        """Publish an event whose data is committed (never raises)."""
        await self.bus.publish(event, raw)

    async def publish_recorded(self, recorded: journal.Recorded) -> None:
        await self.bus.publish(recorded.event, recorded.raw)

    def _on_bus_message(self, raw: str) -> None:
        self.sequencer.offer(decode(raw), raw)

    async def _fetch_log(self, after: int, upto: int | None) -> list[str]:
        return await journal.fetch_range(self.db, after, upto, limit=FILL_BATCH)

    async def _retention_loop(self) -> None:
        """Purge log entries past retention; every process runs it, and running it twice is harmless."""
        while True:
            cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
            try:
                purged = await journal.purge_older_than(self.db, cutoff)
                if purged:
                    log.info("purged %d event log entries older than %s", purged, cutoff.isoformat())
            except Exception:
                log.warning("event log retention failed; will retry", exc_info=True)
            await asyncio.sleep(min(RETENTION_INTERVAL_SECONDS, self.settings.retention_days * 86400 / 4))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a follow-up in the background, keeping a reference until it ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _typing_expired(self, chat_id: uuid.UUID, user_id: uuid.UUID) -> None:
        self.spawn(self.publish(UserStoppedTyping(chat_id=chat_id, user_id=user_id)))

    @contextlib.asynccontextmanager
    async def chat_order(self, chat_id: uuid.UUID) -> AsyncIterator[None]:
        """Hold while committing and publishing a chat's durable event, so this process publishes a chat's
        events in commit (seq) order."""
        lock = self._chat_locks.get(chat_id)
        if lock is None:
            lock = self._chat_locks[chat_id] = asyncio.Lock()
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock._waiters:
                self._chat_locks.pop(chat_id, None)

    # -- presence -----------------------------------------------------------------------------------

    def mark_online(self, user_id: uuid.UUID) -> None:
        self._online[user_id] = self._online.get(user_id, 0) + 1

    def mark_offline(self, user_id: uuid.UUID) -> bool:
        """True if that was the user's last open stream."""
        count = self._online.get(user_id, 0) - 1
        if count > 0:
            self._online[user_id] = count
            return False
        self._online.pop(user_id, None)
        return True

    def is_online(self, user_id: uuid.UUID) -> bool:
        return user_id in self._online

    def online_users(self) -> set[uuid.UUID]:
        return set(self._online)
