"""The SQLite group commit: units share transactions, fail alone, and write the rows SQLAlchemy would write."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from models import EventLog, Message, User
from models.group_commit import GroupCommit
from services import chats, messages, users
from services.auth import Actor
from services.errors import Forbidden
from services.runtime import Runtime


async def member_pair(rt: Runtime) -> tuple[Actor, uuid.UUID]:
    ids = [uuid.uuid4(), uuid.uuid4()]
    for user_id in ids:
        await users.upsert_user(rt, actor=Actor.service(), user_id=user_id, email=f"{user_id.hex[:8]}@example.test")
    chat = await chats.create_chat(rt, actor=Actor.service(), member_ids=ids, name="pair", is_group=True)
    return Actor(user_id=ids[0]), chat.id


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


async def test_group_committed_send_stores_the_rows_the_orm_path_stores(rt: Runtime) -> None:
    assert rt.db.group_commit is not None
    sender, chat_id = await member_pair(rt)
    fast = await messages.send_message(rt, actor=sender, chat_id=chat_id, content="fast", client_id="c-fast")
    writer, rt.db.group_commit = rt.db.group_commit, None  # the SQLAlchemy path, for comparison
    try:
        slow = await messages.send_message(rt, actor=sender, chat_id=chat_id, content="slow", client_id="c-slow")
    finally:
        rt.db.group_commit = writer
    assert (fast.seq, slow.seq) == (1, 2)

    path = rt.db.group_commit.path
    fast_row, slow_row = (raw_rows(path, "messages", "client_id", c)[0] for c in ("c-fast", "c-slow"))
    assert shape(fast_row) == shape(slow_row)
    fast_log, slow_log = (raw_rows(path, "event_log", "seq", str(s))[0] for s in (1, 2))
    assert shape(fast_log) == shape(slow_log)

    # Read back through SQLAlchemy: what the send returned is what is stored.
    async with rt.db.read() as session:
        stored = (await session.execute(select(Message).where(Message.id == fast.id))).scalar_one()
        logged = (await session.execute(select(EventLog).where(EventLog.seq == 1))).scalar_one()
    assert (stored.chat_id, stored.seq, stored.sender_id, stored.content) == (chat_id, 1, sender.user_id, "fast")
    assert stored.created_at == fast.created_at and stored.created_at.tzinfo is not None
    assert logged.chat_id == chat_id and logged.type == "new_message" and logged.created_at.tzinfo is not None
    page = await messages.list_messages(rt, actor=sender, chat_id=chat_id)
    assert [m.id for m in page] == [fast.id, slow.id]
    assert page[0] == fast


async def test_concurrent_sends_share_transactions_and_a_refused_one_fails_alone(rt: Runtime) -> None:
    sender, chat_id = await member_pair(rt)
    outsider, _ = await member_pair(rt)
    writer = rt.db.group_commit
    assert writer is not None
    before = writer.transactions

    sends = [messages.send_message(rt, actor=sender, chat_id=chat_id, content=f"m{i}") for i in range(200)]
    sends.insert(100, messages.send_message(rt, actor=outsider, chat_id=chat_id, content="intruder"))
    results = await asyncio.gather(*sends, return_exceptions=True)

    refused = results.pop(100)
    assert isinstance(refused, Forbidden)
    assert sorted(r.seq for r in results) == list(range(1, 201))  # type: ignore[union-attr]
    assert writer.transactions - before < 200 / 2, "sends waiting together should commit together"
    page = await messages.list_messages(rt, actor=sender, chat_id=chat_id, limit=200)
    assert [m.content for m in page] == [r.content for r in sorted(results, key=lambda r: r.seq)]  # type: ignore[union-attr]


async def test_retried_client_id_returns_the_first_send(rt: Runtime) -> None:
    sender, chat_id = await member_pair(rt)
    first, second = await asyncio.gather(
        messages.send_message(rt, actor=sender, chat_id=chat_id, content="once", client_id="same"),
        messages.send_message(rt, actor=sender, chat_id=chat_id, content="once", client_id="same"),
    )
    assert first == second
    assert len(await messages.list_messages(rt, actor=sender, chat_id=chat_id)) == 1


async def test_a_failing_unit_rolls_back_alone_inside_a_shared_transaction(tmp_path: Path) -> None:
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


async def test_connection_set_up_reads_and_last_seen_go_through_the_writer_and_read_back(rt: Runtime) -> None:
    sender, chat_id = await member_pair(rt)
    assert sender.user_id is not None
    assert await chats.user_chat_ids(rt, user_id=sender.user_id) == [chat_id]
    when = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    await users.touch_last_seen(rt, user_id=sender.user_id, when=when)
    async with rt.db.read() as session:
        stored = await session.get(User, sender.user_id)
    assert stored is not None and stored.last_seen == when
