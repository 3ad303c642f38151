"""The SQLite backend: every unit of work is plain `sqlite3` on the group commit's one writer thread
(`models.group_commit`), which runs all the units waiting at a moment in one transaction, each in a savepoint (a lone unit in none).

SQLite has one writer at a time anyway; here that writer never waits for a pool, builds no ORM statements and
commits once for many units. Log positions are taken from writer 0's row of `writers` inside each unit: commit order is
the writer's order, so positions are gap-free and in commit order. The stored formats are SQLAlchemy's (the
rest of the code reads these rows through it): `sqlite_uuid` and `sqlite_time` write them, and a test compares
the rows with the ORM's.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from models import Database, User, utcnow
from models.group_commit import GroupCommit, sqlite_time, sqlite_uuid
from realtime.events import Event
from realtime.positions import Pos
from storage import membership
from storage import sqlite_members as members
from storage import sqlite_messages as messages
from storage.base import (
    Logged,
    Publish,
    Sent,
    StreamStart,
    log_at_seq,
)
from storage.membership import MembershipStore, Program
from storage.messaging import MessagingStore
from storage.sqlite_messages import next_seq as _next_seq
from storage.sqlite_messages import parse_time as _time

T = TypeVar("T")

# SQLite has one writer at a time: every process on the file writes as slot 0, its counter serialized by the
# database's own write lock (so n is gap-free and in commit order across them too).
SLOT = 0
_CLAIM = "INSERT INTO writers (slot, last_n, floor_n) VALUES (0, 0, 0) ON CONFLICT (slot) DO NOTHING"
_NEXT_POS = "UPDATE writers SET last_n = last_n + 1 WHERE slot = 0 RETURNING last_n"
_INSERT_LOG = (
    "INSERT INTO event_log (writer, n, chat_id, seq, target_user_id, subject_user_id, type, payload, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _key(value: uuid.UUID | None) -> str | None:
    return None if value is None else sqlite_uuid(value)


def _log(connection: sqlite3.Connection, logged: Logged) -> None:
    """Give the event the next log position and store it (its `recorded` is then set)."""
    (n,) = connection.execute(_NEXT_POS).fetchone()
    row = logged.at(Pos(SLOT, n))
    connection.execute(
        _INSERT_LOG,
        (
            row["writer"],
            row["n"],
            _key(row["chat_id"]),
            row["seq"],
            _key(row["target_user_id"]),
            _key(row["subject_user_id"]),
            row["type"],
            row["payload"],
            sqlite_time(row["created_at"]),
        ),
    )


class SqliteStore(MembershipStore, MessagingStore):
    def __init__(self, db: Database, publish: Publish) -> None:
        if db.sqlite_path is None:
            raise ValueError(f"expected a SQLite file, got {db.url!r} (an in-memory database is one per connection)")
        self._db = db
        self._publish = publish
        self.writer_thread = GroupCommit(db.sqlite_path)

    @property
    def transactions(self) -> int:
        return self.writer_thread.transactions

    @property
    def units(self) -> int:
        return self.writer_thread.units

    async def start(self) -> None:
        self.writer = SLOT
        await self.writer_thread.run(lambda connection: connection.execute(_CLAIM))

    async def close(self) -> None:
        await asyncio.to_thread(self.writer_thread.close)

    async def _run(self, unit: Callable[[sqlite3.Connection, list[Logged]], T]) -> T:
        """Run `unit(connection, logged)` in the next group commit; publish what it logged once committed."""

        def run(connection: sqlite3.Connection) -> tuple[T, list[Logged]]:
            logged: list[Logged] = []
            result = unit(connection, logged)
            for entry in logged:
                _log(connection, entry)
            return result, logged

        def committed(outcome: tuple[T, list[Logged]]) -> None:
            for entry in outcome[1]:
                assert entry.recorded is not None
                self._publish(entry.recorded)

        result, _ = await self.writer_thread.run(run, committed=committed)
        return result

    # -- messages -----------------------------------------------------------------------------------------

    async def send_message(
        self, *, chat_id: uuid.UUID, sender_id: uuid.UUID, content: str, client_id: str | None
    ) -> Sent:
        return await self._run(
            lambda c, logged: messages.send(
                c, logged, chat_id=chat_id, sender_id=sender_id, content=content, client_id=client_id
            )
        )

    # -- chats and membership -------------------------------------------------------------------------------

    async def _program(self, make: Callable[[list[Logged]], Program[T]]) -> T:
        return await self._run(members.unit(make))

    async def record_chat_event(self, event: Event, *, chat_id: uuid.UUID, member: uuid.UUID | None) -> bool:
        def unit(connection: sqlite3.Connection, logged: list[Logged]) -> bool:
            return log_at_seq(logged, event, _next_seq(connection, chat_id, member))

        return await self._run(unit)

    async def record_user_event(self, event: Event, *, user_id: uuid.UUID) -> None:
        def unit(connection: sqlite3.Connection, logged: list[Logged]) -> None:
            logged.append(Logged(event, target_user_id=user_id))

        await self._run(unit)

    # -- users --------------------------------------------------------------------------------------------

    async def upsert_user(self, *, user_id: uuid.UUID, email: str, image_url: str | None, keep_image: bool) -> User:
        key = sqlite_uuid(user_id)

        def unit(connection: sqlite3.Connection, logged: list[Logged]) -> User:
            update = "email = excluded.email" + ("" if keep_image else ", image_url = excluded.image_url")
            connection.execute(
                "INSERT INTO users (id, email, image_url, created_at) VALUES (?, ?, ?, ?) "
                f"ON CONFLICT (id) DO UPDATE SET {update}",
                (key, email, None if keep_image else image_url, sqlite_time(utcnow())),
            )
            row = connection.execute(
                "SELECT email, image_url, created_at, last_seen FROM users WHERE id = ?", (key,)
            ).fetchone()
            return User(
                id=user_id,
                email=row[0],
                image_url=row[1],
                created_at=_time(row[2]),
                last_seen=None if row[3] is None else _time(row[3]),
            )

        return await self._run(unit)

    async def touch_last_seen(self, *, user_id: uuid.UUID, when: datetime) -> None:
        key, stamp = sqlite_uuid(user_id), sqlite_time(when)

        def unit(connection: sqlite3.Connection, logged: list[Logged]) -> None:
            connection.execute("UPDATE users SET last_seen = ? WHERE id = ?", (stamp, key))

        await self._run(unit)

    async def user_chat_ids(self, *, user_id: uuid.UUID) -> list[uuid.UUID]:
        # On the writer thread too: a reconnect storm of thousands of sockets queues there, in order, instead of
        # timing out on the engine's small pool.
        key = sqlite_uuid(user_id)

        def unit(connection: sqlite3.Connection, logged: list[Logged]) -> list[uuid.UUID]:
            rows = connection.execute("SELECT chat_id FROM members WHERE user_id = ?", (key,)).fetchall()
            return [uuid.UUID(hex=chat_id) for (chat_id,) in rows]

        return await self._run(unit)

    async def stream_start(self, *, user_id: uuid.UUID) -> StreamStart:
        # On the writer thread, like `user_chat_ids`.
        return await self._program(functools.partial(membership.stream_start, user_id=user_id))
