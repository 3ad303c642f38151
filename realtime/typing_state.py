"""Who is typing where, with expiry (SPEC §9: a `user_typing` not refreshed within the TTL ends by itself)."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Typing:
    origin: str | None
    timer: asyncio.TimerHandle


Key = tuple[uuid.UUID, uuid.UUID]  # (chat_id, user_id)


class TypingTracker:
    def __init__(self, ttl: float, on_expire: Callable[[uuid.UUID, uuid.UUID], None]) -> None:
        self.ttl = ttl
        self._on_expire = on_expire
        self._entries: dict[Key, _Typing] = {}

    def start(self, chat_id: uuid.UUID, user_id: uuid.UUID, *, origin: str | None = None) -> bool:
        """Mark typing (or refresh it). True if the user was not typing in that chat before."""
        key = (chat_id, user_id)
        # The expiry outlives the request that started it: run it in no connection's context.
        timer = asyncio.get_running_loop().call_later(self.ttl, self._expire, key, context=contextvars.Context())
        previous = self._entries.get(key)
        if previous is not None:
            previous.timer.cancel()
        self._entries[key] = _Typing(origin, timer)
        return previous is None

    def stop(self, chat_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """True if the user was typing in that chat."""
        entry = self._entries.pop((chat_id, user_id), None)
        if entry is None:
            return False
        entry.timer.cancel()
        return True

    def stop_for_disconnect(self, user_id: uuid.UUID, *, origin: str, last_connection: bool) -> list[uuid.UUID]:
        """Stop the typing a closing connection started (all of the user's, if it was their last one).

        Returns the chats in which typing stopped.
        """
        stopped = [
            chat_id
            for (chat_id, uid), entry in self._entries.items()
            if uid == user_id and (last_connection or entry.origin == origin)
        ]
        for chat_id in stopped:
            self.stop(chat_id, user_id)
        return stopped

    def _expire(self, key: Key) -> None:
        if self._entries.pop(key, None) is not None:
            self._on_expire(*key)
