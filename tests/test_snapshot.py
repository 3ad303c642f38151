"""`Database.snapshot()`: a read of several statements that all see one moment (a consistent `myChats`: its
unread counts and last messages come from separate statements), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from models import Database, User


async def count_users(session: object) -> int:
    return int((await session.execute(select(func.count()).select_from(User))).scalar_one())  # type: ignore[attr-defined]


async def test_a_snapshot_does_not_see_what_commits_while_it_reads(database_url: str) -> None:
    db = Database(database_url)
    await db.create_schema()
    try:
        async with db.snapshot() as session:
            before = await count_users(session)
            async with db.write() as writer:
                writer.add(User(id=uuid.uuid4(), email=f"snapshot-{uuid.uuid4().hex[:8]}@example.test"))
            assert await count_users(session) == before, "a second statement saw a later commit"
        async with db.read() as session:
            assert await count_users(session) == before + 1
    finally:
        await db.dispose()
