"""A client's live stream: every chat of the user, on one connection, for as long as it is open — and,
when the client comes back with a cursor, first exactly the durable events it missed."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from realtime.events import ResyncRequired, UserStoppedTyping, decode_cursor
from realtime.hub import Connection, Delivery
from services import journal
from services.auth import Actor, require_user
from services.chats import user_chat_ids
from services.errors import RateLimited
from services.runtime import Runtime
from services.users import touch_last_seen


@dataclass
class Stream:
    """What a connection sends, in order: the replay, then live items (skipping those the replay covered)."""

    conn: Connection
    replay: list[Delivery] = field(default_factory=list)
    # Live durable events at or below this log position were in the replay (or seen before the cursor).
    seam: int | None = None

    async def next(self) -> Delivery | str:
        """The next item to send; raises `OutboxClosed` when the connection must end."""
        if self.replay:
            return self.replay.pop(0)
        while True:
            item = await self.conn.outbox.get()
            if not self.replayed(item):
                return item

    async def take(self) -> list[Delivery | str]:
        """Every item ready to send, in order, waiting for at least one; `OutboxClosed` as `next`."""
        if self.replay:
            replay, self.replay = self.replay, []
            return list(replay)
        while True:
            items = await self.conn.outbox.take_all()
            if self.seam is not None:
                items = [item for item in items if not self.replayed(item)]
            if items:
                return items

    def replayed(self, item: Delivery | str) -> bool:
        """True for a live event the replay already sent."""
        return (
            self.seam is not None
            and isinstance(item, Delivery)
            and item.event.pos is not None
            and item.event.pos <= self.seam
        )


@contextlib.asynccontextmanager
async def open_stream(rt: Runtime, *, actor: Actor, kind: str, cursor: str | None = None) -> AsyncIterator[Stream]:
    """Open a connection subscribed to all the user's chats (and, live, to chats they join later).

    The connection is registered with the hub by user *before* its chats are loaded, so a chat created in
    between still reaches it. With a `cursor`, the durable events after it are replayed first: everything up
    to the position this process had dispatched when the chats were watched comes from the log, everything
    after it from the live stream, and the seam between them is de-duplicated by log position.
    """
    user_id = require_user(actor)
    if len(rt.hub.connections_of(user_id)) >= rt.settings.max_connections_per_user:
        raise RateLimited(f"at most {rt.settings.max_connections_per_user} connections per user")
    conn = rt.hub.open(user_id, kind)
    online = False
    try:
        rt.hub.watch(conn, await user_chat_ids(rt, user_id=user_id))
        live_from = rt.sequencer.last_pos  # read right after watch, with no await in between
        stream = Stream(conn)
        if cursor is not None:
            stream.replay, stream.seam = await _replay(rt, user_id=user_id, cursor=cursor, upto=live_from)
        rt.mark_online(user_id)
        online = True
        yield stream
    finally:
        # Synchronous on purpose: this runs on cancellation too (PITFALLS), so async follow-ups are spawned.
        rt.hub.close(conn)
        last = rt.mark_offline(user_id) if online else not rt.is_online(user_id)
        stopped = rt.typing.stop_for_disconnect(user_id, origin=conn.id, last_connection=last)
        rt.spawn(_after_close(rt, user_id, stopped, last))


async def _replay(rt: Runtime, *, user_id: uuid.UUID, cursor: str, upto: int) -> tuple[list[Delivery], int]:
    """The replay for a cursor, and the seam: live events at or below it are skipped (already seen or replayed).

    A cursor that cannot be replayed gets one `resync_required` and no seam beyond what this process had
    already dispatched before the connection watched its chats.
    """
    after = decode_cursor(cursor)
    if after is None:
        return [_resync("unknown cursor")], upto
    if after >= upto:
        # Nothing this process has dispatched is newer than the cursor; the log may still be ahead of it
        # (another process delivered it first), but never behind a cursor we issued.
        if after > await journal.current_pos(rt.db):
            return [_resync("unknown cursor")], upto
        return [], after
    try:
        recorded = await journal.replay_for(
            rt.db, user_id=user_id, after=after, upto=upto, limit=rt.settings.resume_max_events
        )
    except journal.ResyncRequired as exc:
        return [_resync(exc.reason)], upto
    return [Delivery(r.event, r.raw) for r in recorded], upto


def _resync(reason: str) -> Delivery:
    event = ResyncRequired(reason=reason)
    return Delivery(event, event.encode())


async def _after_close(rt: Runtime, user_id: uuid.UUID, stopped_typing: list[uuid.UUID], last: bool) -> None:
    for chat_id in stopped_typing:
        await rt.publish(UserStoppedTyping(chat_id=chat_id, user_id=user_id))
    if last:
        await touch_last_seen(rt, user_id=user_id)
