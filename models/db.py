"""The engine and the unit-of-work sessions.

`Database.read()` and `Database.write()` each give one session for one unit of work. On SQLite a write
transaction starts with `BEGIN IMMEDIATE`: the default deferred transaction upgrades its read lock to a
write lock late and fails or loses read-modify-write updates under concurrency (docs/library-notes.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from models import migrate
from models.group_commit import PRAGMAS as SQLITE_PRAGMAS

# The read pool: its connections and the overflow it may open beyond them. Readers past that wait for a slot in
# order (`Database.read`), not in the pool, whose checkout gives up after 30 s: in a reconnect storm thousands of
# resuming clients each read what they missed, and every one of them must get its answer.
READ_POOL, READ_OVERFLOW = 10, 10
# Whether this task holds a read slot already: a read inside a read takes none (it would wait for itself).
_holding_slot: ContextVar[bool] = ContextVar("holding_read_slot", default=False)


def _sqlite_engine(url: str, *, begin: str) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=READ_POOL, max_overflow=READ_OVERFLOW)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (the driver's implicit BEGIN is always deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


class Database:
    """Owns the engine(s) and hands out one session per unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self._read_engine = _sqlite_engine(url, begin="BEGIN")
            self._write_engine = _sqlite_engine(url, begin="BEGIN IMMEDIATE")
        else:
            # pool_pre_ping: a server restart costs one failed checkout, not one failed request.
            self._read_engine = self._write_engine = create_async_engine(
                url, pool_pre_ping=True, pool_size=READ_POOL, max_overflow=READ_OVERFLOW
            )
        # The file of a SQLite database (None for PostgreSQL, and for an in-memory or URI database).
        path = make_url(url).database if self.is_sqlite else None
        self.sqlite_path = path if path and path != ":memory:" and not path.startswith("file:") else None
        self._read = async_sessionmaker(self._read_engine, expire_on_commit=False)
        self._write = async_sessionmaker(self._write_engine, expire_on_commit=False)
        self._read_slots = asyncio.Semaphore(READ_POOL + READ_OVERFLOW)

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if _holding_slot.get():
            yield
            return
        async with self._read_slots:
            token = _holding_slot.set(True)
            try:
                yield
            finally:
                _holding_slot.reset(token)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._slot(), self._read() as session:
            yield session

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read of several statements that all see one moment: a `myChats` whose unread counts and last
        messages agree. A SQLite read transaction is one snapshot already; PostgreSQL's default (READ COMMITTED)
        takes a new one per statement, so this asks for REPEATABLE READ."""
        async with self._slot(), self._read() as session:
            if not self.is_sqlite:
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write unit of work: commits when the block ends normally, rolls back on error."""
        async with self._write() as session, session.begin():
            yield session

    async def create_schema(self) -> None:
        """Apply the migrations (models.migrate)."""
        async with self._write_engine.begin() as conn:
            await conn.run_sync(migrate.upgrade)

    def insert(self, table: Any) -> Any:
        """This database's INSERT with ON CONFLICT support."""
        return sqlite_insert(table) if self.is_sqlite else pg_insert(table)

    async def ping(self) -> None:
        async with self._read_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            await self._read_engine.dispose()
