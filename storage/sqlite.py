"""The SQLite backend: every unit of work is plain `sqlite3` on the group commit's one writer thread
(`models.group_commit`), which runs all the units waiting at a moment in one transaction, each in a savepoint.

SQLite has one writer at a time anyway; here that writer never waits for a pool, builds no ORM statements and
commits once for many units. Log positions are taken from writer 0's row of `writers` inside each unit: commit order is
the writer's order, so positions are gap-free and in commit order. The stored formats are SQLAlchemy's (the
rest of the code reads these rows through it): `sqlite_uuid` and `sqlite_time` write them, and a test compares
the rows with the ORM's.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from models import Database, User, utcnow
from models.group_commit import GroupCommit, sqlite_time, sqlite_uuid
from realtime.events import (
    Event,
    MemberAdded,
    MemberRemoved,
    MessageData,
    MessagesRead,
    NewMessage,
    UserRef,
)
from realtime.positions import Pos
from storage.base import (
    Changed,
    Created,
    Logged,
    NewChat,
    Publish,
    ReadMoved,
    Refusal,
    Sent,
    Store,
    log_at_seq,
)

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
_IS_MEMBER = "SELECT 1 FROM members WHERE chat_id = ? AND user_id = ?"
_NEXT_SEQ = "UPDATE chats SET last_seq = last_seq + 1, updated_at = ? WHERE id = ? RETURNING last_seq"
_NEXT_SEQ_OF_MEMBER = (
    "UPDATE chats SET last_seq = last_seq + 1, updated_at = ? "
    "WHERE id = ? AND EXISTS (SELECT 1 FROM members WHERE chat_id = ? AND user_id = ?) RETURNING last_seq"
)
_RETRIED = (
    "SELECT m.id, m.seq, m.content, m.created_at, m.updated_at, u.email, u.image_url FROM messages m "
    "JOIN users u ON u.id = m.sender_id WHERE m.chat_id = ? AND m.sender_id = ? AND m.client_id = ?"
)
_SENDER = "SELECT email, image_url FROM users WHERE id = ?"
_INSERT_MESSAGE = (
    "INSERT INTO messages (id, chat_id, seq, sender_id, content, client_id, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _key(value: uuid.UUID | None) -> str | None:
    return None if value is None else sqlite_uuid(value)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=utcnow().tzinfo)


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


def _next_seq(connection: sqlite3.Connection, chat_id: uuid.UUID, member: uuid.UUID | None) -> int | None:
    stamp, chat = sqlite_time(utcnow()), sqlite_uuid(chat_id)
    if member is None:
        row = connection.execute(_NEXT_SEQ, (stamp, chat)).fetchone()
    else:
        row = connection.execute(_NEXT_SEQ_OF_MEMBER, (stamp, chat, chat, sqlite_uuid(member))).fetchone()
    return None if row is None else int(row[0])


class SqliteStore(Store):
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
        chat, sender = sqlite_uuid(chat_id), sqlite_uuid(sender_id)

        def unit(connection: sqlite3.Connection, logged: list[Logged]) -> Sent:
            if client_id is not None:
                row = connection.execute(_RETRIED, (chat, sender, client_id)).fetchone()
                if row is not None:
                    if connection.execute(_IS_MEMBER, (chat, sender)).fetchone() is None:
                        return Sent(refused=Refusal.NOT_MEMBER)
                    message_id, seq, text, created, updated, email, image = row
                    data = MessageData(
                        id=uuid.UUID(hex=message_id),
                        chat_id=chat_id,
                        seq=seq,
                        content=text,
                        created_at=_time(created),
                        updated_at=_time(updated),
                        sender=UserRef(id=sender_id, email=email, image_url=image),
                        client_id=client_id,
                    )
                    return Sent(message=data, retry=True)
            who = connection.execute(_SENDER, (sender,)).fetchone()
            if who is None:
                return Sent(refused=Refusal.NOT_PROVISIONED)
            seq = _next_seq(connection, chat_id, sender_id)  # one statement authorizes and takes the next seq
            if seq is None:
                return Sent(refused=Refusal.NOT_MEMBER)
            now = utcnow()
            stamp = sqlite_time(now)
            message_id = uuid.uuid4()
            connection.execute(
                _INSERT_MESSAGE, (sqlite_uuid(message_id), chat, seq, sender, content, client_id, stamp, stamp)
            )
            data = MessageData(
                id=message_id,
                chat_id=chat_id,
                seq=seq,
                content=content,
                created_at=now,
                updated_at=now,
                sender=UserRef(id=sender_id, email=who[0], image_url=who[1]),
                client_id=client_id,
            )
            logged.append(Logged(NewMessage(chat_id=chat_id, message=data), seq=seq))
            return Sent(message=data)

        return await self._run(unit)

    async def mark_read(self, *, chat_id: uuid.UUID, user_id: uuid.UUID) -> ReadMoved:
        chat, user = sqlite_uuid(chat_id), sqlite_uuid(user_id)

        def unit(connection: sqlite3.Connection, logged: list[Logged]) -> ReadMoved:
            row = connection.execute(
                "SELECT last_read_seq FROM members WHERE chat_id = ? AND user_id = ?", (chat, user)
            ).fetchone()
            if row is None:
                return ReadMoved(refused=Refusal.NOT_MEMBER)
            (latest,) = connection.execute(
                "SELECT coalesce(max(seq), 0) FROM messages WHERE chat_id = ?", (chat,)
            ).fetchone()
            if latest <= row[0]:
                return ReadMoved(last_read_seq=row[0])
            connection.execute(
                "UPDATE members SET last_read_seq = ? WHERE chat_id = ? AND user_id = ?", (latest, chat, user)
            )
            seq = _next_seq(connection, chat_id, None)
            logged.append(Logged(MessagesRead(chat_id=chat_id, user_id=user_id, last_read_seq=latest), seq=seq))
            return ReadMoved(last_read_seq=latest)

        return await self._run(unit)

    # -- chats and membership -------------------------------------------------------------------------------

    async def create_chat(self, chat: NewChat) -> Created:
        def unit(connection: sqlite3.Connection, logged: list[Logged]) -> Created:
            if chat.direct_key is not None:
                row = connection.execute("SELECT id FROM chats WHERE direct_key = ?", (chat.direct_key,)).fetchone()
                if row is not None:
                    return Created(chat_id=uuid.UUID(hex=row[0]), existed=True)
            keys = [sqlite_uuid(m) for m in chat.members]
            known = 0
            for start in range(0, len(keys), 500):  # SQLite caps bound parameters per statement
                part = keys[start : start + 500]
                marks = ",".join("?" * len(part))
                known += connection.execute(f"SELECT count(*) FROM users WHERE id IN ({marks})", part).fetchone()[0]
            if known != len(keys):
                return Created(refused=Refusal.UNKNOWN_USER)
            stamp = sqlite_time(chat.created_at)
            connection.execute(
                "INSERT INTO chats (id, name, is_group, created_by, direct_key, created_at, updated_at, last_seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    sqlite_uuid(chat.id),
                    chat.name,
                    chat.is_group,
                    _key(chat.created_by),
                    chat.direct_key,
                    stamp,
                    stamp,
                ),
            )
            connection.executemany(
                "INSERT INTO members (chat_id, user_id, joined_at, last_read_seq, joined_seq) VALUES (?, ?, ?, 0, 0)",
                [(sqlite_uuid(chat.id), key, stamp) for key in keys],
            )
            logged.append(chat.creation())
            return Created(chat_id=chat.id)

        return await self._run(unit)

    def _group(self, connection: sqlite3.Connection, chat: str) -> Refusal | None:
        row = connection.execute("SELECT is_group FROM chats WHERE id = ?", (chat,)).fetchone()
        if row is None:
            return Refusal.NO_CHAT
        return None if row[0] else Refusal.NOT_GROUP

    async def add_member(self, *, chat_id: uuid.UUID, user_id: uuid.UUID, by: uuid.UUID | None) -> Changed:
        chat, user = sqlite_uuid(chat_id), sqlite_uuid(user_id)

        def unit(connection: sqlite3.Connection, logged: list[Logged]) -> Changed:
            if by is not None and connection.execute(_IS_MEMBER, (chat, sqlite_uuid(by))).fetchone() is None:
                return Changed(refused=Refusal.NOT_MEMBER)
            refused = self._group(connection, chat)
            if refused is not None:
                return Changed(refused=refused)
            if connection.execute("SELECT 1 FROM users WHERE id = ?", (user,)).fetchone() is None:
                return Changed(refused=Refusal.UNKNOWN_USER)
            if connection.execute(_IS_MEMBER, (chat, user)).fetchone() is not None:
                return Changed(changed=False)
            seq = _next_seq(connection, chat_id, None)
            connection.execute(
                "INSERT INTO members (chat_id, user_id, joined_at, last_read_seq, joined_seq) VALUES (?, ?, ?, 0, ?)",
                (chat, user, sqlite_time(utcnow()), seq),
            )
            event = MemberAdded(chat_id=chat_id, user_id=user_id, added_by=by)
            logged.append(Logged(event, seq=seq, subject_user_id=user_id))
            return Changed(changed=True)

        return await self._run(unit)

    async def remove_member(self, *, chat_id: uuid.UUID, user_id: uuid.UUID, by: uuid.UUID | None) -> Changed:
        chat, user = sqlite_uuid(chat_id), sqlite_uuid(user_id)

        def unit(connection: sqlite3.Connection, logged: list[Logged]) -> Changed:
            if by is not None and connection.execute(_IS_MEMBER, (chat, sqlite_uuid(by))).fetchone() is None:
                return Changed(refused=Refusal.NOT_MEMBER)
            row = connection.execute("SELECT is_group, created_by FROM chats WHERE id = ?", (chat,)).fetchone()
            if row is None:
                return Changed(refused=Refusal.NO_CHAT)
            if by is not None and by != user_id and row[1] != sqlite_uuid(by):
                return Changed(refused=Refusal.NOT_CREATOR)
            if not row[0]:
                return Changed(refused=Refusal.NOT_GROUP)
            removed = connection.execute("DELETE FROM members WHERE chat_id = ? AND user_id = ?", (chat, user))
            if not removed.rowcount:
                return Changed(changed=False)
            seq = _next_seq(connection, chat_id, None)
            event = MemberRemoved(chat_id=chat_id, user_id=user_id, removed_by=by)
            logged.append(Logged(event, seq=seq, subject_user_id=user_id))
            return Changed(changed=True)

        return await self._run(unit)

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
