"""Live presence: `user_online` / `user_offline` to the people who share a chat with a user.

Every process knows the global online set (realtime.presence: its own connections, and every other process's
over the bus). Each process watches that set change and tells *its own* connections — so nothing about presence
crosses the bus twice, and a process that dies is noticed by all the others (`PRESENCE_TIMEOUT`).

- A user who comes online (was not, by this process's reckoning) gets one `UserOnline` per chat they are in,
  delivered to that chat's other members connected here — in chats of at most `PRESENCE_MAX_MEMBERS` members:
  in a bigger group a crowd coming online would cost members² events, and its members read `chatStatus`.
- A user who goes offline is given `PRESENCE_GRACE` seconds to come back (a reload, a reconnect, a phone
  changing networks): back in time, nothing is said at all; still away, one `UserOffline` per chat, with the
  moment they left as `last_seen`.
- Who another process reports in a snapshot (when either process starts, or after a missed update) was online
  before this process heard of it: taken as known, no burst of `UserOnline`.

Both are ephemeral (not stored, not replayed, dropped first when a connection's outbox is full, like typing).
The snapshot (`chatStatus`, `isOnline`) stays the source of truth for a client that (re)connects.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from models import Member, utcnow
from realtime.events import Event, UserOffline, UserOnline

if TYPE_CHECKING:
    from services.runtime import Runtime

log = logging.getLogger(__name__)

# Users per membership query: far below both databases' limits on bound parameters.
QUERY_CHUNK = 1000


class PresenceFeed:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._known: set[uuid.UUID] = set()  # online, as this process has told its connections (or found at start)
        self._leaving: dict[uuid.UUID, tuple[datetime, asyncio.TimerHandle]] = {}  # offline, within the grace
        # Offline past the grace, not announced yet, with the moment they left: announced together, in one read of
        # their chats (a crowd that dropped at once, whose graces end at once, costs one query, not one each).
        self._gone: dict[uuid.UUID, datetime] = {}
        self._announcing_gone = False

    async def run(self) -> None:
        changed = self.rt.presence.changed
        while True:
            await changed.wait()
            changed.clear()
            # Who a peer's snapshot brought was online before this process heard of it (the peer, or this process,
            # just started): not news.
            came = self._diff() - self.rt.presence.take_snapshot_arrivals()
            try:
                await self._announce(dict.fromkeys(came), online=True)
            except Exception:  # the database is away: those users' partners learn it from the next snapshot
                log.warning("presence: could not announce who came online", exc_info=True)

    def _diff(self) -> set[uuid.UUID]:
        """Who came online since the last look (and is not just back within the grace); starts the grace of
        whoever left. Only the users whose state changed are looked at (`Presence.take_touched`)."""
        came: set[uuid.UUID] = set()
        loop = asyncio.get_running_loop()
        for user_id in self.rt.presence.take_touched():
            if self.rt.is_online(user_id):
                leaving = self._leaving.pop(user_id, None)
                if leaving is not None:
                    leaving[1].cancel()  # back in time: never offline, as far as anyone is told
                elif user_id not in self._known:
                    came.add(user_id)
            elif user_id in self._known and user_id not in self._leaving:
                timer = loop.call_later(self.rt.settings.presence_grace, self._grace_over, user_id)
                self._leaving[user_id] = (utcnow(), timer)
        self._known |= came
        return came

    def _grace_over(self, user_id: uuid.UUID) -> None:
        left_at, _ = self._leaving.pop(user_id)
        if self.rt.is_online(user_id):
            return  # back, and the change is on its way to `run`
        self._known.discard(user_id)
        self._gone[user_id] = left_at
        if not self._announcing_gone:  # graces ending meanwhile join the round, or the next one
            self._announcing_gone = True
            self.rt.spawn(self._announce_gone())

    async def _announce_gone(self) -> None:
        try:
            while self._gone:
                gone, self._gone = self._gone, {}
                try:
                    await self._announce(gone, online=False)
                except Exception:  # the database is away: those users' partners learn it from the next snapshot
                    log.warning("presence: could not announce who went offline", exc_info=True)
        finally:
            self._announcing_gone = False

    async def _announce(self, users: Mapping[uuid.UUID, datetime | None], *, online: bool) -> None:
        """One event per chat of each user, for this process's connections of that chat's other members (offline:
        `users` maps each to the moment they left)."""
        if not users or not self.rt.hub.open_connections:
            return
        chats = await _chats_of(self.rt, set(users), max_members=self.rt.settings.presence_max_members)
        # A burst (a crowd coming online at once, as after a deploy) gives each partner several events: queued, each
        # partner's socket gets them in one write instead of one write each.
        queued = sum(map(len, chats.values())) > 1
        for user_id, chat_ids in chats.items():
            for chat_id in chat_ids:
                if not self.rt.hub.streams_chat(chat_id):
                    continue
                event: Event
                if online:
                    event = UserOnline(chat_id=chat_id, user_id=user_id)
                else:
                    left_at = users[user_id]
                    assert left_at is not None
                    event = UserOffline(chat_id=chat_id, user_id=user_id, last_seen=left_at)
                self.rt.hub.dispatch(event, event.encode(), queued=queued)


async def _chats_of(rt: Runtime, users: set[uuid.UUID], *, max_members: int) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The chats of each user that have at most `max_members` members. Only their chats' members are counted: the
    cost follows the size of their chats, not that of every membership there is."""
    chats: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    ordered = sorted(users)
    async with rt.db.read() as session:
        for start in range(0, len(ordered), QUERY_CHUNK):
            chunk = ordered[start : start + QUERY_CHUNK]
            theirs = select(Member.chat_id).where(Member.user_id.in_(chunk))
            small = (
                select(Member.chat_id)
                .where(Member.chat_id.in_(theirs))
                .group_by(Member.chat_id)
                .having(func.count() <= max_members)
            )
            query = select(Member.user_id, Member.chat_id).where(Member.user_id.in_(chunk), Member.chat_id.in_(small))
            for user_id, chat_id in (await session.execute(query)).all():
                chats[user_id].append(chat_id)
    return chats
