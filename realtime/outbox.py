"""A bounded per-connection outbox.

broadcaster's own per-subscriber queues are unbounded (PITFALLS), so one stalled client could grow server
memory without limit. Every connection instead reads from an `Outbox` bounded by count and bytes: when it is
full, ephemeral items (typing) are dropped first; when a durable item still does not fit, the outbox
overflows and the connection must be closed (code 1013) so the client resumes from its cursor.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class OutboxClosed(Exception):
    """The outbox was closed; `reason` says why ("overflow" or "closed")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _Entry(Generic[T]):
    item: T
    size: int
    ephemeral: bool


class Outbox(Generic[T]):
    def __init__(self, *, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._entries: deque[_Entry[T]] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
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
        if not self._fits(size):
            if ephemeral:
                self.dropped += 1
                return False
            self._evict_ephemeral(size)
            if not self._fits(size):
                self.close("overflow")
                return False
        self._entries.append(_Entry(item, size, ephemeral))
        self._bytes += size
        self._ready.set()
        return True

    def _fits(self, size: int) -> bool:
        return len(self._entries) < self.max_items and self._bytes + size <= self.max_bytes

    def _evict_ephemeral(self, size: int) -> None:
        """Drop queued ephemeral items, oldest first, until `size` more bytes and one more item fit."""
        count, total = len(self._entries), self._bytes
        kept: deque[_Entry[T]] = deque()
        for entry in self._entries:
            fits = count < self.max_items and total + size <= self.max_bytes
            if entry.ephemeral and not fits:
                count -= 1
                total -= entry.size
                self.dropped += 1
            else:
                kept.append(entry)
        self._entries, self._bytes = kept, total

    async def get(self) -> T:
        while not self._entries:
            if self.closed_reason is not None:
                raise OutboxClosed(self.closed_reason)
            self._ready.clear()
            await self._ready.wait()
        if self.closed_reason == "overflow":
            raise OutboxClosed("overflow")
        entry = self._entries.popleft()
        self._bytes -= entry.size
        return entry.item

    def close(self, reason: str = "closed") -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        if reason == "overflow":
            self._entries.clear()
            self._bytes = 0
        self._ready.set()
