"""A client's live stream: every chat of the user, on one connection, for as long as it is open."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from realtime.events import UserStoppedTyping
from realtime.hub import Connection
from services.auth import Actor, require_user
from services.chats import user_chat_ids
from services.runtime import Runtime
from services.users import touch_last_seen


@contextlib.asynccontextmanager
async def open_stream(rt: Runtime, *, actor: Actor, kind: str) -> AsyncIterator[Connection]:
    """Open a connection subscribed to all the user's chats (and, live, to chats they join later).

    The connection is registered with the hub by user *before* its chats are loaded, so a chat created in
    between still reaches it. The user counts as online once the chats are watched.
    """
    user_id = require_user(actor)
    conn = rt.hub.open(user_id, kind)
    online = False
    try:
        rt.hub.watch(conn, await user_chat_ids(rt, user_id=user_id))
        rt.mark_online(user_id)
        online = True
        yield conn
    finally:
        # Synchronous on purpose: this runs on cancellation too (PITFALLS), so async follow-ups are spawned.
        rt.hub.close(conn)
        last = rt.mark_offline(user_id) if online else not rt.is_online(user_id)
        stopped = rt.typing.stop_for_disconnect(user_id, origin=conn.id, last_connection=last)
        rt.spawn(_after_close(rt, user_id, stopped, last))


async def _after_close(rt: Runtime, user_id: uuid.UUID, stopped_typing: list[uuid.UUID], last: bool) -> None:
    for chat_id in stopped_typing:
        await rt.publish(UserStoppedTyping(chat_id=chat_id, user_id=user_id))
    if last:
        await touch_last_seen(rt, user_id=user_id)
