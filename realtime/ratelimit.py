"""Per-connection command rate limiting: a token bucket, plus a count of refusals for sustained abuse."""

from __future__ import annotations

import time
from collections import deque

from server.config import Settings

# Refusals are counted over this window: a burst that is refused a few times is a burst, a client refused
# `strikes` times within it is abusing the server.
STRIKE_WINDOW_SECONDS = 10.0


class RateLimiter:
    @classmethod
    def for_connection(cls, settings: Settings) -> RateLimiter:
        """The limiter of one WebSocket connection, from RATE_LIMIT_PER_SECOND / _BURST / _STRIKES."""
        return cls(
            per_second=settings.rate_limit_per_second,
            burst=settings.rate_limit_burst,
            strikes=settings.rate_limit_strikes,
        )

    def __init__(self, *, per_second: float, burst: int, strikes: int) -> None:
        self.per_second = per_second
        self.burst = burst
        self.strikes = strikes
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        # Times of recent refusals; created on the first one (an empty deque costs ~0.7 KiB per connection).
        self._refusals: deque[float] | None = None

    def allow(self) -> bool:
        """Take a token for one command; False if the bucket is empty (the command is refused)."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.per_second)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if self._refusals is None:
            self._refusals = deque()
        self._refusals.append(now)
        while self._refusals and self._refusals[0] < now - STRIKE_WINDOW_SECONDS:
            self._refusals.popleft()
        return False

    @property
    def abusive(self) -> bool:
        """Refused `strikes` times within the window: close the connection."""
        return self._refusals is not None and len(self._refusals) >= self.strikes

    def wait_time(self) -> float:
        """Seconds until the next token (for pacing instead of refusing)."""
        return max(0.0, (1.0 - self._tokens) / self.per_second)
