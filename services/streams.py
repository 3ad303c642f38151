"""A client's live stream: every chat of the user, on one connection, for as long as it is open — and,
when the client comes back with a cursor, first exactly the durable events it missed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from realtime.events import ResyncRequired
from realtime.hub import Connection, Delivery, Transport
from realtime.positions import Vector
from realtime.stream import Stream
from server.logging_setup import fields
from services import journal
from services.auth import Actor, require_user
from services.runtime import Runtime
from services.users import touch_last_seen

log = logging.getLogger(__name__)

# How long a stream resuming with a cursor from a process that is a little ahead waits for this one to get there.
CATCH_UP_WAIT_SECONDS = 2.0


async def current_cursor(rt: Runtime, *, actor: Actor) -> str:
    """The event stream's position now. Read it before a snapshot (chats, history), subscribe after it, and the
    events that happen between the snapshot and the subscription are replayed instead of missed."""
    require_user(actor)
    return (await journal.current(rt.db)).cursor()


@contextlib.asynccontextmanager
async def open_stream(
    rt: Runtime,
    *,
    actor: Actor,
    kind: str,
    transport: Transport,
    cursor: str | None = None,
    conn_id: str | None = None,
) -> AsyncIterator[Stream]:
    """Open a connection subscribed to all the user's chats (and, live, to chats they join later), sending through
    `transport` (realtime.stream).

    The connection is registered with the hub by user *before* its chats are loaded, so a chat created in
    between still reaches it. With a `cursor`, the durable events after it are replayed first: everything up
    to the position this process had dispatched when the chats were watched comes from the log, everything
    after it from the live stream, and the seam between them is de-duplicated by log position.
    """
    user_id = require_user(actor)
    after = Vector.from_cursor(cursor) if cursor is not None else None
    if after is not None:
        # A cursor from a process that is ahead of this one by a few events: let this one get there first, so
        # the cursors this stream hands out never go back.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CATCH_UP_WAIT_SECONDS):
                await rt.sequencer.reached(after)
    conn = rt.hub.open(user_id, kind, transport, conn_id)
    online = False
    try:
        first = await rt.store.stream_start(user_id=user_id)
        rt.hub.watch(conn, first.chat_ids)
        rt.hub.joined_midway(conn, first.joined_at)
        conn.blocks_loaded(first.blocked_ids)
        live_from = rt.sequencer.vector  # read right after watch, with no await in between

        # The user's chats as the stream read them, for a replay selected in memory from a shared read of the log
        # (`_logged`); mid-stream catch-ups come with a membership change, so they ask the database.
        opening = _Member(conn, first.member_since)

        async def catch_up(after: Vector) -> tuple[list[Delivery], Vector]:
            missed, seam = await _missed(rt, user_id=user_id, after=after)
            return _received(conn, missed), seam

        stream = Stream(conn, catch_up=catch_up)
        if conn.subscribed_new:
            # This process subscribed to a chat or user channel for this connection: what those channels
            # carried before the subscription took effect comes from the log, with the cursor's replay if any.
            start = live_from if cursor is None else Vector.from_cursor(cursor)
            if start is None:
                stream.replay, stream.seam = [_resync("unknown cursor")], live_from
            else:
                stream.replay, stream.seam = await _missed(rt, user_id=user_id, after=start, member=opening)
        elif cursor is not None:
            stream.replay, stream.seam = await _replay(
                rt, user_id=user_id, cursor=cursor, upto=live_from, member=opening
            )
        stream.replay = _received(conn, stream.replay)
        rt.mark_online(user_id)
        online = True
        log.info(
            "stream opened",
            extra=fields(stream=conn.id, user_id=user_id, chats=len(conn.chats), replayed=len(stream.replay)),
        )
        yield stream
    finally:
        log.info("stream closed", extra=fields(stream=conn.id, user_id=user_id, overflow=conn.overflowed))
        # Synchronous on purpose: this runs on cancellation too (docs/library-notes.md), so async follow-ups are spawned.
        rt.hub.close(conn)
        last = rt.mark_offline(user_id) if online else not rt.is_online(user_id)
        rt.typing.stop_for_disconnect(user_id, origin=conn.id, last_connection=last)
        if last:
            rt.spawn(touch_last_seen(rt, user_id=user_id))


class _Member:
    """A connection's chats as its stream read them when it opened (`StreamStart.member_since`), valid for selecting
    its replay for as long as no membership change about its user has reached it since (`Connection.membership_moved`):
    until then the log's and the membership's answers are those of a read by the database at that moment."""

    __slots__ = ("conn", "since")

    def __init__(self, conn: Connection, since: dict[uuid.UUID, int]) -> None:
        self.conn = conn
        self.since = since

    @property
    def current(self) -> bool:
        return not self.conn.membership_moved


async def _logged(
    rt: Runtime, *, user_id: uuid.UUID, after: Vector, upto: Vector, member: _Member | None
) -> list[Delivery]:
    """The user's durable events past `after` up to `upto`, as deliveries. A small window is read once for every
    stream resuming over it (journal.ReplayWindows) and selected here; a big one, or a stream whose membership moved
    since it was read, is filtered by the database. `ResyncRequired` when the cursor cannot be replayed."""
    limit = rt.settings.resume_max_events
    if member is not None and member.current and journal.window_size(after, upto) <= journal.SHARED_WINDOW_MAX:
        replay = await rt.replays.replay(
            rt.db, user_id=user_id, member_since=member.since, after=after, upto=upto, limit=limit
        )
        if member.current:  # still: no membership change reached the stream while the window was read
            return replay
    recorded = await journal.replay_for(rt.db, user_id=user_id, after=after, upto=upto, limit=limit)
    return journal.deliveries(recorded, after)


async def _replay(
    rt: Runtime, *, user_id: uuid.UUID, cursor: str, upto: Vector, member: _Member | None = None
) -> tuple[list[Delivery], Vector]:
    """The replay for a cursor, and the seam: live events at or below it are skipped (already seen or replayed).

    A cursor that cannot be replayed gets one `resync_required` and no seam beyond what this process had
    already dispatched before the connection watched its chats.
    """
    after = Vector.from_cursor(cursor)
    if after is None:
        return [_resync("unknown cursor")], upto
    try:
        if not upto.beyond(after):
            # Nothing this process has dispatched is newer than the cursor; the log may still be ahead of it
            # (another process delivered it first), but never behind a cursor we issued.
            await journal.check_cursor(rt.db, after)
            return [], after.max(upto)
        replay = await _logged(rt, user_id=user_id, after=after, upto=upto, member=member)
    except journal.ResyncRequired as exc:
        return [_resync(exc.reason)], upto
    return replay, after.max(upto)


async def _missed(
    rt: Runtime, *, user_id: uuid.UUID, after: Vector, member: _Member | None = None
) -> tuple[list[Delivery], Vector]:
    """Once this process receives every channel the stream needs: the user's events past `after` from the log,
    up to what this process has dispatched by then, and that seam. Waits first until the subscriptions are
    confirmed and this process has dispatched everything the log held at that moment: from there on, nothing
    the stream needs can be missing from both the log's answer and the live stream."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CATCH_UP_WAIT_SECONDS):
            await rt.bus.subscribed()
            await rt.sequencer.reached(await journal.current(rt.db))
    upto = rt.sequencer.vector
    try:
        missed = await _logged(rt, user_id=user_id, after=after, upto=upto, member=member)
    except journal.ResyncRequired as exc:
        return [_resync(exc.reason)], upto
    return missed, after.max(upto)


def _received(conn: Connection, deliveries: list[Delivery]) -> list[Delivery]:
    """What the connection receives of replayed events: none from a user it blocks, none about a message sent
    before its user joined the group under HISTORY_VISIBILITY=joined (as live: realtime.hub)."""
    return [d for d in deliveries if conn.receives(d.event.route())]


def _resync(reason: str) -> Delivery:
    event = ResyncRequired(reason=reason)
    return Delivery(event, event.encode())
