"""The SQLite backend's send (storage.sqlite runs it on the group commit's thread: the hot path, in plain `sqlite3`),
and the chat's next seq, which the units that log a chat event take. The other units of work on messages are
written once for every backend (storage.messaging)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime

from models import utcnow
from models.group_commit import sqlite_time, sqlite_uuid
from realtime.events import MessageData, NewMessage, UserRef
from storage.base import Logged, Refusal, Sent

_IS_MEMBER = "SELECT 1 FROM members WHERE chat_id = ? AND user_id = ?"
_NEXT_SEQ = "UPDATE chats SET last_seq = last_seq + 1, updated_at = ? WHERE id = ? RETURNING last_seq"
# A member's event (a send): in a group, or in a 1:1 chat both of whose members are in it — after one leaves, it is
# read-only for the other until they come back (storage.membership).
_NEXT_SEQ_OF_MEMBER = (
    "UPDATE chats SET last_seq = last_seq + 1, updated_at = ? "
    "WHERE id = ? AND EXISTS (SELECT 1 FROM members WHERE chat_id = ? AND user_id = ?) "
    "AND (is_group OR (SELECT count(*) FROM members WHERE chat_id = chats.id) = 2) RETURNING last_seq"
)
# The sender, and the message an earlier send with the same client id stored (a retry), in one statement: every
# statement is a step of SQLite with the GIL released and taken back, a cost on the event loop's thread too. No
# client id (NULL) matches no message.
_SENDER_AND_RETRIED = (
    "SELECT u.email, u.image_url, m.id, m.seq, m.content, m.created_at, m.updated_at, m.edited_at, m.deleted_at "
    "FROM users u LEFT JOIN messages m ON m.chat_id = ? AND m.sender_id = u.id AND m.client_id = ? WHERE u.id = ?"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (id, chat_id, seq, sender_id, content, client_id, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=utcnow().tzinfo)


def _parse_optional(value: str | None) -> datetime | None:
    return None if value is None else parse_time(value)


def next_seq(
    connection: sqlite3.Connection, chat_id: uuid.UUID, member: uuid.UUID | None, *, stamp: str | None = None
) -> int | None:
    """Take the chat's next seq (only if `member` is a member of it, when given) and stamp the chat as updated at
    `stamp` (now if None); None without one."""
    chat = sqlite_uuid(chat_id)
    if stamp is None:
        stamp = sqlite_time(utcnow())
    if member is None:
        row = connection.execute(_NEXT_SEQ, (stamp, chat)).fetchone()
    else:
        row = connection.execute(_NEXT_SEQ_OF_MEMBER, (stamp, chat, chat, sqlite_uuid(member))).fetchone()
    return None if row is None else int(row[0])


def send(
    connection: sqlite3.Connection,
    logged: list[Logged],
    *,
    chat_id: uuid.UUID,
    sender_id: uuid.UUID,
    content: str,
    client_id: str | None,
) -> Sent:
    chat, sender = sqlite_uuid(chat_id), sqlite_uuid(sender_id)
    who = connection.execute(_SENDER_AND_RETRIED, (chat, client_id, sender)).fetchone()
    if who is None:
        return Sent(refused=Refusal.NOT_PROVISIONED)  # (a message's sender is a user: no retry without one)
    email, image, retried_id, retried_seq, text, created, updated, edited, deleted = who
    if retried_id is not None:
        if connection.execute(_IS_MEMBER, (chat, sender)).fetchone() is None:
            return Sent(refused=Refusal.NOT_MEMBER)
        data = MessageData(
            id=uuid.UUID(hex=retried_id),
            chat_id=chat_id,
            seq=retried_seq,
            content=text,
            created_at=parse_time(created),
            updated_at=parse_time(updated),
            sender=UserRef(id=sender_id, email=email, image_url=image),
            client_id=client_id,
            edited_at=_parse_optional(edited),
            deleted_at=_parse_optional(deleted),
        )
        return Sent(message=data, retry=True)
    now = utcnow()
    stamp = sqlite_time(now)
    seq = next_seq(connection, chat_id, sender_id, stamp=stamp)  # one statement authorizes and takes the next seq
    if seq is None:
        return Sent(refused=Refusal.NOT_MEMBER)
    message_id = uuid.uuid4()
    connection.execute(_INSERT_MESSAGE, (sqlite_uuid(message_id), chat, seq, sender, content, client_id, stamp, stamp))
    data = MessageData(
        id=message_id,
        chat_id=chat_id,
        seq=seq,
        content=content,
        created_at=now,
        updated_at=now,
        sender=UserRef(id=sender_id, email=email, image_url=image),
        client_id=client_id,
    )
    logged.append(Logged(NewMessage(chat_id=chat_id, message=data), seq=seq))
    return Sent(message=data)
