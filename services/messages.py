"""Messages: send (commit, then publish), edit and delete (tombstones), history by seq, and the per-member read
marker."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from models import Message, User
from realtime.events import MessageData
from services.auth import Actor, require_user
from services.chats import require_member, visible_history
from services.errors import BadRequest, Forbidden, PayloadTooLarge
from services.message_views import changed_message, message_data, with_reactions
from services.runtime import Runtime
from services.validation import MAX_SEQ, MIN_SEQ, valid_text
from services.views import MessageView, ReadMarker

MAX_CLIENT_ID_LENGTH = 100  # room for a UUID or a ULID with a device prefix
DEFAULT_PAGE = 50
MAX_PAGE = 200  # one page stays well under a 1 MiB response at the maximum message length


def _validate_content(rt: Runtime, content: str) -> None:
    if not isinstance(content, str) or not content.strip():
        raise BadRequest("content: expected 1 or more characters")
    if len(content) > rt.settings.max_message_length:
        raise PayloadTooLarge(f"content: at most {rt.settings.max_message_length} characters")
    valid_text(content, "content")


def _validate_client_id(client_id: str | None) -> None:
    if client_id is not None:
        if not (0 < len(client_id) <= MAX_CLIENT_ID_LENGTH):
            raise BadRequest(f"client_id: expected 1 to {MAX_CLIENT_ID_LENGTH} characters")
        valid_text(client_id, "client_id")


async def send_message(
    rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, content: str, client_id: str | None = None
) -> MessageData:
    sender_id = require_user(actor)
    _validate_content(rt, content)
    _validate_client_id(client_id)

    sent = await rt.store.send_message(chat_id=chat_id, sender_id=sender_id, content=content, client_id=client_id)
    if sent.message is None:
        raise Forbidden()
    return sent.message


async def edit_message(
    rt: Runtime, *, actor: Actor, message_id: uuid.UUID, content: str, client_id: str | None = None
) -> MessageView:
    """Replace the content of a message the user sent; every member hears of it (MessageEdited). A retry (the last
    edit's `client_id`) or the same content changes nothing and is not heard of again. A deleted message stays so."""
    user_id = require_user(actor)
    _validate_content(rt, content)
    _validate_client_id(client_id)
    edited = await rt.store.edit_message(message_id=message_id, user_id=user_id, content=content, client_id=client_id)
    return await changed_message(rt, edited, message_id=message_id, viewer=user_id)


async def delete_message(rt: Runtime, *, actor: Actor, message_id: uuid.UUID) -> MessageView:
    """Delete a message: its sender may, and services may. It stays in history as a tombstone (empty content,
    `deleted_at`, no reactions); every member hears of it (MessageDeleted). Deleting it again changes nothing."""
    by = None if actor.is_service else require_user(actor)
    deleted = await rt.store.delete_message(message_id=message_id, by=by)
    return await changed_message(rt, deleted, message_id=message_id, viewer=by)


async def list_messages(
    rt: Runtime,
    *,
    actor: Actor,
    chat_id: uuid.UUID,
    before: int | None = None,
    after: int | None = None,
    limit: int = DEFAULT_PAGE,
) -> list[MessageView]:
    """A page of history in ascending seq: after `after`, or the `limit` messages just before `before`
    (the newest ones when neither is given), with their reactions as the user sees them."""
    user_id = require_user(actor)
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit: expected 1 to {MAX_PAGE}")
    if before is not None and after is not None:
        raise BadRequest("give before or after, not both")
    for name, value in (("before", before), ("after", after)):
        if value is not None and not MIN_SEQ <= value <= MAX_SEQ:
            raise BadRequest(f"{name}: expected a 64-bit integer")
    query = select(Message, User).join(User, User.id == Message.sender_id).where(Message.chat_id == chat_id)
    query = visible_history(rt, query, user_id=user_id)  # none from users I block; HISTORY_VISIBILITY
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
        return await with_reactions(session, page, viewer=user_id)


async def mark_read(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID) -> ReadMarker:
    """Move the user's read marker to the chat's latest message; the others hear of it if it moved."""
    user_id = require_user(actor)
    moved = await rt.store.mark_read(chat_id=chat_id, user_id=user_id)
    if moved.refused is not None:
        raise Forbidden()
    return ReadMarker(chat_id=chat_id, user_id=user_id, last_read_seq=moved.last_read_seq)
