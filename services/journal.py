"""Reading the event log. Every durable event is recorded by the store (`storage`) in the transaction that makes
it true, then published.

Positions are global, gap-free and in commit order (see `models.EventLog`). Resuming clients replay their
part of the log after their cursor; processes replay it to fill gaps in what the bus delivered.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, or_, select, update

from models import Database, EventLog, LogState, Member
from realtime.events import decode
from storage import Recorded


async def current_pos(db: Database) -> int:
    async with db.read() as session:
        return int((await session.execute(select(LogState.last_pos).where(LogState.id == 1))).scalar_one())


async def fetch_range(db: Database, after: int, upto: int | None = None, *, limit: int = 10_000) -> list[str]:
    """The recorded events after `after` (up to `upto`), in log order, as published."""
    query = select(EventLog.payload).where(EventLog.pos > after).order_by(EventLog.pos).limit(limit)
    if upto is not None:
        query = query.where(EventLog.pos <= upto)
    async with db.read() as session:
        return list((await session.execute(query)).scalars())


class ResyncRequired(Exception):
    """The cursor is older than retention, unknown, or too far behind to replay: refetch instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def replay_for(db: Database, *, user_id: uuid.UUID, after: int, upto: int, limit: int) -> list[Recorded]:
    """The durable events a user missed after log position `after`, up to `upto`, in log order.

    A chat's events count from the moment the user joined it; a membership change about the user counts even
    when it removed them; events "to the others" skip the user who caused them.
    """
    async with db.read() as session:
        state = (await session.execute(select(LogState).where(LogState.id == 1))).scalar_one()
        if after < state.floor_pos or after > state.last_pos:
            raise ResyncRequired("cursor outside the retained log")
        member_since = exists().where(
            Member.chat_id == EventLog.chat_id, Member.user_id == user_id, Member.joined_seq <= EventLog.seq
        )
        query = (
            select(EventLog.payload)
            .where(
                EventLog.pos > after,
                EventLog.pos <= upto,
                or_(
                    EventLog.target_user_id == user_id,
                    EventLog.subject_user_id == user_id,
                    and_(EventLog.chat_id.is_not(None), member_since),
                ),
            )
            .order_by(EventLog.pos)
            .limit(limit + 1)
        )
        rows = list((await session.execute(query)).scalars())
    if len(rows) > limit:
        raise ResyncRequired("too many missed events")
    replay = []
    for raw in rows:
        event = decode(raw)
        if event.route().exclude_user_id == user_id:
            continue
        replay.append(Recorded(event, raw))
    return replay


async def purge_older_than(db: Database, cutoff: datetime) -> int:
    """Drop log entries older than `cutoff` and raise the floor below which cursors need a resync."""
    async with db.write() as session:
        upto = (await session.execute(select(func.max(EventLog.pos)).where(EventLog.created_at < cutoff))).scalar_one()
        if upto is None:
            return 0
        result = await session.execute(delete(EventLog).where(EventLog.pos <= upto))
        await session.execute(
            update(LogState).where(LogState.id == 1, LogState.floor_pos < upto).values(floor_pos=upto)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
