"""The PostgreSQL backend: one writer connection (asyncpg) per process, many units of work per transaction.

Units that arrive while a transaction commits wait for the next one, which takes them all (a group commit):
the sends among them as **one** statement over arrays (authorization, retried client ids, the chats' next seqs
— several sends to one chat included — the rows and the senders, in one round trip), then the other units one
after another, then the batch's events into the log in two statements, then one COMMIT. Nothing waits to fill a
batch. A unit that fails unexpectedly rolls its batch back; the batch's units then run again one per
transaction, so only the failing one fails.

Log positions are this writer's own (realtime.positions): the batch's last statements take as many from the
writer's row, which no other process touches, just before its COMMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import asyncpg
from sqlalchemy import make_url, select

from models import Chat, Database, Member, User, utcnow
from models.tables import UserBlock
from realtime.events import Event
from realtime.positions import Pos
from storage import postgres_members as members
from storage.base import Logged, Publish, Sent, StreamStart, log_at_seq
from storage.membership import MembershipStore, Program, starting
from storage.messaging import MessagingStore
from storage.postgres_statements import (
    ADD_SLOT,
    CLAIM_SLOT,
    INSERT_LOG,
    MAX_WRITERS,
    NEXT_POSITIONS,
    SLOT_LOCK_CLASS,
    SendInput,
    log_row,
    next_seq,
    send_all,
    sent,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[asyncpg.Connection, list[Logged]], Awaitable[T]]

# A transaction holds at most this many units: a burst still commits in bounded time and memory.
MAX_BATCH = 500
# After the writer's connection fails, wait this long before connecting again (a restarting server).
RECONNECT_SECONDS = 0.5


@dataclass(slots=True)
class _Job(Generic[T]):
    future: asyncio.Future[T]
    unit: Unit[T] | None = None  # a unit of its own, or
    send: SendInput | None = None  # a send, run with the batch's other sends
    logged: list[Logged] = field(default_factory=list)


class PostgresStore(MembershipStore, MessagingStore):
    def __init__(self, db: Database, publish: Publish, *, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._publish = publish
        self._dsn = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.max_batch = max_batch
        self._jobs: deque[_Job[Any]] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None
        self._transactions = 0
        self._units = 0

    @property
    def transactions(self) -> int:
        return self._transactions

    @property
    def units(self) -> int:
        return self._units

    async def start(self) -> None:
        await self._connect()  # claims the writer slot now: the runtime announces it
        self._writer = asyncio.create_task(self._write_loop(), name="postgres-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(ConnectionError("the database writer is stopped"))
        self._jobs.clear()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    # -- the writer ------------------------------------------------------------------------------------------

    def _queue(self, job: _Job[T]) -> asyncio.Future[T]:
        if self._writer is None or self._writer.done():
            raise ConnectionError("the database writer is not running")
        self._jobs.append(job)
        self._wake.set()
        return job.future

    async def _run(self, unit: Unit[T]) -> T:
        return await self._queue(_Job(asyncio.get_running_loop().create_future(), unit=unit))

    async def _write_loop(self) -> None:
        while True:
            while not self._jobs:
                self._wake.clear()
                await self._wake.wait()
            batch = [self._jobs.popleft() for _ in range(min(len(self._jobs), self.max_batch))]
            try:
                connection = await self._connect()
            except (OSError, asyncpg.PostgresError) as exc:
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            await self._commit(connection, batch)

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            connection = await asyncpg.connect(self._dsn)
            try:
                self.writer = await self._claim(connection)
            except BaseException:
                await connection.close()
                raise
            self._connection = connection
        return self._connection

    async def _claim(self, connection: asyncpg.Connection) -> int:
        """A free writer slot for this connection's session, the one held before (after a reconnect) first."""
        for slot in dict.fromkeys([self.writer, *range(MAX_WRITERS)]):
            if await connection.fetchval(CLAIM_SLOT, SLOT_LOCK_CLASS, slot):
                await connection.execute(ADD_SLOT, slot)
                return int(slot)
        raise RuntimeError(f"all {MAX_WRITERS} writer slots are held: too many server processes")

    async def _commit(self, connection: asyncpg.Connection, batch: list[_Job[Any]]) -> None:
        try:
            outcomes = await self._transaction(connection, batch)
        except (OSError, asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.InterfaceError) as exc:
            # The connection is gone (nothing of the batch is known to have committed): fail the batch, reconnect.
            self._connection = None
            with contextlib.suppress(Exception):
                connection.terminate()
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                job = batch[0]
                if not job.future.done():
                    job.future.set_exception(exc)
                return
            log.info("a batch of %d units failed (%r): running them one by one", len(batch), exc)
            for job in batch:
                job.logged.clear()
                await self._commit(connection, [job])
            return
        self._transactions += 1
        self._units += len(batch)
        for job, outcome in zip(batch, outcomes, strict=True):
            for entry in job.logged:  # commit, then publish, in commit order
                assert entry.recorded is not None
                try:
                    self._publish(entry.recorded)
                except Exception:
                    log.exception("publishing a committed event failed")
            if not job.future.done():  # the caller may have been cancelled; the unit's work stands
                job.future.set_result(outcome)

    async def _transaction(self, connection: asyncpg.Connection, batch: list[_Job[Any]]) -> list[Any]:
        outcomes: list[Any] = [None] * len(batch)
        async with connection.transaction():
            sends = [(i, job.send) for i, job in enumerate(batch) if job.send is not None]
            if sends:
                now = utcnow()
                for i, outcome, logged_send in sent(sends, await send_all(connection, sends, now), now):
                    outcomes[i] = outcome
                    if logged_send is not None:
                        batch[i].logged.append(logged_send)
            for i, job in enumerate(batch):
                if job.unit is not None:
                    outcomes[i] = await job.unit(connection, job.logged)
            logged = [entry for job in batch for entry in job.logged]
            if logged:
                last = int(await connection.fetchval(NEXT_POSITIONS, self.writer, len(logged)))
                first = last - len(logged) + 1
                rows = [entry.at(Pos(self.writer, n)) for n, entry in enumerate(logged, start=first)]
                await connection.execute(INSERT_LOG, *zip(*(log_row(row) for row in rows), strict=True))
        return outcomes

    # -- messages -----------------------------------------------------------------------------------------

    async def send_message(
        self, *, chat_id: uuid.UUID, sender_id: uuid.UUID, content: str, client_id: str | None
    ) -> Sent:
        job: _Job[Sent] = _Job(
            asyncio.get_running_loop().create_future(),
            send=SendInput(chat_id=chat_id, sender_id=sender_id, content=content, client_id=client_id),
        )
        return await self._queue(job)

    # -- chats and membership -------------------------------------------------------------------------------

    async def _program(self, make: Callable[[list[Logged]], Program[T]]) -> T:
        return await self._run(members.unit(make))

    async def record_chat_event(self, event: Event, *, chat_id: uuid.UUID, member: uuid.UUID | None) -> bool:
        async def unit(connection: asyncpg.Connection, logged: list[Logged]) -> bool:
            return log_at_seq(logged, event, await next_seq(connection, chat_id, member))

        return await self._run(unit)

    async def record_user_event(self, event: Event, *, user_id: uuid.UUID) -> None:
        async def unit(connection: asyncpg.Connection, logged: list[Logged]) -> None:
            logged.append(Logged(event, target_user_id=user_id))

        await self._run(unit)

    # -- users --------------------------------------------------------------------------------------------

    async def upsert_user(self, *, user_id: uuid.UUID, email: str, image_url: str | None, keep_image: bool) -> User:
        update = "email = excluded.email" + ("" if keep_image else ", image_url = excluded.image_url")

        async def unit(connection: asyncpg.Connection, logged: list[Logged]) -> User:
            row = await connection.fetchrow(
                "INSERT INTO users (id, email, image_url, created_at) VALUES ($1, $2, $3, $4) "
                f"ON CONFLICT (id) DO UPDATE SET {update} RETURNING email, image_url, created_at, last_seen",
                user_id,
                email,
                None if keep_image else image_url,
                utcnow(),
            )
            return User(
                id=user_id,
                email=row["email"],
                image_url=row["image_url"],
                created_at=row["created_at"],
                last_seen=row["last_seen"],
            )

        return await self._run(unit)

    async def touch_last_seen(self, *, user_id: uuid.UUID, when: datetime) -> None:
        async def unit(connection: asyncpg.Connection, logged: list[Logged]) -> None:
            await connection.execute("UPDATE users SET last_seen = $2 WHERE id = $1", user_id, when)

        await self._run(unit)

    async def user_chat_ids(self, *, user_id: uuid.UUID) -> list[uuid.UUID]:
        async with self._db.read() as session:
            rows = await session.execute(select(Member.chat_id).where(Member.user_id == user_id))
            return list(rows.scalars())

    async def stream_start(self, *, user_id: uuid.UUID) -> StreamStart:
        async with self._db.read() as session:
            chats = await session.execute(
                select(Member.chat_id, Member.joined_seq, Chat.is_group)
                .join(Chat, Chat.id == Member.chat_id)
                .where(Member.user_id == user_id)
            )
            blocked = await session.execute(select(UserBlock.blocked_id).where(UserBlock.blocker_id == user_id))
            return starting(chats.all(), list(blocked.scalars()))
