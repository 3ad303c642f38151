"""A bounded per-connection outbox.

broadcaster's own per-subscriber queues are unbounded (docs/library-notes.md), so one stalled client could grow server
memory without limit. Every connection instead reads from an `Outbox` bounded by count and bytes: when it is
full, ephemeral items (typing) are dropped first; when a durable item still does not fit, the outbox
overflows and the connection must be closed (code 1013) so the client resumes from its cursor.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class OutboxClosed(Exception):
    """The outbox was closed; `reason` says why ("overflow" or "closed")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# A queued item: (item, size in bytes, ephemeral). Tuples: one is built per delivery, on the hot path.
_Entry = tuple[T, int, bool]


class Outbox(Generic[T]):
    """One reader (the connection's writer), many producers that never wait."""

    __slots__ = ("_bytes", "_entries", "_waiter", "closed_reason", "dropped", "max_bytes", "max_items")

    def __init__(self, *, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._entries: list[_Entry[T]] = []  # a list: an empty deque costs ~0.7 KiB per connection
        self._bytes = 0
        # The reader's pending wait, if it is waiting: a bare future is the cheapest wake-up there is.
        self._waiter: asyncio.Future[None] | None = None
        self.closed_reason: str | None = None
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def put(self, item: T, *, size: int, ephemeral: bool) -> bool:
        """Queue an item without waiting. False if it was dropped or the outbox overflowed."""
        if self.closed_reason is not None:
            return False
        if len(self._entries) >= self.max_items or self._bytes + size > self.max_bytes:
            if ephemeral:
                self.dropped += 1
                return False
            self._evict_ephemeral(size)
            if not self._fits(size):
                self.close("overflow")
                return False
        self._entries.append((item, size, ephemeral))
        self._bytes += size
        self._wake()
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fits(self, size: int) -> bool:
        return len(self._entries) < self.max_items and self._bytes + size <= self.max_bytes

    def _evict_ephemeral(self, size: int) -> None:
        """Drop queued ephemeral items, oldest first, until `size` more bytes and one more item fit."""
        count, total = len(self._entries), self._bytes
        kept: list[_Entry[T]] = []
        for entry in self._entries:
            fits = count < self.max_items and total + size <= self.max_bytes
            if entry[2] and not fits:
                count -= 1
                total -= entry[1]
                self.dropped += 1
            else:
                kept.append(entry)
        self._entries, self._bytes = kept, total

    async def _wait(self) -> None:
        while not self._entries:
            if self.closed_reason is not None:
                raise OutboxClosed(self.closed_reason)
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self.closed_reason == "overflow":
            raise OutboxClosed("overflow")

    async def get(self) -> T:
        """The oldest item, waiting for one; raises `OutboxClosed` when the outbox was closed and is empty,
        or at once when it overflowed."""
        if not self._entries or self.closed_reason is not None:
            await self._wait()
        item, size, _ = self._entries.pop(0)
        self._bytes -= size
        return item

    async def take_all(self) -> list[T]:
        """Every queued item, oldest first, waiting for at least one (`OutboxClosed` as `get`)."""
        if not self._entries or self.closed_reason is not None:
            await self._wait()
        entries, self._entries, self._bytes = self._entries, [], 0
        return [entry[0] for entry in entries]

    def close(self, reason: str = "closed") -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        if reason == "overflow":
            self._entries.clear()
            self._bytes = 0
        self._wake()
