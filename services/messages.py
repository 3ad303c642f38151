"""Messages: send (commit, then publish), history by seq, and the per-member read marker."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, exists, func, select, update

from models import Chat, Member, Message, User, utcnow
from realtime.events import MessageData, MessagesRead, NewMessage
from services.auth import Actor, require_user
from services.chats import message_data, require_member
from services.errors import BadRequest, Forbidden, PayloadTooLarge
from services.runtime import Runtime
from services.views import ReadMarker

MAX_CLIENT_ID_LENGTH = 100  # room for a UUID or a ULID with a device prefix
DEFAULT_PAGE = 50
MAX_PAGE = 200  # one page stays well under a 1 MiB response at the maximum message length


def _validate_content(rt: Runtime, content: str) -> None:
    if not isinstance(content, str) or not content.strip():
        raise BadRequest("content: expected 1 or more characters")
    if len(content) > rt.settings.max_message_length:
        raise PayloadTooLarge(f"content: at most {rt.settings.max_message_length} characters")


async def send_message(
    rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, content: str, client_id: str | None = None
) -> MessageData:
    sender_id = require_user(actor)
    _validate_content(rt, content)
    if client_id is not None and not (0 < len(client_id) <= MAX_CLIENT_ID_LENGTH):
        raise BadRequest(f"client_id: expected 1 to {MAX_CLIENT_ID_LENGTH} characters")

    async with rt.chat_order(chat_id):
        async with rt.db.write() as session:
            if client_id is not None:
                existing = await session.execute(
                    select(Message, User)
                    .join(User, User.id == Message.sender_id)
                    .where(Message.chat_id == chat_id, Message.sender_id == sender_id, Message.client_id == client_id)
                )
                row = existing.first()
                if row is not None:
                    await require_member(session, chat_id=chat_id, user_id=sender_id)
                    return message_data(*row)
            now = utcnow()
            # One statement authorizes and takes the chat's next seq: the row lock it takes is held until
            # commit, so on PostgreSQL a chat's seqs commit in order (PITFALLS: sequences do not).
            is_member = exists().where(Member.chat_id == chat_id, Member.user_id == sender_id)
            seq = (
                await session.execute(
                    update(Chat)
                    .where(Chat.id == chat_id, is_member)
                    .values(last_seq=Chat.last_seq + 1, updated_at=now)
                    .returning(Chat.last_seq)
                )
            ).scalar_one_or_none()
            if seq is None:
                raise Forbidden()
            sender = await session.get(User, sender_id)
            if sender is None:
                raise Forbidden("this user is not provisioned")
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
        await rt.publish(NewMessage(chat_id=chat_id, message=data))
    return data


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
            moved = latest > member.last_read_seq
            if moved:
                await session.execute(
                    update(Member)
                    .where(and_(Member.chat_id == chat_id, Member.user_id == user_id, Member.last_read_seq < latest))
                    .values(last_read_seq=latest)
                )
            marker = ReadMarker(chat_id=chat_id, user_id=user_id, last_read_seq=max(latest, member.last_read_seq))
        if moved:
            await rt.publish(MessagesRead(chat_id=chat_id, user_id=user_id, last_read_seq=marker.last_read_seq))
    return marker
