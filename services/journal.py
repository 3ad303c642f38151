"""The event log: every durable event is recorded in the transaction that makes it true, then published.

Positions are global, gap-free and in commit order (see `models.EventLog`). Resuming clients replay their
part of the log after their cursor; processes replay it to fill gaps in what the bus delivered.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Chat, Database, EventLog, LogState, Member, utcnow
from models.group_commit import sqlite_time, sqlite_uuid
from realtime.events import Event, decode


@dataclass(frozen=True, slots=True)
class Recorded:
    """A recorded event and its wire form, encoded once: the same text is stored and published."""

    event: Event
    raw: str


async def next_seq(session: AsyncSession, chat_id: uuid.UUID, *, member: uuid.UUID | None = None) -> int | None:
    """Take the chat's next seq (and bump `updated_at`); None if the chat does not exist or, when `member` is
    given, that user is not a member. The row lock this takes is held until commit, so a chat's seqs commit
    in order on every database."""
    stmt = update(Chat).where(Chat.id == chat_id).values(last_seq=Chat.last_seq + 1, updated_at=utcnow())
    if member is not None:
        stmt = stmt.where(exists().where(Member.chat_id == chat_id, Member.user_id == member))
    result = await session.execute(stmt.returning(Chat.last_seq))
    return result.scalar_one_or_none()


async def append(
    session: AsyncSession,
    event: Event,
    *,
    seq: int | None = None,
    target_user_id: uuid.UUID | None = None,
    subject_user_id: uuid.UUID | None = None,
) -> Recorded:
    """Give `event` the next log position and store it. Call it last in the transaction: the position's row
    lock serializes durable writes until commit."""
    pos = (
        await session.execute(
            update(LogState).where(LogState.id == 1).values(last_pos=LogState.last_pos + 1).returning(LogState.last_pos)
        )
    ).scalar_one()
    recorded, row = _log_entry(event, pos, seq=seq, target_user_id=target_user_id, subject_user_id=subject_user_id)
    session.add(EventLog(**row))
    return recorded


async def record_chat_event(
    session: AsyncSession,
    chat_id: uuid.UUID,
    event: Event,
    *,
    member: uuid.UUID | None = None,
    subject_user_id: uuid.UUID | None = None,
) -> Recorded | None:
    """Record one of a chat's events with the chat's next seq (`next_seq`, then `append`). None, and nothing
    written, if the chat does not exist or, when `member` is given, that user is not a member."""
    seq = await next_seq(session, chat_id, member=member)
    if seq is None:
        return None
    return await append(session, event, seq=seq, subject_user_id=subject_user_id)


_SQLITE_NEXT_POS = "UPDATE log_state SET last_pos = last_pos + 1 WHERE id = 1 RETURNING last_pos"
_SQLITE_INSERT = (
    "INSERT INTO event_log (pos, chat_id, seq, target_user_id, subject_user_id, type, payload, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def append_sqlite(connection: sqlite3.Connection, event: Event, *, seq: int | None = None) -> Recorded:
    """`append` for a unit of work of the SQLite group commit (models.group_commit): the same row, by hand."""
    (pos,) = connection.execute(_SQLITE_NEXT_POS).fetchone()
    recorded, row = _log_entry(event, pos, seq=seq)

    def key(value: uuid.UUID | None) -> str | None:
        return None if value is None else sqlite_uuid(value)

    connection.execute(
        _SQLITE_INSERT,
        (
            row["pos"],
            key(row["chat_id"]),
            row["seq"],
            key(row["target_user_id"]),
            key(row["subject_user_id"]),
            row["type"],
            row["payload"],
            sqlite_time(row["created_at"]),
        ),
    )
    return recorded


def _log_entry(
    event: Event,
    pos: int,
    *,
    seq: int | None,
    target_user_id: uuid.UUID | None = None,
    subject_user_id: uuid.UUID | None = None,
) -> tuple[Recorded, dict[str, Any]]:
    """The event at its position, encoded once, and its `event_log` row."""
    positioned = dataclasses.replace(event, pos=pos)
    raw = positioned.encode()
    route = positioned.route()
    row = {
        "pos": pos,
        "chat_id": route.chat_id,
        "seq": seq,
        "target_user_id": target_user_id if target_user_id is not None else route.user_id,
        "subject_user_id": subject_user_id,
        "type": positioned.type,
        "payload": raw,
        "created_at": utcnow(),
    }
    return Recorded(positioned, raw), row


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
            Member.chat_id == EventLog.chat_id, Member.user_id == user_id, Member.joined_pos <= EventLog.pos
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
