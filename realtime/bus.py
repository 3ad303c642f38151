"""The event bus: one broadcaster channel shared by every process, supervised.

Every process subscribes once to a single channel and routes what arrives. One channel means no per-chat
subscribe races and no event lost because a chat's channel was not subscribed yet (both broadcaster
PITFALLS); the price is that every process sees every event: one JSON decode per event per process, not per
recipient. Messages are always JSON strings: `memory://` would pass Python objects through, Redis returns
`str`, and tests must not pass on one and fail on the other.

broadcaster's listener dies silently when Redis drops (PITFALLS: subscribers then block forever while
publishing still works). So the bus proves its own liveness end to end: every `HEARTBEAT_SECONDS` it publishes
a heartbeat and expects to hear it back on the subscription. Silence for `SILENCE_SECONDS`, or any error,
ends the session; the supervisor reconnects with backoff, resubscribes, and — once its own heartbeat comes
back — reports connected and calls `on_connected` (the runtime catches up from the event log).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio
from broadcaster import Broadcast

from realtime.presence import HEARTBEAT_SECONDS

log = logging.getLogger(__name__)

CHANNEL = "tailtrail.events"
# Four missed heartbeats: long enough to ride out a GC pause or a busy loop, short enough that a dead broker
# is noticed within two seconds.
SILENCE_SECONDS = 4 * HEARTBEAT_SECONDS
# Reconnect backoff: doubling from 0.1 s up to 1 s, so a broker that comes back is used again within a second.
BACKOFF_START, BACKOFF_MAX = 0.1, 1.0
# A publish or connect that takes longer than this is treated as a broker fault, never a hang.
BROKER_TIMEOUT = 2.0


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
    ) -> None:
        self.url = url
        self._on_message = on_message
        self._heartbeat_message = heartbeat
        self._process_id = process_id
        self._on_connected = on_connected
        self._broadcast: Broadcast | None = None
        self._publisher: redis.asyncio.Redis | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._last_echo = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.published = 0
        self.publish_failures = 0
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

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

    async def _supervise(self) -> None:
        backoff = BACKOFF_START
        first = True
        while True:
            try:
                await self._session(first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every broker fault ends the session the same way
                if self.connected:
                    log.warning("event bus lost (%s); reconnecting", exc.__class__.__name__)
                else:
                    log.debug("event bus not reachable yet: %r", exc)
            if self.connected:
                backoff = BACKOFF_START
            self._connected.clear()
            first = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _session(self, first: bool) -> None:
        broadcast = Broadcast(self.url)
        await asyncio.wait_for(broadcast.connect(), BROKER_TIMEOUT)
        self._broadcast = broadcast
        if self.url.startswith(("redis://", "rediss://")):
            # Our own connection for publishing: many events in one pipelined round trip (broadcaster publishes
            # one command at a time, and redis-py's per-command overhead was a fifth of a server's CPU).
            self._publisher = redis.asyncio.Redis.from_url(self.url)
        try:
            async with broadcast.subscribe(CHANNEL) as subscriber:
                self._last_echo = time.monotonic()
                reader = asyncio.create_task(self._read(subscriber, first))
                beater = asyncio.create_task(self._beat(broadcast))
                try:
                    done, _ = await asyncio.wait({reader, beater}, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                    raise BrokerSilent("subscription ended")
                finally:
                    for task in (reader, beater):
                        task.cancel()
                    await asyncio.gather(reader, beater, return_exceptions=True)
        finally:
            self._broadcast = None
            publisher, self._publisher = self._publisher, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broadcast.disconnect(), BROKER_TIMEOUT)
            if publisher is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(publisher.aclose(), BROKER_TIMEOUT)

    async def _beat(self, broadcast: Broadcast) -> None:
        while True:
            await asyncio.wait_for(broadcast.publish(CHANNEL, json.dumps(self._heartbeat_message())), BROKER_TIMEOUT)
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if time.monotonic() - self._last_echo > SILENCE_SECONDS:
                raise BrokerSilent(f"no heartbeat for {SILENCE_SECONDS}s")

    async def _read(self, subscriber: Any, first: bool) -> None:
        async for item in subscriber:
            if item is None:
                return
            raw = item.message
            try:
                message = json.loads(raw)
            except ValueError:
                log.warning("dropped a message that is not JSON from the bus")
                continue
            if message.get("type") == "_heartbeat" and message.get("process") == self._process_id:
                self._last_echo = time.monotonic()
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

    async def publish_raw(self, raw: str) -> bool:
        """Publish a JSON string. Never raises: a failed publish must not fail a committed write (the event is
        in the log and reaches clients by catch-up)."""
        broadcast = self._broadcast
        if broadcast is None or not self.connected:
            self.publish_failures += 1
            return False
        try:
            await asyncio.wait_for(broadcast.publish(CHANNEL, raw), BROKER_TIMEOUT)
        except Exception as exc:
            self.publish_failures += 1
            log.warning("publish failed (%s); clients catch up from the log", exc.__class__.__name__)
            return False
        self.published += 1
        return True

    async def publish_many(self, raws: list[str]) -> bool:
        """Publish JSON strings in order, in one round trip where the broker allows. Never raises (as
        `publish_raw`): what fails is counted, and clients catch up from the log."""
        publisher = self._publisher
        if publisher is None or not self.connected:
            for raw in raws:
                await self.publish_raw(raw)
            return True
        try:
            async with publisher.pipeline(transaction=False) as pipe:
                for raw in raws:
                    pipe.publish(CHANNEL, raw)
                await asyncio.wait_for(pipe.execute(), BROKER_TIMEOUT)
        except Exception as exc:
            self.publish_failures += len(raws)
            log.warning(
                "publish of %d events failed (%s); clients catch up from the log", len(raws), exc.__class__.__name__
            )
            return False
        self.published += len(raws)
        return True

    def send_control(self, message: dict[str, Any]) -> None:
        """Fire-and-forget a control message (presence); losing one is repaired by the next heartbeat."""
        if self.connected:
            self._spawn(self.publish_raw(json.dumps(message)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())  # nobody's connection
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
