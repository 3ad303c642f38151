"""The PostgreSQL backend's statements (storage.postgres): the batched send, the writer's positions and log rows,
writer slots, and the small helpers that run them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from models import utcnow
from realtime.events import MessageData, NewMessage, UserRef
from storage.base import Logged, Refusal, Sent

# All the sends of a batch: $1 the units' indexes, $2 chats, $3 senders, $4 contents, $5 client ids, $6 new
# message ids, $7 the time. Each input row comes back once: 'new' with its seq and sender, 'retry' with the
# message stored earlier under the same client id, or nothing (refused: not a member, or not provisioned).
# Chats are locked in id order, so that two batches never wait for each other in a cycle.
SEND_BATCH = """
WITH input AS (
    SELECT * FROM unnest($1::int[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::uuid[])
        AS t(idx, chat_id, sender_id, content, client_id, message_id)
),
allowed AS MATERIALIZED (
    SELECT i.*, u.email, u.image_url FROM input i
    JOIN users u ON u.id = i.sender_id
    WHERE EXISTS (SELECT 1 FROM members m WHERE m.chat_id = i.chat_id AND m.user_id = i.sender_id)
    -- a 1:1 chat is read-only while one of its two members has left it (storage.membership)
    AND EXISTS (SELECT 1 FROM chats c WHERE c.id = i.chat_id
                AND (c.is_group OR (SELECT count(*) FROM members w WHERE w.chat_id = c.id) = 2))
),
retried AS MATERIALIZED (
    SELECT a.idx, a.email, a.image_url, m.id, m.seq, m.content, m.created_at, m.updated_at, m.edited_at, m.deleted_at
    FROM allowed a JOIN messages m
        ON m.chat_id = a.chat_id AND m.sender_id = a.sender_id AND m.client_id = a.client_id
),
fresh AS MATERIALIZED (
    SELECT a.* FROM allowed a WHERE NOT EXISTS (SELECT 1 FROM retried r WHERE r.idx = a.idx)
),
counts AS MATERIALIZED (SELECT chat_id, count(*) AS n FROM fresh GROUP BY chat_id),
locked AS MATERIALIZED (
    SELECT c.id FROM chats c WHERE c.id IN (SELECT chat_id FROM counts) ORDER BY c.id FOR UPDATE
),
bumped AS MATERIALIZED (
    UPDATE chats c SET last_seq = c.last_seq + k.n, updated_at = $7
    FROM counts k WHERE c.id = k.chat_id AND c.id IN (SELECT id FROM locked)
    RETURNING c.id, c.last_seq - k.n AS base
),
numbered AS MATERIALIZED (
    SELECT f.*, b.base + row_number() OVER (PARTITION BY f.chat_id ORDER BY f.idx) AS seq
    FROM fresh f JOIN bumped b ON b.id = f.chat_id
),
inserted AS (
    INSERT INTO messages (id, chat_id, seq, sender_id, content, client_id, created_at, updated_at)
    SELECT message_id, chat_id, seq, sender_id, content, client_id, $7, $7 FROM numbered
)
SELECT idx, seq, email, image_url, message_id AS id, false AS retry, NULL::text AS content,
       NULL::timestamptz AS created_at, NULL::timestamptz AS updated_at, NULL::timestamptz AS edited_at,
       NULL::timestamptz AS deleted_at FROM numbered
UNION ALL
SELECT idx, seq, email, image_url, id, true, content, created_at, updated_at, edited_at, deleted_at FROM retried
"""
# The writer's own counter: its row is touched by its holder only (a PostgreSQL advisory lock of the writer
# connection's session holds the slot), so no two processes ever wait on it.
NEXT_POSITIONS = "UPDATE writers SET last_n = last_n + $2 WHERE slot = $1 RETURNING last_n"
INSERT_LOG = """
INSERT INTO event_log (writer, n, chat_id, seq, target_user_id, subject_user_id, type, payload, created_at)
SELECT * FROM unnest($1::int[], $2::bigint[], $3::uuid[], $4::bigint[], $5::uuid[], $6::uuid[], $7::text[],
                     $8::text[], $9::timestamptz[])
"""
# Writer slots: advisory locks (class, slot) on the writer connection's session; a slot is free again when the
# session that held it ends (its process stopped or died).
SLOT_LOCK_CLASS = 7310002
MAX_WRITERS = 1024
CLAIM_SLOT = "SELECT pg_try_advisory_lock($1, $2)"
ADD_SLOT = "INSERT INTO writers (slot, last_n, floor_n) VALUES ($1, 0, 0) ON CONFLICT (slot) DO NOTHING"
NEXT_SEQ = "UPDATE chats SET last_seq = last_seq + 1, updated_at = $2 WHERE id = $1 RETURNING last_seq"
NEXT_SEQ_OF_MEMBER = (  # as SEND_BATCH: a member, and a 1:1 chat read-only while one of its two members has left
    "UPDATE chats SET last_seq = last_seq + 1, updated_at = $2 WHERE id = $1 "
    "AND EXISTS (SELECT 1 FROM members WHERE chat_id = $1 AND user_id = $3) "
    "AND (is_group OR (SELECT count(*) FROM members WHERE chat_id = $1) = 2) RETURNING last_seq"
)
IS_MEMBER = "SELECT 1 FROM members WHERE chat_id = $1 AND user_id = $2"


async def next_seq(connection: asyncpg.Connection, chat_id: uuid.UUID, member: uuid.UUID | None) -> int | None:
    if member is None:
        value = await connection.fetchval(NEXT_SEQ, chat_id, utcnow())
    else:
        value = await connection.fetchval(NEXT_SEQ_OF_MEMBER, chat_id, utcnow(), member)
    return None if value is None else int(value)


@dataclass(slots=True)
class SendInput:
    chat_id: uuid.UUID
    sender_id: uuid.UUID
    content: str
    client_id: str | None


async def send_all(connection: asyncpg.Connection, sends: list[tuple[int, SendInput]], now: datetime) -> list[Any]:
    """Run the batch's sends as one statement (SEND_BATCH): its rows."""
    inputs = [send for _, send in sends]
    return list(
        await connection.fetch(
            SEND_BATCH,
            [i for i, _ in sends],
            [s.chat_id for s in inputs],
            [s.sender_id for s in inputs],
            [s.content for s in inputs],
            [s.client_id for s in inputs],
            [uuid.uuid4() for _ in inputs],
            now,
        )
    )


def sent(sends: list[tuple[int, SendInput]], rows: list[Any], now: datetime) -> list[tuple[int, Sent, Logged | None]]:
    """Each send's outcome from the batch statement's rows, and the `NewMessage` to log for a new message."""
    by_index = {row["idx"]: row for row in rows}
    outcomes: list[tuple[int, Sent, Logged | None]] = []
    for i, send in sends:
        row = by_index.get(i)
        if row is None:
            outcomes.append((i, Sent(refused=Refusal.NOT_MEMBER), None))
            continue
        retry = row["retry"]
        data = MessageData(
            id=row["id"],
            chat_id=send.chat_id,
            seq=row["seq"],
            content=row["content"] if retry else send.content,
            created_at=row["created_at"] if retry else now,
            updated_at=row["updated_at"] if retry else now,
            sender=UserRef(id=send.sender_id, email=row["email"], image_url=row["image_url"]),
            client_id=send.client_id,
            edited_at=row["edited_at"],
            deleted_at=row["deleted_at"],
        )
        logged = None if retry else Logged(NewMessage(chat_id=send.chat_id, message=data), seq=data.seq)
        outcomes.append((i, Sent(message=data, retry=retry), logged))
    return outcomes


def log_row(row: dict[str, Any]) -> tuple[Any, ...]:
    """An `event_log` row (storage.base.Logged.at) as INSERT_LOG's parameters, in its column order."""
    return (
        row["writer"],
        row["n"],
        row["chat_id"],
        row["seq"],
        row["target_user_id"],
        row["subject_user_id"],
        row["type"],
        row["payload"],
        row["created_at"],
    )
