"""Group commit for SQLite: one thread, one write connection, many units of work per transaction.

It runs the hot writes (sends, last-seen stamps) and the first read of every connection (the user's chats),
which would otherwise queue for the engine's small pool in a reconnect storm.

A send through SQLAlchemy's async engine and aiosqlite costs a thread hop and a few hundred microseconds of
statement building per statement; a send is five statements. Here the hot writes are plain `sqlite3` units
of work (functions of a connection) queued to one writer thread, which runs every unit waiting at that
moment in one `BEGIN IMMEDIATE … COMMIT`, each inside its own savepoint — a unit that fails rolls back alone;
a transaction of one unit needs none, it rolls back whole — and hands the outcomes back to the event loop in
one call, in commit order. Nothing waits to fill a batch: while one transaction commits, the next batch queues up
by itself. WAL checkpoints (copying committed pages into the database file, and syncing it) run on a second thread
with a connection of its own, asked for every CHECKPOINT_CHANGES changed rows, so no commit waits for one.

The stored formats must be SQLAlchemy's (the rest of the code reads these rows through it): `sqlite_uuid`
and `sqlite_time` write them, and a test compares the rows with the ORM's.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[sqlite3.Connection], T]

# A transaction holds at most this many units: a burst still commits in bounded time and memory.
MAX_BATCH = 500
# WAL checkpoints run on a thread of their own, asked for after this many rows changed (~80 sends, ~800 WAL pages):
# a commit that crossed SQLite's own threshold would otherwise copy the WAL into the database and sync it before
# its unit's caller resumed (~3 ms: the tail of every send's latency). The writer's own checkpoint stays as a
# backstop, at ten times SQLite's default, for a checkpointer that cannot catch up (writes without a pause).
CHECKPOINT_CHANGES = 300
WRITER_AUTOCHECKPOINT_PAGES = 10_000
# How long a SQLite writer waits for the write lock before failing: long enough to ride out a burst
# of hundreds of queued writers, short enough that a stuck process shows up as an error.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Every SQLite connection of the process (this writer's and the SQLAlchemy engines', models.db): WAL + NORMAL,
# so a committed transaction survives a process crash (SIGKILL) — only an OS crash or power loss can drop the
# last transactions —, foreign keys enforced, a patient writer.
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
)


def sqlite_uuid(value: uuid.UUID) -> str:
    """A UUID as SQLAlchemy's `Uuid` stores it on SQLite: 32 hex digits."""
    return value.hex


def sqlite_time(value: datetime) -> str:
    """An aware datetime as SQLAlchemy's `DateTime` stores it on SQLite: UTC, no zone, microseconds, a four-digit
    year (`isoformat`: a third cheaper than `strftime`, and this runs twice per send). A UTC time is rendered with
    its zone and the zone cut off (26 characters before it): half the cost of converting it to a naive one first."""
    if value.tzinfo is UTC:
        return value.isoformat(" ", "microseconds")[:26]
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class WriterClosed(Exception):
    """The writer was stopped: the unit was not run."""


@dataclass(slots=True)
class _Job(Generic[T]):
    unit: Unit[T]
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop
    # Runs on the event loop right after the commit, in commit order, even if the caller stopped waiting.
    committed: Callable[[T], None] | None


class GroupCommit:
    def __init__(self, path: str, *, max_batch: int = MAX_BATCH, checkpoint_changes: int = CHECKPOINT_CHANGES) -> None:
        self.path = path
        self.max_batch = max_batch
        self.checkpoint_changes = checkpoint_changes
        # The queue to the writer thread: `queue.SimpleQueue` is C (a put wakes the thread with one lock release),
        # where a `threading.Condition` runs a few dozen lines of Python on both threads per unit (it allocates a
        # lock per wait). `None` after the last job: the thread stops there.
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        # Guards `_closed` and the thread's start: no job is queued after `None`.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.transactions = 0
        self.units = 0
        # The checkpointer: woken by the writer; `_closed` (under `_lock`) and a last wake stop it.
        self._checkpoint_due = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self.checkpoints = 0

    async def run(self, unit: Unit[T], *, committed: Callable[[T], None] | None = None) -> T:
        """Run `unit(connection)` in the next transaction; its result once that transaction has committed.

        `committed(result)` is called on the event loop after the commit, before the caller resumes, in
        commit order — the place to publish what the unit recorded."""
        loop = asyncio.get_running_loop()
        job = _Job(unit, loop.create_future(), loop, committed)
        with self._lock:
            if self._closed:
                raise WriterClosed("the database writer is stopped")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="sqlite-group-commit", daemon=True)
                self._thread.start()
                self._checkpointer = threading.Thread(target=self._checkpoint, name="sqlite-checkpoint", daemon=True)
                self._checkpointer.start()
            self._jobs.put(job)
        result: T = await job.future
        return result

    def close(self) -> None:
        """Finish the queued units, then stop the thread."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._jobs.put(None)
            thread, checkpointer = self._thread, self._checkpointer
        if thread is not None:
            thread.join()
        if checkpointer is not None:
            self._checkpoint_due.set()
            checkpointer.join()

    # -- the writer thread ---------------------------------------------------------------------------

    def _work(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in PRAGMAS:
                connection.execute(pragma)
            connection.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")
            jobs, last, changes_checkpointed = self._jobs, False, 0
            while not last:
                first = jobs.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < self.max_batch and not jobs.empty():  # every unit waiting now, at most max_batch
                    waiting = jobs.get_nowait()  # this thread alone takes from the queue: not empty means one is there
                    if waiting is None:
                        last = True
                        break
                    batch.append(waiting)
                outcomes = self._transaction(connection, batch)
                if connection.total_changes - changes_checkpointed >= self.checkpoint_changes:
                    changes_checkpointed = connection.total_changes
                    self._checkpoint_due.set()
                by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job[Any], tuple[bool, Any]]]] = {}
                for job, outcome in zip(batch, outcomes, strict=True):
                    by_loop.setdefault(job.loop, []).append((job, outcome))
                for loop, settled in by_loop.items():
                    try:
                        loop.call_soon_threadsafe(_settle, settled)
                    except RuntimeError:  # that event loop is closed: nobody is waiting
                        pass
        finally:
            connection.close()

    def _checkpoint(self) -> None:
        """The checkpointer's thread: copy the WAL's committed pages into the database when the writer asks,
        beside the writer (PASSIVE: it waits for no one, and nobody waits for it). Once it has copied everything, the
        writer's next transaction starts the WAL over from its beginning. Its connection opens at the first request,
        once the writer has put the database in WAL mode (two connections switching the mode at once deadlock)."""
        connection: sqlite3.Connection | None = None
        try:
            while True:
                self._checkpoint_due.wait()
                self._checkpoint_due.clear()
                with self._lock:
                    if self._closed and (self._thread is None or not self._thread.is_alive()):
                        return
                try:
                    if connection is None:
                        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # the writer's backstop checkpoint still bounds the WAL
                    log.warning("WAL checkpoint failed: %r", exc)
        finally:
            if connection is not None:
                connection.close()

    def _transaction(self, connection: sqlite3.Connection, batch: list[_Job[Any]]) -> list[tuple[bool, Any]]:
        try:
            connection.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:
                outcome = _alone(connection, batch[0])
                if not outcome[0]:
                    return [outcome]
                outcomes = [outcome]
            else:
                outcomes = [_in_savepoint(connection, job) for job in batch]
            connection.execute("COMMIT")
        except Exception as exc:  # BEGIN or COMMIT failed (disk full, lock timeout): nothing here is durable
            log.warning("group commit of %d units failed: %r", len(batch), exc)
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            return [(False, exc)] * len(batch)
        self.transactions += 1
        self.units += len(batch)
        return outcomes


def _in_savepoint(connection: sqlite3.Connection, job: _Job[Any]) -> tuple[bool, Any]:
    """Run one unit of a batch in its own savepoint: if it fails, it rolls back alone."""
    connection.execute("SAVEPOINT unit")
    try:
        outcome: tuple[bool, Any] = (True, job.unit(connection))
    except Exception as exc:
        connection.execute("ROLLBACK TO unit")
        outcome = (False, exc)
    connection.execute("RELEASE unit")
    return outcome


def _alone(connection: sqlite3.Connection, job: _Job[Any]) -> tuple[bool, Any]:
    """Run the only unit of a transaction: the transaction is its savepoint (two statements fewer per commit, which
    is every commit when writes arrive one at a time). If it fails, the transaction rolls back."""
    try:
        return True, job.unit(connection)
    except Exception as exc:
        connection.execute("ROLLBACK")
        return False, exc


def _settle(settled: list[tuple[_Job[Any], tuple[bool, Any]]]) -> None:
    """On the event loop: publish what committed, in commit order, then wake the callers."""
    for job, (ok, value) in settled:
        if ok and job.committed is not None:
            try:
                job.committed(value)
            except Exception:
                log.exception("after-commit step failed")
        if job.future.done():  # the caller was cancelled; the unit's work stands
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)
