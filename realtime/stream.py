"""One connection's stream and the one writer of its socket.

`Stream` is what a connection sends, in order: the replay of what it missed, then live items from its outbox.
`StreamWriter` sends them, and is the connection's `Transport` (realtime.hub): the fan-out hands it an event to
send at once when nothing is queued before it on the socket, and tells it when the outbox overflowed. A stream that
a framework iterates instead (GraphQL over the `graphql-ws` subprotocol) uses `Queued`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from realtime import eager
from realtime.hub import CatchUp, Connection, Delivery
from realtime.positions import Vector

CatchUpFrom = Callable[[Vector], Awaitable[tuple[list[Delivery], Vector]]]
# Frames per write of `StreamWriter.write_many`: a long queue goes out in writes of a bounded size.
WRITE_MANY_MAX = 64
# What both adapters' `send` return: a coroutine (an ASGI send, a Strawberry socket's send), stepped by eager.start.
Sending = Coroutine[Any, Any, None]


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
            items = await self.conn.outbox.take_all()
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

    def replayed(self, item: object) -> bool:
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

    `write_now(delivery)`, if given, writes an event's frame then and there when the socket can take it (False:
    not now); `write_many(deliveries)` writes the frames of as many of them as it can now, in order, in one write to
    the socket, and says how many (a replay, or what queued up while the socket was busy: one system call and one
    TCP segment for them all instead of one each). `render_now(delivery)` gives what `send` takes for an event,
    without waiting (None: not possible now, queue it); `render(item)` gives it for any item, waiting if need be
    (None: nothing to send for it). A send the fan-out started but the socket's backpressure held up (realtime.eager)
    is finished here, before anything queued after it. `on_overflow` ends the connection when its outbox overflows,
    even while the writer is stuck in a send to a client that stopped reading (default: cancel the task running the
    writer)."""

    def __init__(
        self,
        send: Callable[[Any], Awaitable[None]],
        *,
        render_now: Callable[[Delivery], Any | None],
        render: Callable[[Delivery | str], Awaitable[Any | None]],
        on_overflow: Callable[[], None] | None = None,
        write_now: Callable[[Delivery], bool] | None = None,
        write_many: Callable[[Sequence[Delivery]], int] | None = None,
    ) -> None:
        self.send = send  # takes what the renderers give: a text, or a whole ASGI message shared by recipients
        self.render_now = render_now
        self.render = render
        # Writes an event's frame to the socket at once, without a coroutine, if the socket can take it now (False:
        # not now, send it through `send`): the frame serialized once for every recipient (server.sends).
        self.write_now = write_now
        self.write_many = write_many
        self._on_overflow = on_overflow
        self._stream: Stream | None = None  # while running
        self._task: asyncio.Task[Any] | None = None
        self.writing = False  # items taken from the outbox and not yet sent: the fan-out queues behind them

    async def run(self, stream: Stream) -> None:
        """Send until the connection ends (`OutboxClosed`); the fan-out may send directly meanwhile."""
        self._stream, self._task = stream, asyncio.current_task()
        try:
            while True:
                items = await stream.take()
                self.writing = True
                try:
                    await self._send_all(items)
                finally:
                    self.writing = False
        finally:
            self._stream = None

    async def _send_all(self, items: list[Delivery | str | eager.Suspended]) -> None:
        i = 0
        while i < len(items):
            item = items[i]
            if isinstance(item, eager.Suspended):
                await item.finish()
                i += 1
                continue
            if self.write_many is not None and isinstance(item, Delivery):
                written = self.write_many(_deliveries(items, i))
                if written:
                    i += written
                    continue
            message = await self.render(item)
            if message is not None:
                await self.send(message)
            i += 1

    # -- Transport ------------------------------------------------------------------------------------------

    def send_now(self, delivery: Delivery) -> bool:
        """Send `delivery` from the fan-out if nothing is before it on this socket. True if it was taken."""
        stream = self._stream
        if stream is None or self.writing or len(stream.conn.outbox) or stream.replay or stream.busy:
            return False
        if stream.replayed(delivery):
            return True
        if self.write_now is not None and self.write_now(delivery):
            return True
        message = self.render_now(delivery)
        if message is None:
            return False
        try:
            suspended = eager.start(cast(Sending, self.send(message)))
        except Exception:  # the socket is going away: queue it, and the writer ends the connection
            return False
        if suspended is not None and not stream.conn.outbox.put(suspended, size=len(delivery.raw), ephemeral=False):
            suspended.coro.close()
        return True

    def overflowed(self) -> None:
        callback, self._on_overflow = self._on_overflow, None
        if callback is not None:
            callback()
        elif self._task is not None:
            self._task.cancel()

    def release(self) -> None:
        self._on_overflow, self._task, self._stream = None, None, None


def _deliveries(items: list[Delivery | str | eager.Suspended], start: int) -> list[Delivery]:
    """The events in a row from `items[start]` on, at most WRITE_MANY_MAX of them."""
    run: list[Delivery] = []
    for item in items[start : start + WRITE_MANY_MAX]:
        if not isinstance(item, Delivery):
            break
        run.append(item)
    return run


class Queued:
    """The transport of a stream a framework iterates: every delivery waits in the outbox; `on_overflow` ends
    the connection when the outbox overflows."""

    def __init__(self, on_overflow: Callable[[], None] | None = None) -> None:
        self._on_overflow = on_overflow

    def send_now(self, delivery: Delivery) -> bool:
        return False

    def overflowed(self) -> None:
        callback, self._on_overflow = self._on_overflow, None
        if callback is not None:
            callback()

    def release(self) -> None:
        self._on_overflow = None
