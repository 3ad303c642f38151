"""Ephemeral activity: typing, and a connection opening or pausing a chat's stream."""

from __future__ import annotations

import uuid

from realtime.events import UserJoined, UserLeft
from realtime.hub import Connection
from services.auth import Actor, require_user
from services.chats import require_member
from services.errors import Forbidden, RateLimited
from services.runtime import Runtime


async def _check_member(rt: Runtime, *, chat_id: uuid.UUID, user_id: uuid.UUID) -> None:
    async with rt.db.read() as session:
        await require_member(session, chat_id=chat_id, user_id=user_id)


async def set_typing(
    rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, is_typing: bool, origin: str | None = None
) -> bool:
    """Start (or refresh) or stop typing. The others hear only of changes, at most once per
    TYPING_BROADCAST_INTERVAL; typing expires after the TTL. Over TYPING_PER_SECOND (per user): RATE_LIMITED.

    `origin` is the connection the command came on: its disconnect stops this typing at once.
    """
    user_id = require_user(actor)
    if not rt.typing.allow(user_id):
        raise RateLimited("typing: too many changes; slow down")
    await _check_member(rt, chat_id=chat_id, user_id=user_id)
    if is_typing:
        rt.typing.start(chat_id, user_id, origin=origin)
    else:
        rt.typing.stop(chat_id, user_id)
    return True


async def set_chat_stream(rt: Runtime, *, actor: Actor, conn: Connection, chat_id: uuid.UUID, open: bool) -> None:
    """Open (`join_chat`) or pause (`leave_chat`) one chat's events on one connection; membership is unchanged.

    The chat's other members hear `user_joined` / `user_left`. A non-member is refused and nobody hears of it.
    """
    user_id = require_user(actor)
    event = UserJoined(chat_id=chat_id, user_id=user_id) if open else UserLeft(chat_id=chat_id, user_id=user_id)
    if not await rt.store.record_chat_event(event, chat_id=chat_id, member=user_id):
        raise Forbidden()
    # (The event goes "to the others": whether this connection had resumed or paused the chat when it was
    # published does not matter to it.)
    if open:
        rt.hub.resume(conn, chat_id)
    else:
        rt.hub.pause(conn, chat_id)
