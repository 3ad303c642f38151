"""Ephemeral activity: typing, and a connection opening or pausing a chat's stream."""

from __future__ import annotations

import uuid

from realtime.events import UserJoined, UserLeft, UserStoppedTyping, UserTyping
from services.auth import Actor, require_user
from services.chats import require_member
from services.runtime import Runtime


async def _check_member(rt: Runtime, *, chat_id: uuid.UUID, user_id: uuid.UUID) -> None:
    async with rt.db.read() as session:
        await require_member(session, chat_id=chat_id, user_id=user_id)


async def set_typing(
    rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, is_typing: bool, origin: str | None = None
) -> bool:
    """Start (or refresh) or stop typing. The others hear only of changes; typing expires after the TTL.

    `origin` is the connection the command came on: its disconnect stops this typing at once.
    """
    user_id = require_user(actor)
    await _check_member(rt, chat_id=chat_id, user_id=user_id)
    if is_typing:
        if rt.typing.start(chat_id, user_id, origin=origin):
            await rt.publish(UserTyping(chat_id=chat_id, user_id=user_id))
    elif rt.typing.stop(chat_id, user_id):
        await rt.publish(UserStoppedTyping(chat_id=chat_id, user_id=user_id))
    return True


async def announce_stream(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, joined: bool) -> None:
    """Tell the chat's other members that this user (re)opened or paused the chat on a connection."""
    user_id = require_user(actor)
    await _check_member(rt, chat_id=chat_id, user_id=user_id)
    event = UserJoined(chat_id=chat_id, user_id=user_id) if joined else UserLeft(chat_id=chat_id, user_id=user_id)
    await rt.publish(event)
