"""Messages: send (commit, then publish), history by seq, and the per-member read marker."""

from __future__ import annotations

import sqlite3
import uuid
from typing import cast

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import Member, Message, User, utcnow
from models.group_commit import GroupCommit, sqlite_time, sqlite_uuid
from realtime.events import MessageData, MessagesRead, NewMessage, UserRef
from services import journal
from services.auth import Actor, require_user
from services.chats import message_data, require_member
from services.errors import BadRequest, Forbidden, PayloadTooLarge
from services.runtime import Runtime
from services.validation import MAX_SEQ, MIN_SEQ, valid_text
from services.views import ReadMarker

MAX_CLIENT_ID_LENGTH = 100  # room for a UUID or a ULID with a device prefix
DEFAULT_PAGE = 50
MAX_PAGE = 200  # one page stays well under a 1 MiB response at the maximum message length


def _validate_content(rt: Runtime, content: str) -> None:
    if not isinstance(content, str) or not content.strip():
        raise BadRequest("content: expected 1 or more characters")
    if len(content) > rt.settings.max_message_length:
        raise PayloadTooLarge(f"content: at most {rt.settings.max_message_length} characters")
    valid_text(content, "content")


async def send_message(
    rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, content: str, client_id: str | None = None
) -> MessageData:
    sender_id = require_user(actor)
    _validate_content(rt, content)
    if client_id is not None:
        if not (0 < len(client_id) <= MAX_CLIENT_ID_LENGTH):
            raise BadRequest(f"client_id: expected 1 to {MAX_CLIENT_ID_LENGTH} characters")
        valid_text(client_id, "client_id")

    if rt.db.group_commit is not None:
        return await _send_group_committed(
            rt, rt.db.group_commit, chat_id=chat_id, sender_id=sender_id, content=content, client_id=client_id
        )
    try:
        async with rt.chat_order(chat_id):
            async with rt.db.write() as session:
                if client_id is not None:
                    existing = await _by_client_id(session, chat_id=chat_id, sender_id=sender_id, client_id=client_id)
                    if existing is not None:
                        return existing
                # One statement authorizes and takes the chat's next seq.
                seq = await journal.next_seq(session, chat_id, member=sender_id)
                if seq is None:
                    raise Forbidden()
                sender = await session.get(User, sender_id)
                if sender is None:
                    raise Forbidden("this user is not provisioned")
                now = utcnow()
                message = Message(
                    id=uuid.uuid4(),
                    chat_id=chat_id,
                    seq=seq,
                    sender_id=sender_id,
                    content=content,
                    client_id=client_id,
                    created_at=now,
                    updated_at=now,
                )
                session.add(message)
                data = message_data(message, sender)
                recorded = await journal.append(session, NewMessage(chat_id=chat_id, message=data), seq=seq)
            rt.publish_recorded(recorded)
    except IntegrityError:
        # A concurrent retry with the same client id committed first (unique (chat, sender, client id)).
        if client_id is None:
            raise
        async with rt.db.read() as session:
            existing = await _by_client_id(session, chat_id=chat_id, sender_id=sender_id, client_id=client_id)
        if existing is None:
            raise
        return existing
    return data


# The send as one SQLite unit of work (models.group_commit): the same statements as above, without the ORM.
_SQLITE_EXISTING = "SELECT 1 FROM messages WHERE chat_id = ? AND sender_id = ? AND client_id = ?"
_SQLITE_NEXT_SEQ = (
    "UPDATE chats SET last_seq = last_seq + 1, updated_at = ? "
    "WHERE id = ? AND EXISTS (SELECT 1 FROM members WHERE chat_id = ? AND user_id = ?) RETURNING last_seq"
)
_SQLITE_SENDER = "SELECT email, image_url FROM users WHERE id = ?"
_SQLITE_INSERT = (
    "INSERT INTO messages (id, chat_id, seq, sender_id, content, client_id, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


async def _send_group_committed(
    rt: Runtime, writer: GroupCommit, *, chat_id: uuid.UUID, sender_id: uuid.UUID, content: str, client_id: str | None
) -> MessageData:
    chat_key, sender_key = sqlite_uuid(chat_id), sqlite_uuid(sender_id)

    def unit(connection: sqlite3.Connection) -> tuple[MessageData, journal.Recorded] | None:
        if client_id is not None:
            if connection.execute(_SQLITE_EXISTING, (chat_key, sender_key, client_id)).fetchone() is not None:
                return None  # a retry: answered below from what the first send stored
        now = utcnow()
        stamp = sqlite_time(now)
        row = connection.execute(_SQLITE_NEXT_SEQ, (stamp, chat_key, chat_key, sender_key)).fetchone()
        if row is None:  # one statement authorizes and takes the chat's next seq
            raise Forbidden()
        sender = connection.execute(_SQLITE_SENDER, (sender_key,)).fetchone()
        if sender is None:
            raise Forbidden("this user is not provisioned")
        seq = row[0]
        message_id = uuid.uuid4()
        connection.execute(
            _SQLITE_INSERT, (sqlite_uuid(message_id), chat_key, seq, sender_key, content, client_id, stamp, stamp)
        )
        data = MessageData(
            id=message_id,
            chat_id=chat_id,
            seq=seq,
            content=content,
            created_at=now,
            updated_at=now,
            sender=UserRef(id=sender_id, email=sender[0], image_url=sender[1]),
            client_id=client_id,
        )
        return data, journal.append_sqlite(connection, NewMessage(chat_id=chat_id, message=data), seq=seq)

    def committed(sent: tuple[MessageData, journal.Recorded] | None) -> None:
        if sent is not None:
            rt.publish_recorded(sent[1])

    sent = await writer.run(unit, committed=committed)
    if sent is not None:
        return sent[0]
    async with rt.db.read() as session:  # a retry of a send with the same client id
        existing = await _by_client_id(session, chat_id=chat_id, sender_id=sender_id, client_id=cast(str, client_id))
    if existing is None:  # cannot happen: a message is never deleted alone
        raise Forbidden()
    return existing


async def _by_client_id(
    session: AsyncSession, *, chat_id: uuid.UUID, sender_id: uuid.UUID, client_id: str
) -> MessageData | None:
    """The message this sender already sent with this client id (idempotent retries), if any."""
    row = (
        await session.execute(
            select(Message, User)
            .join(User, User.id == Message.sender_id)
            .where(Message.chat_id == chat_id, Message.sender_id == sender_id, Message.client_id == client_id)
        )
    ).first()
    if row is None:
        return None
    await require_member(session, chat_id=chat_id, user_id=sender_id)
    return message_data(*row)


async def list_messages(
    rt: Runtime,
    *,
    actor: Actor,
    chat_id: uuid.UUID,
    before: int | None = None,
    after: int | None = None,
    limit: int = DEFAULT_PAGE,
) -> list[MessageData]:
    """A page of history in ascending seq: after `after`, or the `limit` messages just before `before`
    (the newest ones when neither is given)."""
    user_id = require_user(actor)
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit: expected 1 to {MAX_PAGE}")
    if before is not None and after is not None:
        raise BadRequest("give before or after, not both")
    for name, value in (("before", before), ("after", after)):
        if value is not None and not MIN_SEQ <= value <= MAX_SEQ:
            raise BadRequest(f"{name}: expected a 64-bit integer")
    query = select(Message, User).join(User, User.id == Message.sender_id).where(Message.chat_id == chat_id)
    if after is not None:
        query = query.where(Message.seq > after).order_by(Message.seq).limit(limit)
    else:
        if before is not None:
            query = query.where(Message.seq < before)
        query = query.order_by(Message.seq.desc()).limit(limit)
    async with rt.db.read() as session:
        await require_member(session, chat_id=chat_id, user_id=user_id)
        rows = (await session.execute(query)).all()
    page = [message_data(message, sender) for message, sender in rows]
    if after is None:
        page.reverse()
    return page


async def mark_read(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID) -> ReadMarker:
    """Move the user's read marker to the chat's latest message; tell the others if it moved."""
    user_id = require_user(actor)
    async with rt.chat_order(chat_id):
        async with rt.db.write() as session:
            member = await require_member(session, chat_id=chat_id, user_id=user_id)
            latest = (
                await session.execute(select(func.coalesce(func.max(Message.seq), 0)).where(Message.chat_id == chat_id))
            ).scalar_one()
            marker = ReadMarker(chat_id=chat_id, user_id=user_id, last_read_seq=max(latest, member.last_read_seq))
            recorded = None
            if latest > member.last_read_seq:
                await session.execute(
                    update(Member)
                    .where(and_(Member.chat_id == chat_id, Member.user_id == user_id, Member.last_read_seq < latest))
                    .values(last_read_seq=latest)
                )
                recorded = await journal.record_chat_event(
                    session, chat_id, MessagesRead(chat_id=chat_id, user_id=user_id, last_read_seq=latest)
                )
        if recorded is not None:
            rt.publish_recorded(recorded)
    return marker
