"""Group commit for SQLite: one write connection, many units of work per transaction.

It runs the hot writes (sends, last-seen stamps) and the first read of every connection (the user's chats),
which would otherwise queue for the engine's small pool in a reconnect storm.

A send through SQLAlchemy's async engine and aiosqlite costs a thread hop and a few hundred microseconds of
statement building per statement; a send is five statements. Here the hot writes are plain `sqlite3` units
of work (functions of a connection), and every unit waiting at a moment runs in one `BEGIN IMMEDIATE … COMMIT`,
each inside its own savepoint — a unit that fails rolls back alone; a transaction of one unit needs none, it
rolls back whole — and the outcomes go back to their callers in commit order.

Where a transaction runs depends on the load. The units queued during one turn of the event loop are looked at
together at its next turn: a few (at most INLINE_MAX) with the writer thread idle run right there, on the event
loop — at light load, one send every few milliseconds, the hop to a thread and back (two wake-ups, a second
thread's cold caches) costs more than the unit. More than that, or any while the thread still has units, go to
the writer thread, which takes every unit waiting when it looks, so under load what queues behind one commit
becomes the next commit. The event loop never waits for the database's write lock: its connection's busy
timeout is zero, and a batch that finds the lock held by another process goes to the thread, which waits for
it. Either way the connection is used by one thread at a time (`_use`), and a batch runs on the loop only when
everything handed to the thread has been settled, so commits are published in commit order.

WAL checkpoints (copying committed pages into the database file, and syncing it) run on a second thread with a
connection of its own, asked for every CHECKPOINT_CHANGES changed rows, so no commit waits for one.

The stored formats must be SQLAlchemy's (the rest of the code reads these rows through it): `sqlite_uuid`
and `sqlite_time` write them, and a test compares the rows with the ORM's.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
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
# At most this many units waiting together run on the event loop (when the writer thread is idle): a send takes
# ~50-150 µs there, so the loop is held well under a millisecond; a bigger batch goes to the thread.
INLINE_MAX = 4
# A unit arriving this long (seconds) after the last transaction on the event loop runs at once; one arriving sooner
# waits for the rest of the loop's turn, so that a burst still commits together.
QUIET = 0.001
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
    def __init__(
        self,
        path: str,
        *,
        max_batch: int = MAX_BATCH,
        checkpoint_changes: int = CHECKPOINT_CHANGES,
        inline_max: int = INLINE_MAX,
        quiet: float = QUIET,
    ) -> None:
        self.path = path
        self.max_batch = max_batch
        self.checkpoint_changes = checkpoint_changes
        self.inline_max = inline_max
        self.quiet = quiet
        # The queue to the writer thread: `queue.SimpleQueue` is C (a put wakes the thread with one lock release),
        # where a `threading.Condition` runs a few dozen lines of Python on both threads per unit (it allocates a
        # lock per wait). `None` after the last job: the thread stops there.
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        # Guards `_closed`, the threads' start, `_waiting` and `_handed`: no job is queued after `None`.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        # The event loop that may run units itself (the first to use the writer), its units queued during this turn
        # (run or handed over at the next, by `_dispatch`), and the units handed to the thread and not yet settled.
        self._home: asyncio.AbstractEventLoop | None = None
        self._waiting: list[_Job[Any]] = []
        self._handed = 0
        self._last_here = -quiet
        # The write connection, opened by its first user; whoever runs a transaction on it holds `_use`.
        self._use = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._changes_checkpointed = 0
        self.transactions = 0
        self.units = 0
        # The checkpointer: woken by whoever committed; `_closed` (under `_lock`) and a last wake stop it.
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
                self._home = loop
                self._thread = threading.Thread(target=self._work, name="sqlite-group-commit", daemon=True)
                self._thread.start()
                self._checkpointer = threading.Thread(target=self._checkpoint, name="sqlite-checkpoint", daemon=True)
                self._checkpointer.start()
            if loop is not self._home or self.inline_max == 0:
                self._hand(job)
                here = False
            else:
                # Right now if the writer is quiet (nothing waiting, nothing handed over, no transaction here in the
                # last `quiet` seconds); otherwise with whatever else queues during this turn of the loop.
                here = (
                    not self._waiting
                    and self._handed == 0
                    and time.monotonic() - self._last_here >= self.quiet
                    and self._use.acquire(blocking=False)
                )
                if not here:
                    self._waiting.append(job)
                    if len(self._waiting) == 1:
                        loop.call_soon(self._dispatch)
        if here:
            self._run_here([job])
        result: T = await job.future
        return result

    def close(self) -> None:
        """Finish the queued units, then stop the thread."""
        with self._lock:
            if not self._closed:
                self._closed = True
                for job in self._waiting:  # accepted before the close: the thread runs them before it stops
                    self._hand(job)
                self._waiting = []
                self._jobs.put(None)
            thread, checkpointer = self._thread, self._checkpointer
        if thread is not None:
            thread.join()
        if checkpointer is not None:
            self._checkpoint_due.set()
            checkpointer.join()

    def _hand(self, job: _Job[Any]) -> None:
        """Queue `job` to the writer thread (under `_lock`)."""
        self._handed += 1
        self._jobs.put(job)

    # -- the event loop --------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """At the turn after units were queued: run them here if they are few and the thread is idle, else hand
        them to the thread."""
        with self._lock:
            batch, self._waiting = self._waiting, []
            here = (
                bool(batch)
                and self._handed == 0
                and len(batch) <= self.inline_max
                and self._use.acquire(blocking=False)
            )
            if not here:
                for job in batch:
                    self._hand(job)
                return
        self._run_here(batch)

    def _run_here(self, batch: list[_Job[Any]]) -> None:
        """Run `batch` on the event loop (the caller acquired `_use`); if another process holds the write lock,
        hand it to the thread, which waits for the lock."""
        try:
            outcomes = self._transaction(batch, patient=False)
            self._last_here = time.monotonic()
        finally:
            self._use.release()
        if outcomes is not None:
            _settle(list(zip(batch, outcomes, strict=True)))
            return
        with self._lock:
            if not self._closed:
                for job in batch:
                    self._hand(job)
                return
        for job in batch:  # closed meanwhile: the thread is gone or going
            if not job.future.done():
                job.future.set_exception(WriterClosed("the database writer stopped while the database was locked"))

    def _settle_handed(self, settled: list[tuple[_Job[Any], tuple[bool, Any]]]) -> None:
        with self._lock:
            self._handed -= len(settled)
        _settle(settled)

    # -- the writer thread ---------------------------------------------------------------------------

    def _work(self) -> None:
        jobs, last = self._jobs, False
        try:
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
                with self._use:
                    outcomes = self._transaction(batch, patient=True)
                assert outcomes is not None  # a patient transaction always runs
                by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job[Any], tuple[bool, Any]]]] = {}
                for job, outcome in zip(batch, outcomes, strict=True):
                    by_loop.setdefault(job.loop, []).append((job, outcome))
                for loop, settled in by_loop.items():
                    try:
                        loop.call_soon_threadsafe(self._settle_handed, settled)
                    except RuntimeError:  # that event loop is closed: nobody is waiting
                        pass
        finally:
            with self._use:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

    def _checkpoint(self) -> None:
        """The checkpointer's thread: copy the WAL's committed pages into the database when asked, beside the
        writer (PASSIVE: it waits for no one, and nobody waits for it). Once it has copied everything, the
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

    # -- either ----------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """The write connection (the caller holds `_use`). Its busy timeout is zero: a transaction on the event
        loop must not wait for another process's write lock; the thread's raise it for their own."""
        if self._connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in PRAGMAS:
                connection.execute(pragma)
            connection.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")
            connection.execute("PRAGMA busy_timeout=0")
            self._connection = connection
        return self._connection

    def _transaction(self, batch: list[_Job[Any]], *, patient: bool) -> list[tuple[bool, Any]] | None:
        """Run `batch` in one transaction (the caller holds `_use`). A `patient` one waits up to
        SQLITE_BUSY_TIMEOUT_MS for the database's write lock; an impatient one answers None at once if another
        process holds it, having run nothing."""
        try:
            connection = self._connect()
            if patient:
                connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not patient and exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                    return None
                raise
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
            if self._connection is not None and self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            return [(False, exc)] * len(batch)
        finally:
            if patient and self._connection is not None:
                self._connection.execute("PRAGMA busy_timeout=0")
        self.transactions += 1
        self.units += len(batch)
        if connection.total_changes - self._changes_checkpointed >= self.checkpoint_changes:
            self._changes_checkpointed = connection.total_changes
            self._checkpoint_due.set()
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
