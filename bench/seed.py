"""Provision the product's database before it starts, and sign the users' tokens.

Creating 10,000 users through `upsertUser` over HTTP takes minutes; the bench instead creates the schema
with the product's own `Database` and bulk-inserts rows into the product's own tables. Chats made this way
have no `chat_created` event in the log, which only matters to a client resuming from before the bench.
Tokens are signed by `services.auth`, as `python cli.py token` signs them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import insert

from bench.plan import Plan
from models import Chat, Database, Member, User, utcnow
from services.auth import issue_user_token

# Longer than any run; the server checks `exp` on every connection.
TOKEN_TTL = timedelta(hours=6)
# Rows per INSERT: SQLite allows 32,766 bound parameters per statement.
BATCH = 2000


def group_row(chat_id: uuid.UUID, name: str | None, now: datetime) -> dict[str, object]:
    """A `chats` row of a group with no messages yet, made by no one in particular."""
    return {
        "id": chat_id,
        "name": name,
        "is_group": True,
        "created_by": None,
        "direct_key": None,
        "created_at": now,
        "updated_at": now,
        "last_seq": 0,
    }


async def seed_database(database_url: str, plan: Plan) -> None:
    db = Database(database_url)
    try:
        await db.create_schema()
        now = utcnow()
        users = [
            {"id": uuid.UUID(plan.user(i)), "email": f"bench{i}@example.test", "image_url": None, "created_at": now}
            for i in range(plan.users)
        ]
        chats = []
        members = []
        for chat_id, member_indexes in plan.chats():
            cid = uuid.UUID(chat_id)
            chats.append(group_row(cid, f"bench {len(chats)}", now))
            members += [
                {
                    "chat_id": cid,
                    "user_id": uuid.UUID(plan.user(i)),
                    "joined_at": now,
                    "last_read_seq": 0,
                    "joined_seq": 0,
                }
                for i in member_indexes
            ]
        async with db.write() as session:
            for table, rows in ((User, users), (Chat, chats), (Member, members)):
                for start in range(0, len(rows), BATCH):
                    await session.execute(insert(table), rows[start : start + BATCH])
    finally:
        await db.dispose()


def user_tokens(plan: Plan, key: str) -> list[str]:
    """Every user's token, by user index."""
    return [issue_user_token(plan.user(i), key=key, ttl=TOKEN_TTL) for i in range(plan.users)]
