"""An open socket's token expiry: the socket is closed when its token expires (plus the clock-skew leeway),
unless the client hands over a fresh token on the socket first (`renew`)."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable

# The close reason of a socket whose token expired, on every protocol (code: close_codes.TOKEN_EXPIRED).
TOKEN_EXPIRED_REASON = "token expired"


class TokenExpiry:
    def __init__(self, expires_at: float | None, *, leeway: float, on_expired: Callable[[], None]) -> None:
        self.leeway = leeway
        self._on_expired = on_expired
        self._timer: asyncio.TimerHandle | None = None
        self.expires_at: float | None = None
        self.renew(expires_at)

    def renew(self, expires_at: float | None) -> None:
        """Watch a new expiry (None: never)."""
        self.cancel()
        self.expires_at = expires_at
        if expires_at is not None:
            delay = max(0.0, expires_at + self.leeway - time.time())
            # In the caller's context: the close it leads to is logged as the connection's.
            self._timer = asyncio.get_running_loop().call_later(
                delay, self._expired, context=contextvars.copy_context()
            )

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Stop watching for good, and let go of the callback: it is usually a method of the object that holds this
        one, a cycle only a full garbage collection would free once the socket is gone."""
        self.cancel()
        self._on_expired = _nothing

    def _expired(self) -> None:
        self._timer = None
        self._on_expired()


def _nothing() -> None:
    pass
