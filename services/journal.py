"""Reading the event log. Every durable event is recorded by the store (`storage`) in the transaction that makes
it true, then published.

Positions are (writer, n) (realtime.positions): per writer gap-free and in that writer's commit order; a chat's
events also carry the chat's gap-free `seq`. Resuming clients replay their part of the log after their cursor (a
vector: per writer, how far they had got); processes read it to fill what the bus did not bring.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
import uuid
from collections import OrderedDict, defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Database, EventLog, Member, Writer
from realtime.codec import decode_envelope
from realtime.events import Event
from realtime.hub import Delivery
from realtime.positions import Pos, Vector
from storage import Recorded

ROW = (EventLog.writer, EventLog.n, EventLog.seq, EventLog.payload)


def recorded(writer: int, n: int, seq: int | None, payload: str) -> Recorded:
    """A stored event, its position and seq from the row (payloads stored before positions per writer carry an
    old global `pos`)."""
    envelope: dict[str, Any] = json.loads(payload)
    envelope["pos"] = [writer, n]
    if seq is not None:
        envelope["seq"] = seq
    return Recorded(decode_envelope(envelope), payload)


async def current(db: Database) -> Vector:
    """Per writer, the last position committed: everything up to it is in the log."""
    async with db.read() as session:
        rows = await session.execute(select(Writer.slot, Writer.last_n))
        return Vector({slot: n for slot, n in rows.all()})


def _after(vector: Vector, writers: set[int]) -> Any:
    """Rows past `vector`, for every writer in `writers`."""
    return or_(false(), *(and_(EventLog.writer == w, EventLog.n > vector[w]) for w in writers))


async def fetch_after(db: Database, after: Vector, *, limit: int = 10_000) -> list[Recorded]:
    """The events recorded past `after`, per writer in its order (a process catching up after a broker fault)."""
    async with db.read() as session:
        writers = set((await session.execute(select(Writer.slot))).scalars())
        query = select(*ROW).where(_after(after, writers)).order_by(EventLog.writer, EventLog.n).limit(limit)
        rows = (await session.execute(query)).all()
    return [recorded(*row) for row in rows]


async def fetch_chat(db: Database, chat_id: uuid.UUID, after_seq: int, upto_seq: int) -> list[Recorded]:
    """A chat's events with seqs in (after_seq, upto_seq], in seq order (filling a gap in a chat's order)."""
    query = (
        select(*ROW)
        .where(EventLog.chat_id == chat_id, EventLog.seq > after_seq, EventLog.seq <= upto_seq)
        .order_by(EventLog.seq)
    )
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [recorded(*row) for row in rows]


class ResyncRequired(Exception):
    """The cursor is older than retention, unknown, or too far behind to replay: refetch instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def check_cursor(db: Database, after: Vector) -> None:
    """`ResyncRequired` for a cursor the log cannot answer: past retention for a writer, or ahead of the log."""
    async with db.read() as session:
        rows = (await session.execute(select(Writer.slot, Writer.last_n, Writer.floor_n))).all()
    known = {slot: (last, floor) for slot, last, floor in rows}
    for writer, n in after.items():
        if writer not in known or n > known[writer][0]:
            raise ResyncRequired("unknown cursor")
    for writer, (_, floor) in known.items():
        if after[writer] < floor:
            raise ResyncRequired("cursor outside the retained log")


async def replay_for(db: Database, *, user_id: uuid.UUID, after: Vector, upto: Vector, limit: int) -> list[Recorded]:
    """The durable events a user missed past `after`, up to `upto`, in an order that keeps each writer's order
    and each chat's seq order (see `merge`).

    A chat's events count from the moment the user joined it; a membership change about the user counts even
    when it removed them; events "to the others" skip the user who caused them.
    """
    await check_cursor(db, after)
    ranges = _ranges(after, upto)
    if not ranges:
        return []
    window = or_(*ranges)
    member_since = exists().where(
        Member.chat_id == EventLog.chat_id, Member.user_id == user_id, Member.joined_seq <= EventLog.seq
    )
    query = (
        select(*ROW)
        .where(
            window,
            or_(
                EventLog.target_user_id == user_id,
                EventLog.subject_user_id == user_id,
                and_(EventLog.chat_id.is_not(None), member_since),
            ),
        )
        .order_by(EventLog.writer, EventLog.n)
        .limit(limit + 1)
    )
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    if len(rows) > limit:
        raise ResyncRequired("too many missed events")
    replay = [r for r in (recorded(*row) for row in rows) if r.event.route().exclude_user_id != user_id]
    return merge(replay)


# A replay window (each writer's range from a cursor up to what this process had dispatched) of at most this many
# positions is read whole, once, for every stream resuming over it (`ReplayWindows`); a bigger one is read per
# stream, filtered by the database (`replay_for`), since most of a long absence's log is other users' events.
SHARED_WINDOW_MAX = 1000
# How long a window read stays for streams resuming over it after the first (its rows never change; only the
# retention floor could move, and it moves by days).
SHARED_WINDOW_SECONDS = 10.0
SHARED_WINDOWS_MAX = 64


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One event of a replay window, with what decides whom it concerns (the columns `replay_for` filters on)."""

    writer: int
    n: int
    seq: int | None
    payload: str
    chat_id: uuid.UUID | None
    target_user_id: uuid.UUID | None
    subject_user_id: uuid.UUID | None

    def concerns(self, user_id: uuid.UUID, member_since: Mapping[uuid.UUID, int]) -> bool:
        """`replay_for`'s condition in Python: the user is the target or the subject, or a member of the chat
        since at most its seq (`member_since`: the user's chats and the seq they joined each at)."""
        if self.target_user_id == user_id or self.subject_user_id == user_id:
            return True
        if self.chat_id is None or self.seq is None:
            return False
        joined = member_since.get(self.chat_id)
        return joined is not None and joined <= self.seq


def window_size(after: Vector, upto: Vector) -> int:
    """How many positions lie past `after` up to `upto` (positions are gap-free per writer)."""
    return sum(max(0, n - after[w]) for w, n in upto.items())


def _ranges(after: Vector, upto: Vector) -> list[ColumnElement[bool]]:
    """Each writer's range of the log past `after` up to `upto`. None at all is an empty replay: the callers
    return early, since an `or_()` of nothing would filter nothing and replay what is newer than `upto` too."""
    return [
        and_(EventLog.writer == w, EventLog.n > after[w], EventLog.n <= upto[w])
        for w in sorted(upto.writers)
        if upto[w] > after[w]
    ]


async def read_window(db: Database, after: Vector, upto: Vector) -> list[WindowRow]:
    """Every event past `after` up to `upto`, in (writer, n) order; `ResyncRequired` as `replay_for`."""
    await check_cursor(db, after)
    ranges = _ranges(after, upto)
    if not ranges:
        return []
    query = (
        select(
            *ROW,
            EventLog.chat_id,
            EventLog.target_user_id,
            EventLog.subject_user_id,
        )
        .where(or_(*ranges))
        .order_by(EventLog.writer, EventLog.n)
    )
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [WindowRow(*row) for row in rows]


class _Window:
    """One window's rows, decoded lazily, and the deliveries of each distinct selection of them: streams that
    replay the same events share the same `Delivery` objects, so each wire form is encoded once for all."""

    __slots__ = ("_decoded", "_shared", "expires", "read")

    def __init__(self, read: asyncio.Task[list[WindowRow]]) -> None:
        self.read = read
        self.expires = time.monotonic() + SHARED_WINDOW_SECONDS
        self._decoded: dict[int, Recorded] = {}
        self._shared: dict[tuple[int, ...], list[Delivery]] = {}

    def _recorded(self, rows: list[WindowRow], i: int) -> Recorded:
        item = self._decoded.get(i)
        if item is None:
            row = rows[i]
            item = self._decoded[i] = recorded(row.writer, row.n, row.seq, row.payload)
        return item

    def deliveries(
        self,
        rows: list[WindowRow],
        *,
        user_id: uuid.UUID,
        member_since: Mapping[uuid.UUID, int],
        after: Vector,
        limit: int,
    ) -> list[Delivery]:
        """What `replay_for` would give the user, as deliveries (each with its cursor, as `deliveries` makes)."""
        concerned = [i for i, row in enumerate(rows) if row.concerns(user_id, member_since)]
        if len(concerned) > limit:
            raise ResyncRequired("too many missed events")
        picked = tuple(i for i in concerned if self._recorded(rows, i).event.route().exclude_user_id != user_id)
        shared = self._shared.get(picked)
        if shared is None:
            shared = self._shared[picked] = deliveries(merge([self._recorded(rows, i) for i in picked]), after)
        return shared


class ReplayWindows:
    """Replay windows read once per process for every stream resuming over them.

    In a reconnect storm thousands of clients come back at once with the cursors of the few last events they had
    (those of their chats), to the same position of this process: one read of the window's events serves them
    all, each selecting its own in memory (membership as its stream read it when it opened), and the clients with
    the same selection get the same deliveries, rendered once for all of them."""

    def __init__(self) -> None:
        self._windows: OrderedDict[tuple[Vector, Vector], _Window] = OrderedDict()

    async def replay(
        self,
        db: Database,
        *,
        user_id: uuid.UUID,
        member_since: Mapping[uuid.UUID, int],
        after: Vector,
        upto: Vector,
        limit: int,
    ) -> list[Delivery]:
        """The deliveries `deliveries(replay_for(...), after)` would give, for a window of at most
        SHARED_WINDOW_MAX positions (`ValueError` for a bigger one: read it with `replay_for`)."""
        if window_size(after, upto) > SHARED_WINDOW_MAX:
            raise ValueError("window too big to share")
        window = self._window(db, after, upto)
        # Shielded: a stream that goes away (its client closed) must not cancel the read others wait for.
        rows = await asyncio.shield(window.read)
        return window.deliveries(rows, user_id=user_id, member_since=member_since, after=after, limit=limit)

    def _window(self, db: Database, after: Vector, upto: Vector) -> _Window:
        now = time.monotonic()
        while self._windows:
            oldest = next(iter(self._windows.values()))
            if oldest.expires > now and len(self._windows) < SHARED_WINDOWS_MAX:
                break
            self._windows.popitem(last=False)
        key = (after, upto)
        window = self._windows.get(key)
        if window is None:
            # A context of its own: the read must not run as part of the first stream's (its read slot, say).
            task = asyncio.get_running_loop().create_task(read_window(db, after, upto), context=contextvars.Context())
            task.add_done_callback(lambda done: self._failed(key, done))
            window = self._windows[key] = _Window(task)
        return window

    def _failed(self, key: tuple[Vector, Vector], task: asyncio.Task[list[WindowRow]]) -> None:
        """A read that failed for a passing reason (the database away) is not kept: the next stream reads again.
        A `ResyncRequired` is the window's answer and stays."""
        # The exception is retrieved here too, so a failure no stream waited for is not reported as unretrieved.
        failed = task.cancelled() or not isinstance(task.exception() or ResyncRequired(""), ResyncRequired)
        window = self._windows.get(key)
        if failed and window is not None and window.read is task:
            del self._windows[key]


def deliveries(items: list[Recorded], after: Vector) -> list[Delivery]:
    """Replayed events as deliveries, each with the cursor of the stream once it has it (from `after` on)."""
    replay = []
    reached = after
    for item in items:
        assert item.event.pos is not None
        reached = reached.with_(item.event.pos)
        replay.append(Delivery(item.event, item.raw, reached))
    return replay


def merge(items: list[Recorded]) -> list[Recorded]:
    """Events of several writers in one order that keeps each writer's order (by n) and each chat's (by seq).

    Both are commit orders, so such an order exists: take the head of any writer whose chat has no earlier seq
    still waiting in the set."""
    queues: dict[int, deque[Recorded]] = defaultdict(deque)
    pending_seqs: dict[uuid.UUID, list[int]] = defaultdict(list)
    positioned = [(item, item.event.pos) for item in items if item.event.pos is not None]  # all of them: logged
    for item, pos in sorted(positioned, key=lambda entry: (entry[1].writer, entry[1].n)):
        queues[pos.writer].append(item)
        chat = _chat_of(item.event)
        if chat is not None and item.event.seq is not None:
            pending_seqs[chat].append(item.event.seq)
    for seqs in pending_seqs.values():
        seqs.sort(reverse=True)  # the lowest waiting seq last: pop() gives it
    ordered: list[Recorded] = []
    while queues:
        progress = False
        for writer in sorted(queues):
            queue = queues[writer]
            while queue:
                head = queue[0]
                chat = _chat_of(head.event)
                if chat is not None and pending_seqs[chat][-1] != head.event.seq:
                    break  # an earlier seq of its chat is at another writer's head or behind it
                queue.popleft()
                if chat is not None:
                    pending_seqs[chat].pop()
                ordered.append(head)
                progress = True
            if not queue:
                del queues[writer]
        if not progress:  # cannot happen with commit-ordered positions; never loop forever on bad data
            rest = sorted((r for q in queues.values() for r in q), key=lambda r: (r.event.seq or 0))
            return ordered + rest
    return ordered


def _chat_of(event: Event) -> uuid.UUID | None:
    """The chat whose seq order an event follows (None for events outside any chat's sequence)."""
    return event.route().chat_id if event.seq is not None else None


async def purge_older_than(db: Database, cutoff: datetime) -> int:
    """Drop log entries older than `cutoff` and raise each writer's floor below which cursors need a resync.

    A writer's entries are stamped as they take their position, so their `created_at` grows with `n`: the last
    entry older than `cutoff` is found by a binary search over `n` (a few dozen primary-key lookups), which spares
    every send an index entry on `created_at` (a B-tree page more per commit). A clock stepping back makes an entry
    look a few seconds older or younger than it is, against a retention of days."""
    async with db.write() as session:
        slots = (await session.execute(select(Writer.slot, Writer.floor_n, Writer.last_n))).all()
        purged = 0
        for writer, floor_n, last_n in slots:
            upto = await _last_older_than(session, writer, floor_n, last_n, cutoff)
            if upto <= floor_n:
                continue
            result = await session.execute(delete(EventLog).where(EventLog.writer == writer, EventLog.n <= upto))
            purged += int(result.rowcount or 0)  # type: ignore[attr-defined]  # a DELETE gives a CursorResult
            await session.execute(
                update(Writer).where(Writer.slot == writer, Writer.floor_n < upto).values(floor_n=upto)
            )
        return purged


async def _last_older_than(session: AsyncSession, writer: int, low: int, high: int, cutoff: datetime) -> int:
    """The highest `n` of `writer` in (low, high] whose entry is older than `cutoff` (`low` if there is none):
    a binary search on the first entry at or after each probe (a purge may have left nothing below it)."""
    while low < high:
        probe = (low + high + 1) // 2
        stamp = (
            await session.execute(
                select(EventLog.created_at)
                .where(EventLog.writer == writer, EventLog.n >= probe, EventLog.n <= high)
                .order_by(EventLog.n)
                .limit(1)
            )
        ).scalar_one_or_none()
        if stamp is not None and stamp < cutoff:
            low = probe
        else:
            high = probe - 1
    return low


__all__ = [
    "SHARED_WINDOW_MAX",
    "Pos",
    "ReplayWindows",
    "ResyncRequired",
    "WindowRow",
    "check_cursor",
    "current",
    "deliveries",
    "fetch_after",
    "fetch_chat",
    "merge",
    "purge_older_than",
    "read_window",
    "recorded",
    "replay_for",
    "window_size",
]
