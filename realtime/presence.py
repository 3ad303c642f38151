"""Global presence and typing, agreed by every process over the bus.

Each process owns its local truth (which users have a connection here, who started typing here) and tells
the others over the bus: a heartbeat every `HEARTBEAT_SECONDS` carrying the version of its online set, a
delta on every change, and a full snapshot when asked (a newcomer, or a receiver that missed a delta). A
process that falls silent for `timeout` seconds — SIGKILL, a lost machine, a broker outage — is forgotten:
its users count as offline unless connected elsewhere, and the typing it started is cleared, with a local
`user_stopped_typing` to each connection that saw it start.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A heartbeat twice a second finds a silent broker (see bus.py) and a dead process quickly, for the price
# of a few dozen bytes per process per beat.
HEARTBEAT_SECONDS = 0.5

Send = Callable[[dict[str, Any]], None]


@dataclass
class _Peer:
    version: int = -1
    users: set[uuid.UUID] = field(default_factory=set)
    last_heard: float = 0.0
    asked_at: float = 0.0


class Presence:
    def __init__(self, process_id: str, *, timeout: float, send: Send) -> None:
        self.process_id = process_id
        self.timeout = timeout
        self._send = send
        self._local: dict[uuid.UUID, int] = {}
        self._version = 0
        self._peers: dict[str, _Peer] = {}
        # (chat, user) -> the process that started the typing (it will also stop it, unless it dies)
        self._typing: dict[tuple[uuid.UUID, uuid.UUID], str] = {}
        # Set whenever a peer's snapshot arrives (see `settled`).
        self.updated = asyncio.Event()
        # Set whenever the global online set may have changed (a local connection, a peer's delta, snapshot or
        # silence): what services.presence_feed waits for.
        self.changed = asyncio.Event()
        # Users a peer's snapshot brought (a process starting, or one whose delta was missed): online already
        # before we heard, so not news for services.presence_feed (`take_snapshot_arrivals`).
        self._snapshot_arrivals: set[uuid.UUID] = set()
        # Users whose global state may have changed since the last `take_touched` (what `changed` is set for): the
        # feed looks at them alone, not at the whole online set each time (a storm of N arrivals would cost N²).
        self._touched: set[uuid.UUID] = set()

    # -- local truth --------------------------------------------------------------------------------

    def connected(self, user_id: uuid.UUID) -> None:
        count = self._local.get(user_id, 0)
        self._local[user_id] = count + 1
        if count == 0:
            self._changed(user_id, online=True)

    def disconnected(self, user_id: uuid.UUID) -> bool:
        """True if that was the user's last connection in this process."""
        count = self._local.get(user_id, 0) - 1
        if count > 0:
            self._local[user_id] = count
            return False
        self._local.pop(user_id, None)
        self._changed(user_id, online=False)
        return True

    def _changed(self, user_id: uuid.UUID, *, online: bool) -> None:
        self._touched.add(user_id)
        self.changed.set()
        self._version += 1
        self._send(
            {
                "type": "_presence_delta",
                "process": self.process_id,
                "version": self._version,
                "user": str(user_id),
                "online": online,
            }
        )

    def take_touched(self) -> set[uuid.UUID]:
        """The users whose online state may have changed since the last call (locally, or by a peer's word)."""
        touched, self._touched = self._touched, set()
        return touched

    def take_snapshot_arrivals(self) -> set[uuid.UUID]:
        """The users peers' snapshots have added since the last call."""
        arrivals, self._snapshot_arrivals = self._snapshot_arrivals, set()
        return arrivals

    # -- the global view ----------------------------------------------------------------------------

    def is_online(self, user_id: uuid.UUID) -> bool:
        if user_id in self._local:
            return True
        return any(user_id in peer.users for peer in self._peers.values())

    def online_users(self) -> set[uuid.UUID]:
        users = set(self._local)
        for peer in self._peers.values():
            users |= peer.users
        return users

    def typing_in(self, chat_id: uuid.UUID) -> set[uuid.UUID]:
        return {uid for (cid, uid) in self._typing if cid == chat_id}

    def typing_started(self, chat_id: uuid.UUID, user_id: uuid.UUID, origin: str | None) -> None:
        self._typing[(chat_id, user_id)] = origin or self.process_id

    def typing_stopped(self, chat_id: uuid.UUID, user_id: uuid.UUID) -> None:
        self._typing.pop((chat_id, user_id), None)

    # -- the protocol -------------------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any]:
        return {"type": "_heartbeat", "process": self.process_id, "version": self._version}

    def hello(self) -> None:
        """Ask every process for its snapshot (a process that just started knows nobody)."""
        self._send({"type": "_presence_request", "process": self.process_id, "target": None})

    def handle(self, message: dict[str, Any]) -> None:
        """A control message from the bus (our own included)."""
        sender = message.get("process")
        if not isinstance(sender, str):
            return
        kind = message.get("type")
        if kind == "_presence_request":
            if sender != self.process_id and message.get("target") in (None, self.process_id):
                self._send_snapshot()
            return
        if sender == self.process_id:
            return
        peer = self._peers.setdefault(sender, _Peer())
        peer.last_heard = time.monotonic()
        version = message.get("version")
        if kind == "_presence_snapshot":
            peer.version = int(version) if isinstance(version, int) else -1
            users = {uuid.UUID(u) for u in message.get("users", [])}
            self._snapshot_arrivals |= users - peer.users
            self._touched |= users ^ peer.users
            peer.users = users
            self.updated.set()
            self.changed.set()
        elif kind == "_presence_delta":
            if version == peer.version + 1:
                user = uuid.UUID(message["user"])
                (peer.users.add if message.get("online") else peer.users.discard)(user)
                peer.version = version
                self._touched.add(user)
                self.changed.set()
            else:
                self._ask(sender, peer)
        elif kind == "_heartbeat" and version != peer.version:
            self._ask(sender, peer)

    def _send_snapshot(self) -> None:
        self._send(
            {
                "type": "_presence_snapshot",
                "process": self.process_id,
                "version": self._version,
                "users": [str(u) for u in self._local],
            }
        )

    def _ask(self, sender: str, peer: _Peer) -> None:
        now = time.monotonic()
        if now - peer.asked_at > HEARTBEAT_SECONDS:  # at most one request per beat per peer
            peer.asked_at = now
            self._send({"type": "_presence_request", "process": self.process_id, "target": sender})

    def expire(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """Forget processes silent for longer than the timeout; return the typing they leave behind."""
        deadline = time.monotonic() - self.timeout
        dead = {pid for pid, peer in self._peers.items() if peer.last_heard < deadline}
        for pid in dead:
            self._touched |= self._peers.pop(pid).users
            self.changed.set()
        orphaned = [key for key, origin in self._typing.items() if origin in dead]
        for key in orphaned:
            del self._typing[key]
        return orphaned

    def settled(self) -> bool:
        """Every process heard from so far has sent its full online set."""
        return all(peer.version >= 0 for peer in self._peers.values())
