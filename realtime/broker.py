"""One connection to the broker, as the event bus (realtime.bus) uses it: subscribe, unsubscribe, publish, and the
messages that arrive. `RedisSession` for `redis://` (routed channels), `LocalSession` for broadcaster's in-process
`memory://` (one process, one channel: nothing to route)."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import redis.asyncio
from broadcaster import Broadcast

# The one channel of `memory://`.
LOCAL = "tailtrail.events"
# A publish or connect that takes longer than this is treated as a broker fault, never a hang.
BROKER_TIMEOUT = 2.0
# Channels named in one SUBSCRIBE or UNSUBSCRIBE command at most.
SUBSCRIBE_BATCH = 1000


class Session(ABC):
    """One connection to the broker: subscribe, unsubscribe, publish, and the messages that arrive."""

    routed = True

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def subscribe(self, channels: list[str], *, confirmed: bool = True) -> None: ...

    @abstractmethod
    async def unsubscribe(self, channels: list[str]) -> None: ...

    @abstractmethod
    async def publish(self, items: list[tuple[list[str], str]]) -> None: ...

    @abstractmethod
    def messages(self) -> AsyncIterator[str]: ...

    @abstractmethod
    async def close(self) -> None: ...


class LocalSession(Session):
    """`memory://`: broadcaster in one process; every message on one channel (there is nothing to route)."""

    routed = False

    def __init__(self, url: str) -> None:
        self._broadcast = Broadcast(url)
        self._subscription: Any = None
        self._subscriber: Any = None

    async def open(self) -> None:
        await self._broadcast.connect()
        self._subscription = self._broadcast.subscribe(LOCAL)
        self._subscriber = await self._subscription.__aenter__()

    async def subscribe(self, channels: list[str], *, confirmed: bool = True) -> None:
        pass

    async def unsubscribe(self, channels: list[str]) -> None:
        pass

    async def publish(self, items: list[tuple[list[str], str]]) -> None:
        for _, raw in items:
            await self._broadcast.publish(LOCAL, raw)

    async def messages(self) -> AsyncIterator[str]:
        async for item in self._subscriber:
            if item is None:
                return
            yield item.message

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.__aexit__(None, None, None)
        await self._broadcast.disconnect()


class RedisSession(Session):
    """Redis pub/sub on two connections of our own: one subscribing (its subscriptions change with the
    connections of this process), one publishing (many messages per round trip, in order)."""

    def __init__(self, url: str) -> None:
        self._publisher = redis.asyncio.Redis.from_url(url)
        self._client = redis.asyncio.Redis.from_url(url)
        self._pubsub = self._client.pubsub()
        # Channels whose SUBSCRIBE Redis has not confirmed yet, and who waits for them.
        self._unconfirmed: dict[str, asyncio.Future[None]] = {}

    async def open(self) -> None:
        # redis-py annotates ping() for its synchronous and asynchronous clients at once.
        await cast(Awaitable[bool], self._publisher.ping())

    async def subscribe(self, channels: list[str], *, confirmed: bool = True) -> None:
        """Subscribe, and (`confirmed`) return once Redis confirmed every channel: from then on it delivers what
        is published on them. (Confirmations arrive through `messages`, which must be running.)"""
        if not confirmed:
            await self._pubsub.subscribe(*channels)
            return
        loop = asyncio.get_running_loop()
        waits = []
        for channel in channels:
            future = self._unconfirmed.get(channel)
            if future is None:
                future = self._unconfirmed[channel] = loop.create_future()
            waits.append(future)
        for start in range(0, len(channels), SUBSCRIBE_BATCH):
            await self._pubsub.subscribe(*channels[start : start + SUBSCRIBE_BATCH])
        await asyncio.wait_for(asyncio.gather(*waits), BROKER_TIMEOUT)

    async def unsubscribe(self, channels: list[str]) -> None:
        for start in range(0, len(channels), SUBSCRIBE_BATCH):
            await self._pubsub.unsubscribe(*channels[start : start + SUBSCRIBE_BATCH])

    async def publish(self, items: list[tuple[list[str], str]]) -> None:
        async with self._publisher.pipeline(transaction=False) as pipe:
            for channels, raw in items:
                for channel in channels:
                    pipe.publish(channel, raw)
            await asyncio.wait_for(pipe.execute(), BROKER_TIMEOUT)

    async def messages(self) -> AsyncIterator[str]:
        while True:
            message = await self._pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            if kind == "subscribe":
                channel = message["channel"]
                future = self._unconfirmed.pop(channel.decode() if isinstance(channel, bytes) else channel, None)
                if future is not None and not future.done():
                    future.set_result(None)
            elif kind == "message":
                data = message["data"]
                yield data.decode() if isinstance(data, bytes) else data

    async def close(self) -> None:
        for future in self._unconfirmed.values():
            if not future.done():
                future.cancel()
        pubsub_closing: Awaitable[None] = self._pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
        for closing in (pubsub_closing, self._client.aclose(), self._publisher.aclose()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closing, BROKER_TIMEOUT)
