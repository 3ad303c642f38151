"""A client's live stream: every chat of the user, on one connection, for as long as it is open — and,
when the client comes back with a cursor, first exactly the durable events it missed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from logging_setup import fields
from realtime import eager
from realtime.events import ResyncRequired
from realtime.hub import CatchUp, Connection, Delivery
from realtime.positions import Vector
from services import journal
from services.auth import Actor, require_user
from services.chats import user_chat_ids
from services.runtime import Runtime
from services.users import touch_last_seen

log = logging.getLogger(__name__)

# How long a stream resuming with a cursor from a process that is a little ahead waits for this one to get there.
CATCH_UP_WAIT_SECONDS = 2.0


CatchUpFrom = Callable[[Vector], Awaitable[tuple[list[Delivery], Vector]]]


@dataclass
class Stream:
    """What a connection sends, in order: the replay, then live items (skipping those the replay covered).

    `catch_up(after)` reads from the log what the stream missed past `after` when this process starts receiving
    a chat mid-stream (a `CatchUp` item in the outbox, from the hub): its events, and the new seam."""

    conn: Connection
    catch_up: CatchUpFrom | None = None
    replay: list[Delivery] = field(default_factory=list)
    # Live durable events at or below this vector were in the replay (or seen before the cursor).
    seam: Vector | None = None
    # True while a catch-up is read: nothing may be sent past it meanwhile.
    busy: bool = False

    async def take(self) -> list[Delivery | str | eager.Suspended]:
        """Every item ready to send, in order, waiting for at least one; raises `OutboxClosed` when the
        connection must end."""
        if self.replay:
            replay, self.replay = self.replay, []
            return list(replay)
        while True:
            items: list[Any] = await self.conn.outbox.take_all()
            ready: list[Delivery | str | eager.Suspended] = []
            for item in items:
                if isinstance(item, CatchUp):
                    ready.extend(await self._caught_up(item))
                elif not self.replayed(item):
                    ready.append(item)
            if ready:
                return ready

    async def _caught_up(self, item: CatchUp) -> list[Delivery]:
        if self.catch_up is None or item.after is None:
            return []
        self.busy = True
        try:
            missed, seam = await self.catch_up(item.after)
        finally:
            self.busy = False
        self.seam = seam if self.seam is None else self.seam.max(seam)
        return missed

    def replayed(self, item: Delivery | str) -> bool:
        """True for a live event the replay already sent."""
        return (
            self.seam is not None
            and isinstance(item, Delivery)
            and item.event.pos is not None
            and self.seam.covers(item.event.pos)
        )


class StreamWriter:
    """The one writer of a socket: sends its stream's items in order — and lets the hub's fan-out send an
    event right away when nothing is queued or in hand before it, so no task wakes up per delivery.

    `render_now(delivery)` gives what `send` takes for an event, without waiting (None: not possible now, queue
    it); `render(item)` gives it for any item, waiting if need be (None: nothing to send for it). A send the
    fan-out started but the socket's backpressure held up (realtime.eager) is finished here, before anything
    queued after it."""

    def __init__(
        self,
        stream: Stream,
        send: Callable[[Any], Awaitable[None]],
        *,
        render_now: Callable[[Delivery], Any | None],
        render: Callable[[Delivery | str], Awaitable[Any | None]],
    ) -> None:
        self.stream = stream
        self.send = send  # takes what the renderers give: a text, or a whole ASGI message shared by recipients
        self.render_now = render_now
        self.render = render
        self.writing = False  # items taken from the outbox and not yet sent: the fan-out queues behind them

    async def run(self) -> None:
        """Send until the connection ends (`OutboxClosed`); the fan-out may send directly meanwhile."""
        conn = self.stream.conn
        conn.write_now = self.write_now
        try:
            while True:
                items = await self.stream.take()
                self.writing = True
                try:
                    for item in items:
                        if isinstance(item, eager.Suspended):
                            await item.finish()
                            continue
                        message = await self.render(item)
                        if message is not None:
                            await self.send(message)
                finally:
                    self.writing = False
        finally:
            conn.write_now = None

    def write_now(self, delivery: Delivery) -> bool:
        """Send `delivery` from the fan-out if nothing is before it on this socket. True if it was taken."""
        stream = self.stream
        if self.writing or len(stream.conn.outbox) or stream.replay or stream.busy:
            return False
        if stream.replayed(delivery):
            return True
        message = self.render_now(delivery)
        if message is None:
            return False
        try:
            # Both adapters' `send` are coroutine functions (an ASGI send, a Strawberry socket's send).
            suspended = eager.start(cast(Coroutine[Any, Any, None], self.send(message)))
        except Exception:  # the socket is going away: queue it, and the writer ends the connection
            return False
        if suspended is not None and not stream.conn.outbox.put(suspended, size=len(delivery.raw), ephemeral=False):
            suspended.coro.close()
        return True


async def current_cursor(rt: Runtime, *, actor: Actor) -> str:
    """The event stream's position now. Read it before a snapshot (chats, history), subscribe after it, and the
    events that happen between the snapshot and the subscription are replayed instead of missed."""
    require_user(actor)
    return (await journal.current(rt.db)).cursor()


@contextlib.asynccontextmanager
async def open_stream(
    rt: Runtime, *, actor: Actor, kind: str, cursor: str | None = None, conn_id: str | None = None
) -> AsyncIterator[Stream]:
    """Open a connection subscribed to all the user's chats (and, live, to chats they join later).

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
    conn = rt.hub.open(user_id, kind, conn_id)
    online = False
    try:
        rt.hub.watch(conn, await user_chat_ids(rt, user_id=user_id))
        live_from = rt.sequencer.vector  # read right after watch, with no await in between

        async def catch_up(after: Vector) -> tuple[list[Delivery], Vector]:
            return await _missed(rt, user_id=user_id, after=after)

        stream = Stream(conn, catch_up=catch_up)
        if conn.subscribed_new:
            # This process subscribed to a chat or user channel for this connection: what those channels
            # carried before the subscription took effect comes from the log, with the cursor's replay if any.
            start = live_from if cursor is None else Vector.from_cursor(cursor)
            if start is None:
                stream.replay, stream.seam = [_resync("unknown cursor")], live_from
            else:
                stream.replay, stream.seam = await _missed(rt, user_id=user_id, after=start)
        elif cursor is not None:
            stream.replay, stream.seam = await _replay(rt, user_id=user_id, cursor=cursor, upto=live_from)
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


async def _replay(rt: Runtime, *, user_id: uuid.UUID, cursor: str, upto: Vector) -> tuple[list[Delivery], Vector]:
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
        recorded = await journal.replay_for(
            rt.db, user_id=user_id, after=after, upto=upto, limit=rt.settings.resume_max_events
        )
    except journal.ResyncRequired as exc:
        return [_resync(exc.reason)], upto
    replay = []
    reached = after
    for item in recorded:
        assert item.event.pos is not None
        reached = reached.with_(item.event.pos)
        replay.append(Delivery(item.event, item.raw, reached))
    return replay, after.max(upto)


async def _missed(rt: Runtime, *, user_id: uuid.UUID, after: Vector) -> tuple[list[Delivery], Vector]:
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
        recorded = await journal.replay_for(
            rt.db, user_id=user_id, after=after, upto=upto, limit=rt.settings.resume_max_events
        )
    except journal.ResyncRequired as exc:
        return [_resync(exc.reason)], upto
    missed = []
    reached = after
    for item in recorded:
        assert item.event.pos is not None
        reached = reached.with_(item.event.pos)
        missed.append(Delivery(item.event, item.raw, reached))
    return missed, after.max(upto)


def _resync(reason: str) -> Delivery:
    event = ResyncRequired(reason=reason)
    return Delivery(event, event.encode())
