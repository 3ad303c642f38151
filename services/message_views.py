"""Messages as history shows them to one viewer: stored rows to `MessageView`s with their reactions, and the answer
of a use case that changed a message (edit, delete, react)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Message, Reaction, User
from realtime.events import MessageData, UserRef
from services.errors import BadRequest, DomainError, Forbidden, NotFound
from services.runtime import Runtime
from services.views import MessageView, ReactionView
from storage import Refusal
from storage.base import Changed


def message_data(message: Message, sender: User) -> MessageData:
    return MessageData(
        id=message.id,
        chat_id=message.chat_id,
        seq=message.seq,
        content=message.content,
        created_at=message.created_at,
        updated_at=message.updated_at,
        sender=UserRef(id=sender.id, email=sender.email, image_url=sender.image_url),
        client_id=message.client_id,
        edited_at=message.edited_at,
        deleted_at=message.deleted_at,
    )


async def with_reactions(
    session: AsyncSession, messages: Sequence[MessageData], *, viewer: uuid.UUID | None
) -> list[MessageView]:
    """The messages with their reactions (one query for all of them): per emoji, in order of its first use, how many
    reacted and whether `viewer` did."""
    ids = [m.id for m in messages]
    found: dict[uuid.UUID, list[ReactionView]] = defaultdict(list)
    if ids:
        mine = func.max(case((Reaction.user_id == viewer, 1), else_=0))
        rows = await session.execute(
            select(Reaction.message_id, Reaction.emoji, func.count(), mine)
            .where(Reaction.message_id.in_(ids))
            .group_by(Reaction.message_id, Reaction.emoji)
            .order_by(Reaction.message_id, func.min(Reaction.created_at), Reaction.emoji)
        )
        for message_id, emoji, count, me in rows.all():
            found[message_id].append(ReactionView(emoji=emoji, count=count, reacted_by_me=bool(me)))
    return [MessageView(**_fields(m), reactions=tuple(found[m.id])) for m in messages]


def _fields(message: MessageData) -> dict[str, Any]:
    return {name: getattr(message, name) for name in MessageData.__dataclass_fields__}


# What a refused change of a message answers (docs/protocols.md "Editing, deleting, reacting").
_REFUSALS: dict[Refusal, DomainError] = {
    Refusal.NOT_MEMBER: Forbidden(),
    Refusal.NO_MESSAGE: NotFound("message not found"),
    Refusal.NOT_SENDER: Forbidden("only the sender may change this message"),
    Refusal.DELETED: BadRequest("the message is deleted"),
}


async def changed_message(
    rt: Runtime, outcome: Changed, *, message_id: uuid.UUID, viewer: uuid.UUID | None, max_emoji: int = 0
) -> MessageView:
    """The message as `viewer` sees it now, after a change; or the error of a refused one."""
    if outcome.refused is Refusal.TOO_MANY_REACTIONS:
        raise BadRequest(f"emoji: a message has at most {max_emoji} different reactions", details={"limit": max_emoji})
    if outcome.refused is not None:
        error = _REFUSALS[outcome.refused]
        raise type(error)(error.message)  # a fresh exception each time (a raised one keeps its traceback)
    async with rt.db.read() as session:
        row = (
            await session.execute(
                select(Message, User).join(User, User.id == Message.sender_id).where(Message.id == message_id)
            )
        ).first()
        if row is None:  # deleted with its chat in the meantime
            raise NotFound("message not found")
        (view,) = await with_reactions(session, [message_data(*row)], viewer=viewer)
    return view
