"""The event bus: routed channels on Redis (one per chat and per user, and one control channel every process
hears), or broadcaster's in-process `memory://` for a single process; supervised.

Routing: a durable event is published on its chat's channel, and on the channels of the users it names (a
notification's target, a membership change's subject, a new chat's members). A process subscribes to the
control channel and to the channels of the chats and users of its own connections only, so it receives what its
connections need and not the cluster's whole traffic. Typing and presence go on the control channel (every
process answers `chatStatus` for any user).

Order: a process publishes on one connection, in order, and subscribes on one connection: Redis hands each
subscriber a publisher's messages in the publisher's order, whatever their channels. After each batch of events
a writer publishes `{"type": "_upto", "writer": slot, "n": last}` on the control channel: every process learns
how far each writer has got, including through events it did not receive (realtime.sequencer).

Messages are always JSON strings: `memory://` would pass Python objects through, Redis returns `bytes`/`str`,
and tests must not pass on one and fail on the other.

broadcaster's listener dies silently when Redis drops (docs/library-notes.md), and a subscription can die while publishing
still works: the bus proves its own liveness end to end by publishing a heartbeat every `HEARTBEAT_SECONDS` on the
control channel and expecting to hear it back. Silence (`SILENT_BEATS` heartbeats sent, none back, for
`SILENCE_SECONDS`), or any error, ends the session; the supervisor reconnects with backoff, subscribes again to every
channel its connections need, and — once its own heartbeat comes back — reports connected and calls `on_connected`
(the runtime catches up from the event log).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from realtime.broker import BROKER_TIMEOUT, LocalSession, RedisSession, Session
from realtime.events import Event
from realtime.presence import HEARTBEAT_SECONDS

log = logging.getLogger(__name__)

CONTROL = "tailtrail.control"
# Four missed heartbeats: long enough to ride out a GC pause, short enough that a dead broker is noticed within two
# seconds. Missed means sent and not back: an event loop too busy to read the echoes is also too busy to send the
# beats, so a reconnect storm that keeps it seconds behind is not taken for a dead broker (which cost a resubscription
# and a catch-up from the log at the worst moment).
SILENT_BEATS = 4
SILENCE_SECONDS = SILENT_BEATS * HEARTBEAT_SECONDS
# Reconnect backoff: doubling from 0.1 s up to 1 s, so a broker that comes back is used again within a second.
BACKOFF_START, BACKOFF_MAX = 0.1, 1.0
# A channel no local connection needs is kept this long: clients reconnecting at once (a deploy, a flaky
# network) find it subscribed and need no catch-up from the log.
DROP_DELAY_SECONDS = 30.0


def chat_channel(chat_id: object) -> str:
    return f"tailtrail.chat.{chat_id}"


def user_channel(user_id: object) -> str:
    return f"tailtrail.user.{user_id}"


class BrokerSilent(Exception):
    """Our own heartbeat did not come back: the subscription is dead even if publishing works."""


class EventBus:
    def __init__(
        self,
        url: str,
        on_message: Callable[[dict[str, Any], str], None],
        *,
        heartbeat: Callable[[], dict[str, Any]],
        process_id: str,
        on_connected: Callable[[], Awaitable[None]] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self._on_lost = on_lost
        self._on_message = on_message
        self._heartbeat_message = heartbeat
        self._process_id = process_id
        self._on_connected = on_connected
        self._session: Session | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._last_echo = 0.0
        self._unanswered = 0  # heartbeats sent since our last echo came back
        self._tasks: set[asyncio.Task[Any]] = set()
        # The channels this process's connections need (besides CONTROL), kept across reconnections.
        self._wanted: set[str] = set()
        self._dropping: dict[str, float] = {}  # channel -> when it is unsubscribed, unless wanted again
        self._subscribed: set[str] = set()
        self._changed = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self.published = 0
        self.publish_failures = 0
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def routed(self) -> bool:
        """True when the bus delivers only the subscribed channels (Redis); False for `memory://`."""
        return not self.url.startswith("memory://")

    async def start(self, *, wait: float) -> bool:
        """Start the supervisor; wait up to `wait` seconds for the first connection. A broker that is down
        does not stop start-up: the process reports not-ready and connects when it can."""
        self._supervisor = asyncio.create_task(self._supervise(), name="event-bus")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), wait)
        return self.connected

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor

    # -- subscriptions ---------------------------------------------------------------------------------------

    def want(self, chats: Iterable[object] = (), users: Iterable[object] = ()) -> bool:
        """Subscribe to these chats' and users' channels (from the next moment on). True if one of them is not
        subscribed yet, or not confirmed yet: what it carried until then did not come here."""
        return self.want_channels([*map(chat_channel, chats), *map(user_channel, users)])

    def drop(self, chats: Iterable[object] = (), users: Iterable[object] = ()) -> None:
        """No connection here needs these chats' and users' channels any more."""
        self.drop_channels([*map(chat_channel, chats), *map(user_channel, users)])

    def want_channels(self, channels: Iterable[str]) -> bool:
        changed = unconfirmed = False
        for channel in channels:
            self._dropping.pop(channel, None)  # still subscribed if it was only going to be dropped
            if channel not in self._wanted:
                self._wanted.add(channel)
                changed = True
            unconfirmed = unconfirmed or channel not in self._subscribed
        if changed and self.routed:
            self._settled.clear()
            self._changed.set()
        return unconfirmed and self.routed

    def drop_channels(self, channels: Iterable[str]) -> None:
        """Unsubscribe in a while (a client that reconnects at once finds them still subscribed)."""
        deadline = time.monotonic() + DROP_DELAY_SECONDS
        for channel in channels:
            if channel in self._wanted:
                self._dropping[channel] = deadline
        self._changed.set()

    async def subscribed(self) -> None:
        """Return once every wanted channel is subscribed (confirmed by the broker)."""
        await self._settled.wait()

    async def _follow(self, session: Session) -> None:
        """Keep the session's subscriptions equal to the wanted channels."""
        while True:
            self._changed.clear()
            now = time.monotonic()
            expired = [c for c, deadline in self._dropping.items() if deadline <= now]
            for channel in expired:
                del self._dropping[channel]
                self._wanted.discard(channel)
            wanted = set(self._wanted)
            add, remove = sorted(wanted - self._subscribed), sorted(self._subscribed - wanted)
            if remove:
                await session.unsubscribe(remove)
                self._subscribed.difference_update(remove)
            if add:
                await session.subscribe(add)
                self._subscribed.update(add)
            if self._wanted <= self._subscribed:
                self._settled.set()
            if not self._changed.is_set():
                next_drop = min(self._dropping.values(), default=None)
                timeout = None if next_drop is None else max(0.0, next_drop - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)

    # -- the session -----------------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        backoff = BACKOFF_START
        first = True
        while True:
            try:
                await self._run_session(first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every broker fault ends the session the same way
                if self.connected:
                    log.warning("event bus lost (%s); reconnecting", exc.__class__.__name__)
                else:
                    log.debug("event bus not reachable yet: %r", exc)
            if self.connected:
                backoff = BACKOFF_START
                if self._on_lost is not None:
                    self._on_lost()
            self._connected.clear()
            first = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _run_session(self, first: bool) -> None:
        session: Session = LocalSession(self.url) if not self.routed else RedisSession(self.url)
        await asyncio.wait_for(session.open(), BROKER_TIMEOUT)
        self._subscribed = set()
        try:
            await session.subscribe([CONTROL], confirmed=False)  # the heartbeat's echo proves it
            self._session = session
            self._last_echo, self._unanswered = time.monotonic(), 0
            tasks = [
                asyncio.create_task(self._read(session, first)),
                asyncio.create_task(self._beat(session)),
                asyncio.create_task(self._follow(session)),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
                raise BrokerSilent("subscription ended")
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._session = None
            self._subscribed = set()
            if self._wanted:
                self._settled.clear()
            await session.close()

    async def _beat(self, session: Session) -> None:
        while True:
            await asyncio.wait_for(
                session.publish([([CONTROL], json.dumps(self._heartbeat_message()))]), BROKER_TIMEOUT
            )
            self._unanswered += 1
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if self._unanswered >= SILENT_BEATS and time.monotonic() - self._last_echo > SILENCE_SECONDS:
                raise BrokerSilent(f"no heartbeat back for {SILENCE_SECONDS}s ({self._unanswered} sent)")

    async def _read(self, session: Session, first: bool) -> None:
        async for raw in session.messages():
            try:
                message = json.loads(raw)
            except ValueError:
                log.warning("dropped a message that is not JSON from the bus")
                continue
            if not isinstance(message, dict):
                continue
            if message.get("type") == "_heartbeat" and message.get("process") == self._process_id:
                self._last_echo, self._unanswered = time.monotonic(), 0
                if not self.connected:
                    # Our own heartbeat came back: the subscription is live end to end.
                    self._connected.set()
                    if not first:
                        self.reconnects += 1
                        log.warning("event bus reconnected")
                    if self._on_connected is not None:
                        self._spawn(self._on_connected())
                continue
            try:
                self._on_message(message, raw)
            except Exception:  # one bad message must not stop the stream for everyone
                log.exception("failed to handle a bus message")

    # -- publishing ------------------------------------------------------------------------------------------

    async def publish_many(self, items: list[tuple[list[str], str]]) -> bool:
        """Publish JSON strings on their channels, in order, in one round trip. Never raises: a failed publish
        must not fail a committed write (the events are in the log and reach clients by catch-up)."""
        session = self._session
        if session is None or not self.connected:
            self.publish_failures += len(items)
            return False
        try:
            await session.publish(items)
        except Exception as exc:
            self.publish_failures += len(items)
            log.warning(
                "publish of %d messages failed (%s); clients catch up from the log", len(items), exc.__class__.__name__
            )
            return False
        self.published += len(items)
        return True

    async def publish_raw(self, raw: str, channels: list[str] | None = None) -> bool:
        return await self.publish_many([(channels or [CONTROL], raw)])

    def send_control(self, message: dict[str, Any]) -> None:
        """Fire-and-forget a control message (presence); losing one is repaired by the next heartbeat."""
        if self.connected:
            self._spawn(self.publish_raw(json.dumps(message)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())  # nobody's connection
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def channels_of(event: Event) -> list[str]:
    """Where a durable event is published: its chat's channel, and the channels of the users it is for or whose
    connections start or stop streaming the chat with it (they hear of it even while not streaming the chat)."""
    route = event.route()
    channels = [] if route.chat_id is None else [chat_channel(route.chat_id)]
    users = [] if route.user_id is None else [route.user_id]
    users += [*event.starts_streaming(), *event.stops_streaming()]
    channels += [user_channel(user_id) for user_id in dict.fromkeys(users)]
    return channels
