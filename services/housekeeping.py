"""The runtime's periodic work, each loop run as one background task of the process (`Runtime.start`).

- `maintenance`: every second, the garbage collection policy's tick (realtime.gcpolicy), typing of processes
  that went silent stopped for this process's connections, and every few seconds idle chats forgotten by the
  sequencer and a look at the log for events whose publish was lost (a safety net behind the sequencer's gap
  filling, for the last event before a quiet spell; `LostPublishes`).
- `retention`: durable events older than `RETENTION_DAYS` purged from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from realtime import gcpolicy
from realtime.events import UserStoppedTyping
from realtime.positions import Vector
from services import journal

if TYPE_CHECKING:
    from services.runtime import Runtime

log = logging.getLogger(__name__)

# Retention runs every 10 minutes (the window is days: a purge a little late costs a little disk), or a
# quarter of the window when it is shorter than that.
RETENTION_INTERVAL_SECONDS = 600
MAINTENANCE_SECONDS = 1.0
CATCH_UP_CHECK_SECONDS = 5.0


class LostPublishes:
    """When the log holds events this process has not dispatched, for good.

    The log can be ahead of the sequencer for a moment without anything lost: a unit has committed (a read sees it)
    and its publish is on its way to the event loop. A catch-up started then would hold that publish behind a read
    of the log, and the command that wrote it could answer before its own event goes out (`block_user`'s reply
    ahead of `block_changed`). So a gap counts only when the log was already that far ahead at the previous look
    and the sequencer has still not got there."""

    def __init__(self) -> None:
        self._seen: Vector | None = None

    def check(self, head: Vector, frontier: Vector) -> bool:
        """`head`: the log's last positions now; `frontier`: what the sequencer has taken. True: catch up."""
        lost = self._seen is not None and self._seen.beyond(frontier)
        self._seen = head if head.beyond(frontier) else None
        return lost


async def maintenance(rt: Runtime) -> None:
    since_check = since_freeze = 0.0
    lost = LostPublishes()
    while True:
        await asyncio.sleep(MAINTENANCE_SECONDS)
        since_freeze += MAINTENANCE_SECONDS
        if rt.gc_policy is not None and since_freeze >= gcpolicy.FREEZE_SECONDS:
            since_freeze = 0.0
            rt.gc_policy.tick(closed=rt.hub.closed_connections, open_now=rt.hub.open_connections)
        for chat_id, user_id in rt.presence.expire():
            # The process that started this typing is gone and will never stop it: stop it here, for this
            # process's own connections (every process does the same for its own).
            stop = UserStoppedTyping(chat_id=chat_id, user_id=user_id)
            rt.hub.dispatch(stop, stop.encode())
        since_check += MAINTENANCE_SECONDS
        if since_check >= CATCH_UP_CHECK_SECONDS:
            since_check = 0.0
            rt.sequencer.forget_idle_chats(rt.hub.streams_chat)
            with contextlib.suppress(Exception):
                head = await journal.current(rt.db)
                frontier = Vector(rt.sequencer.frontier)
                if lost.check(head, frontier) and not rt.relay.catching_up:
                    await rt.relay.catch_up(frontier)


async def retention(rt: Runtime) -> None:
    """Purge log entries past retention; every process runs it, and running it twice is harmless."""
    while True:
        cutoff = datetime.now(UTC) - timedelta(days=rt.settings.retention_days)
        try:
            purged = await journal.purge_older_than(rt.db, cutoff)
            if purged:
                log.info("purged %d event log entries older than %s", purged, cutoff.isoformat())
        except Exception:
            log.warning("event log retention failed; will retry", exc_info=True)
        await asyncio.sleep(min(RETENTION_INTERVAL_SECONDS, rt.settings.retention_days * 86400 / 4))
