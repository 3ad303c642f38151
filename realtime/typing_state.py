"""Who is typing where: expiry, and how often the chat hears of it.

- A typing not refreshed within the TTL ends by itself; a disconnect ends the typing its connection started.
- Each (chat, user) typing state reaches the chat at most once per `interval`: the first change goes out at once,
  later ones wait for the interval to end and then only the latest state goes out, if it differs from what the
  chat last heard. A user toggling a hundred times a second costs the chat's members one event per interval,
  not a hundred (each event is one delivery per member's connection).
- Typing commands are rate-limited per user (a token bucket of `burst`, refilled at `per_second`), across all
  the user's sockets and HTTP requests in this process: each command costs a membership check.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

Key = tuple[uuid.UUID, uuid.UUID]  # (chat_id, user_id)
# `announce(chat_id, user_id, typing)`: tell the chat; called from timers in no connection's context.
Announce = Callable[[uuid.UUID, uuid.UUID, bool], None]
# Users whose bucket is idle (full again) are forgotten once this many are tracked.
BUCKETS_PRUNE_AT = 10_000


@dataclass(slots=True)
class _Typing:
    origin: str | None
    timer: asyncio.TimerHandle


@dataclass(slots=True)
class _Heard:
    """What the chat last heard of one user's typing, and when; `flush` is pending while changes wait."""

    typing: bool
    at: float
    flush: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TypingTracker:
    def __init__(
        self, ttl: float, announce: Announce, *, interval: float = 0.0, per_second: float = 1e9, burst: int = 1 << 30
    ) -> None:
        self.ttl = ttl
        self.interval = interval
        self.per_second = per_second
        self.burst = burst
        self._announce = announce
        self._entries: dict[Key, _Typing] = {}
        self._heard: dict[Key, _Heard] = {}
        self._buckets: dict[uuid.UUID, _Bucket] = {}

    # -- rate ----------------------------------------------------------------------------------------

    def allow(self, user_id: uuid.UUID) -> bool:
        """Take one typing command of `user_id` from its bucket; False if it is empty (refuse the command)."""
        now = time.monotonic()
        bucket = self._buckets.get(user_id)
        if bucket is None:
            if len(self._buckets) >= BUCKETS_PRUNE_AT:
                self._prune(now)
            bucket = self._buckets[user_id] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.per_second)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.per_second
        for user_id in [u for u, b in self._buckets.items() if now - b.stamp >= full_after]:
            del self._buckets[user_id]

    # -- state ---------------------------------------------------------------------------------------

    def start(self, chat_id: uuid.UUID, user_id: uuid.UUID, *, origin: str | None = None) -> None:
        """Mark typing (or refresh it)."""
        key = (chat_id, user_id)
        # The expiry outlives the request that started it: run it in no connection's context.
        timer = asyncio.get_running_loop().call_later(self.ttl, self._expire, key, context=contextvars.Context())
        previous = self._entries.get(key)
        if previous is not None:
            previous.timer.cancel()
        self._entries[key] = _Typing(origin, timer)
        if previous is None:
            self._changed(key)

    def stop(self, chat_id: uuid.UUID, user_id: uuid.UUID) -> None:
        key = (chat_id, user_id)
        entry = self._entries.pop(key, None)
        if entry is not None:
            entry.timer.cancel()
            self._changed(key)

    def stop_for_disconnect(self, user_id: uuid.UUID, *, origin: str, last_connection: bool) -> None:
        """Stop the typing a closing connection started (all of the user's, if it was their last one)."""
        stopped = [
            chat_id
            for (chat_id, uid), entry in self._entries.items()
            if uid == user_id and (last_connection or entry.origin == origin)
        ]
        for chat_id in stopped:
            self.stop(chat_id, user_id)

    def is_typing(self, chat_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        return (chat_id, user_id) in self._entries

    def _expire(self, key: Key) -> None:
        if self._entries.pop(key, None) is not None:
            self._changed(key)

    # -- what the chat hears ---------------------------------------------------------------------------

    def _changed(self, key: Key) -> None:
        heard = self._heard.get(key)
        loop = asyncio.get_running_loop()
        if heard is not None and heard.flush is not None:
            return  # the pending flush will tell the latest state
        if heard is not None and loop.time() - heard.at < self.interval:
            heard.flush = loop.call_at(heard.at + self.interval, self._flush, key, context=contextvars.Context())
            return
        self._tell(key, loop.time())

    def _flush(self, key: Key) -> None:
        heard = self._heard[key]
        heard.flush = None
        if (key in self._entries) != heard.typing:
            self._tell(key, asyncio.get_running_loop().time())
        elif not heard.typing:
            del self._heard[key]

    def _tell(self, key: Key, now: float) -> None:
        typing = key in self._entries
        heard = self._heard.get(key)
        if heard is not None and heard.typing == typing:
            return
        if heard is None and not typing:
            return  # nobody heard it start
        self._heard[key] = heard = _Heard(typing, now)
        if self.interval > 0:
            # Look again when the interval ends: tell a change that waited, or forget a stop.
            heard.flush = asyncio.get_running_loop().call_later(
                self.interval, self._flush, key, context=contextvars.Context()
            )
        elif not typing:
            del self._heard[key]
        self._announce(key[0], key[1], typing)
