"""The storage seam's backends (SQLite and PostgreSQL): units share transactions and fail alone, a retried client
id answers with the first send, and what they store reads back through SQLAlchemy as it was returned."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from models import EventLog, Message, User, utcnow
from models.group_commit import GroupCommit, WriterClosed, sqlite_time
from server.config import Settings
from services import chats, messages, users
from services.auth import Actor
from services.errors import Forbidden
from services.runtime import Runtime
from services.views import MessageView
from tests.support import EVENT_TIMEOUT


async def member_pair(rt: Runtime) -> tuple[Actor, uuid.UUID]:
    ids = [uuid.uuid4(), uuid.uuid4()]
    for user_id in ids:
        await users.upsert_user(rt, actor=Actor.service(), user_id=user_id, email=f"{user_id.hex[:8]}@example.test")
    chat = await chats.create_chat(rt, actor=Actor.service(), member_ids=ids, name="pair", is_group=True)
    return Actor(user_id=ids[0]), chat.id


async def test_what_a_send_returns_is_what_reads_back(backend: Runtime) -> None:
    rt = backend
    sender, chat_id = await member_pair(rt)
    sent = await messages.send_message(rt, actor=sender, chat_id=chat_id, content="stored", client_id="c-1")
    async with rt.db.read() as session:
        stored = (await session.execute(select(Message).where(Message.id == sent.id))).scalar_one()
        logged = (
            await session.execute(select(EventLog).where(EventLog.chat_id == chat_id, EventLog.seq == sent.seq))
        ).scalar_one()
    assert (stored.chat_id, stored.seq, stored.sender_id, stored.content) == (chat_id, 1, sender.user_id, "stored")
    assert stored.created_at == sent.created_at and stored.created_at.tzinfo is not None
    assert logged.type == "new_message" and logged.created_at.tzinfo is not None
    page = await messages.list_messages(rt, actor=sender, chat_id=chat_id)
    # History adds the message's reactions (none) to what the send returned.
    assert page == [MessageView(**{f.name: getattr(sent, f.name) for f in dataclasses.fields(sent)})]


async def test_concurrent_sends_share_transactions_and_a_refused_one_fails_alone(backend: Runtime) -> None:
    rt = backend
    sender, chat_id = await member_pair(rt)
    outsider, _ = await member_pair(rt)
    store = rt.store
    before = store.transactions  # type: ignore[attr-defined]

    sends = [messages.send_message(rt, actor=sender, chat_id=chat_id, content=f"m{i}") for i in range(200)]
    sends.insert(100, messages.send_message(rt, actor=outsider, chat_id=chat_id, content="intruder"))
    results = await asyncio.gather(*sends, return_exceptions=True)

    refused = results.pop(100)
    assert isinstance(refused, Forbidden)
    assert sorted(r.seq for r in results) == list(range(1, 201))  # type: ignore[union-attr]
    assert store.transactions - before < 200 / 2, "sends waiting together should commit together"  # type: ignore[attr-defined]
    page = await messages.list_messages(rt, actor=sender, chat_id=chat_id, limit=200)
    assert [m.content for m in page] == [r.content for r in sorted(results, key=lambda r: r.seq)]  # type: ignore[union-attr]


async def test_retried_client_id_returns_the_first_send_even_in_the_same_batch(backend: Runtime) -> None:
    rt = backend
    sender, chat_id = await member_pair(rt)
    first, second = await asyncio.gather(
        messages.send_message(rt, actor=sender, chat_id=chat_id, content="once", client_id="same"),
        messages.send_message(rt, actor=sender, chat_id=chat_id, content="once", client_id="same"),
    )
    assert first == second
    later = await messages.send_message(rt, actor=sender, chat_id=chat_id, content="once", client_id="same")
    assert later == first
    assert len(await messages.list_messages(rt, actor=sender, chat_id=chat_id)) == 1
    other = await messages.send_message(rt, actor=sender, chat_id=chat_id, content="twice", client_id="other")
    assert other.seq == 2  # the retries took no seq


async def test_a_client_id_is_the_senders_own_and_a_retry_needs_the_sender_still_a_member(backend: Runtime) -> None:
    rt = backend
    first, chat_id = await member_pair(rt)
    view = await chats.get_chat(rt, actor=first, chat_id=chat_id)
    second = Actor(user_id=next(user.id for user in view.participants if user.id != first.user_id))
    mine = await messages.send_message(rt, actor=first, chat_id=chat_id, content="mine", client_id="same")
    theirs = await messages.send_message(rt, actor=second, chat_id=chat_id, content="theirs", client_id="same")
    assert (theirs.content, theirs.seq, theirs.sender.id) == ("theirs", 2, second.user_id)
    with pytest.raises(Forbidden):  # a user nobody provisioned sends nothing, with or without a client id
        await messages.send_message(
            rt, actor=Actor(user_id=uuid.uuid4()), chat_id=chat_id, content="x", client_id="same"
        )
    await chats.leave_chat(rt, actor=first, chat_id=chat_id)
    with pytest.raises(Forbidden):  # its retry is refused once the sender has left, like a new send
        await messages.send_message(rt, actor=first, chat_id=chat_id, content="mine", client_id="same")
    again = await messages.send_message(rt, actor=second, chat_id=chat_id, content="theirs", client_id="same")
    assert again == theirs and mine.seq == 1


async def test_several_sends_to_one_chat_in_one_batch_take_consecutive_seqs_in_order(backend: Runtime) -> None:
    rt = backend
    sender, chat_id = await member_pair(rt)
    results = await asyncio.gather(
        *(messages.send_message(rt, actor=sender, chat_id=chat_id, content=f"n{i}") for i in range(50))
    )
    assert [r.seq for r in results] == list(range(1, 51))  # in the order they were asked for


async def test_connection_reads_and_last_seen_read_back(backend: Runtime) -> None:
    rt = backend
    sender, chat_id = await member_pair(rt)
    assert sender.user_id is not None
    assert await chats.user_chat_ids(rt, user_id=sender.user_id) == [chat_id]
    when = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    await users.touch_last_seen(rt, user_id=sender.user_id, when=when)
    async with rt.db.read() as session:
        stored = await session.get(User, sender.user_id)
    assert stored is not None and stored.last_seen == when


def raw_rows(path: str, table: str, key: str, value: str) -> list[tuple[object, ...]]:
    """Each column of the matching rows as SQLite stores it: (type, value)."""
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
        typed = ", ".join(f"typeof({c}), {c}" for c in columns)
        return connection.execute(f"SELECT {typed} FROM {table} WHERE {key} = ?", (value,)).fetchall()


def shape(row: tuple[object, ...]) -> list[tuple[object, object]]:
    """Per column: SQLite type and, for text, its length — the stored format, whatever the value."""
    pairs = zip(row[::2], row[1::2], strict=True)
    return [(kind, len(value) if isinstance(value, str) else None) for kind, value in pairs]


async def test_sqlite_rows_have_the_formats_sqlalchemy_writes(tmp_path: Path) -> None:
    rt = Runtime(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'formats.db'}", secret_key="s" * 32))
    await rt.start()
    try:
        sender, chat_id = await member_pair(rt)
        raw = await messages.send_message(rt, actor=sender, chat_id=chat_id, content="raw", client_id="c-raw")
        now = utcnow()
        async with rt.db.write() as session:  # the same row, written by the ORM
            session.add(
                Message(
                    id=uuid.uuid4(),
                    chat_id=chat_id,
                    seq=2,
                    sender_id=sender.user_id,
                    content="orm",
                    client_id="c-orm",
                    created_at=now,
                    updated_at=now,
                )
            )
        path = str(tmp_path / "formats.db")
        raw_row, orm_row = (raw_rows(path, "messages", "client_id", c)[0] for c in ("c-raw", "c-orm"))
        assert shape(raw_row) == shape(orm_row)
        assert raw.seq == 1
    finally:
        await rt.stop()


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 3, 14, 51, 38, 940977, tzinfo=UTC),
        datetime(2026, 12, 3, 14, 51, 38, tzinfo=UTC),  # no microseconds: still six digits
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # a three-digit year: still four digits
        datetime(2026, 12, 3, 20, 21, 38, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_sqlite_time_is_the_utc_text_sqlalchemy_stores(moment: datetime) -> None:
    store = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert store is not None
    assert sqlite_time(moment) == store(moment.astimezone(UTC).replace(tzinfo=None))


async def test_a_failing_sqlite_unit_rolls_back_alone_inside_a_shared_transaction(tmp_path: Path) -> None:
    writer = GroupCommit(str(tmp_path / "plain.db"))
    try:
        await writer.run(lambda c: c.execute("CREATE TABLE t (x INTEGER CHECK (x > 0))"))

        def unit(x: int) -> Callable[[sqlite3.Connection], object]:
            """Insert |x|, then x: a negative x fails the unit after its first insert."""
            return lambda c: (
                c.execute("INSERT INTO t VALUES (?)", (abs(x),)),
                c.execute("INSERT INTO t VALUES (?)", (x,)),
            )

        results = await asyncio.gather(*(writer.run(unit(x)) for x in (1, -2, 3)), return_exceptions=True)
        assert isinstance(results[1], sqlite3.IntegrityError)
        assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)
        rows = await writer.run(lambda c: c.execute("SELECT x FROM t ORDER BY x").fetchall())
        assert rows == [(1,), (1,), (3,), (3,)]  # nothing of the failed unit, not even its first insert
    finally:
        writer.close()


async def test_a_failing_sqlite_unit_alone_in_its_transaction_leaves_nothing_and_the_next_commits(
    tmp_path: Path,
) -> None:
    writer = GroupCommit(str(tmp_path / "plain.db"))
    try:
        await writer.run(lambda c: c.execute("CREATE TABLE t (x INTEGER CHECK (x > 0))"))
        with pytest.raises(sqlite3.IntegrityError):  # its first insert went in, then its second failed
            await writer.run(lambda c: (c.execute("INSERT INTO t VALUES (2)"), c.execute("INSERT INTO t VALUES (-2)")))
        await writer.run(lambda c: c.execute("INSERT INTO t VALUES (3)"))
        rows = await writer.run(lambda c: c.execute("SELECT x FROM t ORDER BY x").fetchall())
        assert rows == [(3,)]
    finally:
        writer.close()


def insert(x: int) -> Callable[[sqlite3.Connection], object]:
    return lambda c: c.execute("INSERT INTO t VALUES (?)", (x,))


async def test_the_sqlite_writer_takes_what_waits_in_batches_of_at_most_max_batch(tmp_path: Path) -> None:
    writer = GroupCommit(str(tmp_path / "plain.db"), max_batch=2)
    started, release = threading.Event(), threading.Event()
    try:
        await writer.run(lambda c: c.execute("CREATE TABLE t (x INTEGER)"))

        def blocking(c: sqlite3.Connection) -> None:
            started.set()
            release.wait()  # the writer thread holds here while the next units queue up

        held = asyncio.ensure_future(writer.run(blocking))
        await asyncio.to_thread(started.wait)
        before = writer.transactions
        queued = [asyncio.ensure_future(writer.run(insert(x))) for x in range(5)]
        await asyncio.sleep(0)  # each task queues its unit on its first step
        release.set()
        await asyncio.gather(held, *queued)
        assert writer.transactions - before == 1 + 3  # the held unit alone, then the five queued meanwhile as 2 + 2 + 1
        assert await writer.run(lambda c: c.execute("SELECT x FROM t ORDER BY rowid").fetchall()) == [
            (x,) for x in range(5)
        ]
    finally:
        release.set()
        writer.close()


async def test_closing_the_sqlite_writer_finishes_the_queued_units_then_refuses_new_ones(tmp_path: Path) -> None:
    writer = GroupCommit(str(tmp_path / "plain.db"))
    await writer.run(lambda c: c.execute("CREATE TABLE t (x INTEGER)"))
    queued = [asyncio.ensure_future(writer.run(insert(x))) for x in range(3)]
    await asyncio.sleep(0)  # each task queues its unit on its first step
    await asyncio.to_thread(writer.close)
    await asyncio.gather(*queued)
    with pytest.raises(WriterClosed):
        await writer.run(lambda c: c.execute("INSERT INTO t VALUES (9)"))
    with sqlite3.connect(tmp_path / "plain.db") as check:
        assert check.execute("SELECT x FROM t ORDER BY x").fetchall() == [(0,), (1,), (2,)]
    writer.close()  # again: nothing to do


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def within(timeout: float, condition: Callable[[], bool]) -> bool:
    """Whether `condition` holds within `timeout` seconds (looked at every 10 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def fill(writer: GroupCommit, transactions: int) -> None:
    """`transactions` commits of one row of ~3 KB each: a WAL page or more apiece."""
    await writer.run(lambda c: c.execute("CREATE TABLE t (x BLOB)"))
    for _ in range(transactions):
        await writer.run(lambda c: c.execute("INSERT INTO t VALUES (zeroblob(3000))"))


async def test_a_commit_leaves_the_wal_checkpoint_to_the_checkpointer(tmp_path: Path) -> None:
    """SQLite copies the WAL into the database in the commit that takes it past 1,000 pages, and that commit's
    callers wait meanwhile. Here no commit does: with no checkpoint asked for, 3,000 commits stay in the WAL."""
    path = tmp_path / "plain.db"
    writer = GroupCommit(str(path), checkpoint_changes=10**9)
    try:
        await fill(writer, 3000)
        assert file_size(Path(f"{path}-wal")) > 2500 * 4096 and file_size(path) < 1_000_000
        assert writer.checkpoints == 0
    finally:
        writer.close()
    # The last connection's close checkpoints it all: every row is in the database file.
    assert file_size(path) >= 3000 * 3000
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (3000,)


async def test_the_checkpointer_copies_the_wal_into_the_database_beside_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    writer = GroupCommit(str(path), checkpoint_changes=100)
    try:
        await fill(writer, 3000)
        # The checkpointer runs on its own thread: wait for its copy to land.
        assert await asyncio.to_thread(within, EVENT_TIMEOUT, lambda: file_size(path) >= 3000 * 3000)
        assert file_size(path) >= 3000 * 3000 and writer.checkpoints >= 1
    finally:
        writer.close()
