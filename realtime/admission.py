"""Who may hold another WebSocket in this process: authenticated sockets per user, and sockets still waiting for
their `connection_init` per client address.

- A user's sockets (legacy sockets and authenticated GraphQL sockets, whatever they subscribe to) are capped by
  `MAX_CONNECTIONS_PER_USER`: phones, tabs and laptops, not a botnet.
- A GraphQL socket costs memory from its handshake on, before anyone knows who opened it; until its
  `connection_init` it is "pending", and each client address may hold `MAX_PENDING_SOCKETS_PER_ADDRESS` of
  them (the init timeout closes each after 10 s).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Hashable


class _Counts:
    """Counts by key under a cap; a key at zero is forgotten."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: Counter[Hashable] = Counter()
        self.refused = 0  # a running total

    def acquire(self, key: Hashable) -> bool:
        if self._counts[key] >= self.limit:
            self.refused += 1
            return False
        self._counts[key] += 1
        return True

    def release(self, key: Hashable) -> None:
        left = self._counts[key] - 1
        if left > 0:
            self._counts[key] = left
        else:
            del self._counts[key]

    def of(self, key: Hashable) -> int:
        return self._counts.get(key, 0)

    @property
    def total(self) -> int:
        return sum(self._counts.values())


class Admission:
    def __init__(self, *, per_user: int, pending_per_address: int) -> None:
        self._users = _Counts(per_user)
        self._pending = _Counts(pending_per_address)

    @property
    def per_user(self) -> int:
        return self._users.limit

    def admit_user(self, user_id: uuid.UUID) -> bool:
        """Count one more socket of `user_id`; False (nothing counted) if the user has `per_user` already."""
        return self._users.acquire(user_id)

    def release_user(self, user_id: uuid.UUID) -> None:
        self._users.release(user_id)

    def sockets_of(self, user_id: uuid.UUID) -> int:
        return self._users.of(user_id)

    def admit_pending(self, address: str | None) -> bool:
        """Count one more socket waiting for its init from `address`; False if that address has its share."""
        return self._pending.acquire(address)

    def release_pending(self, address: str | None) -> None:
        self._pending.release(address)

    @property
    def pending(self) -> int:
        """Sockets waiting for their `connection_init` now."""
        return self._pending.total

    @property
    def refused(self) -> dict[str, int]:
        """Sockets refused so far: over the per-user limit, over the pending limit of their address."""
        return {"per_user": self._users.refused, "pending_per_address": self._pending.refused}
