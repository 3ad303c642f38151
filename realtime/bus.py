"""The event bus: one broadcaster channel shared by every process.

Every process subscribes once, at start-up and before it reports ready, to a single channel, and routes
what arrives through its hub. One channel means no per-chat subscribe races and no event lost because a
chat's channel was not subscribed yet (both broadcaster PITFALLS); the price is that every process sees
every event, which costs one JSON decode per event per process, not per recipient.

Messages on the channel are always JSON strings: `memory://` would pass Python objects through, Redis
returns `str`, and tests must not pass on one and fail on the other (PITFALLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from broadcaster import Broadcast

from realtime.events import Event

log = logging.getLogger(__name__)

CHANNEL = "tailtrail.events"


class EventBus:
    def __init__(self, url: str, on_message: Callable[[str], None]) -> None:
        self.url = url
        self._broadcast = Broadcast(url)
        self._on_message = on_message
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.published = 0
        self.publish_failures = 0

    async def start(self) -> None:
        await self._broadcast.connect()
        self._listener = asyncio.create_task(self._listen(), name="event-bus-listener")
        # Events published before the subscription is registered are lost: do not report ready before.
        waiter = asyncio.create_task(self._subscribed.wait())
        done, _ = await asyncio.wait({waiter, self._listener}, return_when=asyncio.FIRST_COMPLETED)
        if self._listener in done:
            waiter.cancel()
            self._listener.result()  # raises what stopped it
            raise RuntimeError("event bus listener stopped during start-up")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        with contextlib.suppress(Exception):
            await self._broadcast.disconnect()

    async def _listen(self) -> None:
        async with self._broadcast.subscribe(CHANNEL) as subscriber:
            self._subscribed.set()
            async for item in subscriber:  # type: ignore[union-attr]
                if item is None:
                    return
                try:
                    self._on_message(item.message)
                except Exception:  # one bad event must not stop the stream for everyone
                    log.exception("failed to dispatch an event")

    async def publish(self, event: Event, raw: str | None = None) -> bool:
        """Publish a committed event (`raw`: its encoding, if already made). Never raises: a failed publish
        must not fail a committed write; the event is in the log and reaches clients by replay."""
        raw = raw if raw is not None else event.encode()
        try:
            await self._broadcast.publish(CHANNEL, raw)
        except Exception:
            self.publish_failures += 1
            log.exception("failed to publish %s", event.type)
            return False
        self.published += 1
        return True
