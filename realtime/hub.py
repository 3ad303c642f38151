"""The per-process hub: which local connection streams which chat, and the fan-out of bus events to them.

The hub never awaits while fanning out: each event is routed with dictionary lookups and offered to each
connection's bounded `Outbox`, so one slow socket cannot hold up the others (docs/protocols.md: slow consumers get 1013).
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from realtime.eager import Suspended
from realtime.events import Event, Route
from realtime.metrics import Histogram
from realtime.outbox import Outbox
from realtime.positions import Vector

log = logging.getLogger(__name__)

_connection_ids = itertools.count(1)


class Delivery:
    """One event on its way to many connections: decoded once, each wire form encoded at most once.

    `after` is how far the recipients' streams are once they have it (realtime.positions): its cursor is the
    event's `cursor` on the wire. Ephemeral events have none."""

    __slots__ = ("_encoded", "after", "event", "raw")

    def __init__(self, event: Event, raw: str, after: Vector | None = None) -> None:
        self.event = event
        self.raw = raw
        self.after = after
        self._encoded: dict[Hashable, Any] = {}

    @property
    def cursor(self) -> str | None:
        return None if self.after is None or self.event.pos is None else self.after.cursor()

    def encoded(self, form: Hashable, encode: Callable[[Event, str | None], Any]) -> Any:
        """The event in wire form `form` (with its cursor), computed by `encode` for the first recipient only."""
        try:
            return self._encoded[form]
        except KeyError:
            value = self._encoded[form] = encode(self.event, self.cursor)
            return value

    def cached(self, form: Hashable) -> Any:
        """The event in wire form `form` if a recipient computed it already (see `store`), else None."""
        return self._encoded.get(form)

    def store(self, form: Hashable, value: Any) -> None:
        """Keep a wire form computed asynchronously, for the next recipients."""
        self._encoded[form] = value


def new_connection_id(kind: str) -> str:
    """A process-unique id for a socket or stream (`legacy-7`, `graphql-8`): it names it in logs and warnings."""
    return f"{kind}-{next(_connection_ids)}"


class Transport(Protocol):
    """A client socket as the fan-out sees it (realtime.stream: `StreamWriter`, `Queued`)."""

    def send_now(self, delivery: Delivery) -> bool:
        """Send `delivery` at once if nothing is queued before it on the socket (realtime.eager). False: the hub
        queues it in the connection's outbox instead."""
        ...

    def overflowed(self) -> None:
        """The connection's outbox overflowed: end the connection (1013), even if its writer is stuck in a send."""
        ...

    def release(self) -> None:
        """The connection is closed: drop what the transport holds (a closed connection is then freed by
        reference counting alone)."""
        ...


class Connection:
    """One client stream (a legacy socket or a `chatEvents` subscription) of one user."""

    def __init__(
        self,
        user_id: uuid.UUID,
        kind: str,
        outbox: Outbox[OutboxItem],
        transport: Transport,
        conn_id: str | None = None,
    ) -> None:
        self.id = conn_id or new_connection_id(kind)
        self.user_id = user_id
        self.kind = kind
        self.outbox = outbox
        self.transport = transport
        # Chats whose events this connection receives: every chat the user belongs to...
        self.chats: set[uuid.UUID] = set()
        # ...except those this connection paused (legacy `leave_chat`); membership is unchanged.
        self.paused: set[uuid.UUID] = set()
        # Users the connection's user blocks: their messages and typing are not delivered here (Route.from_user_id).
        # Loaded when the stream opens (`blocks_loaded`), kept current by `BlockChanged` events (`block`).
        self.blocked: frozenset[uuid.UUID] = frozenset()
        self._block_changes: dict[uuid.UUID, bool] | None = {}  # what arrived before the load: applied on top
        # Under HISTORY_VISIBILITY=joined, per group the user joined after its start: the seq they joined at. Events
        # about its messages up to there (edits, deletions, reactions) are not delivered here (Route.message_seq).
        self.joined_at: dict[uuid.UUID, int] = {}
        self.overflowed = False
        # True once opening or watching for this connection made the process subscribe to a chat or user it did
        # not receive: the stream reads what it missed from the log (services.streams).
        self.subscribed_new = False
        # True once a membership change about its user (a chat it starts or stops streaming) reached the connection:
        # the chats its stream read when it opened no longer say whose events it replays (services.streams).
        self.membership_moved = False

    def __repr__(self) -> str:
        return f"<Connection {self.id} user={self.user_id}>"

    def reply(self, text: str) -> None:
        """Queue a reply to this connection's own command, in order with its events (one writer per socket)."""
        self.outbox.put(text, size=len(text), ephemeral=False)

    def receives(self, route: Route) -> bool:
        """False for an event this connection does not receive: it reports a user its user blocks, or concerns a
        message sent before its user joined the group (`joined_at`)."""
        if route.from_user_id is not None and route.from_user_id in self.blocked:
            return False
        return route.message_seq is None or not self.hides(route.chat_id, route.message_seq)

    def hides(self, chat_id: uuid.UUID | None, message_seq: int) -> bool:
        joined = self.joined_at.get(chat_id) if chat_id is not None else None
        return joined is not None and message_seq <= joined

    def block(self, user_id: uuid.UUID, blocked: bool) -> None:
        """The user blocked (or unblocked) `user_id` (a `BlockChanged` event)."""
        self.blocked = self.blocked | {user_id} if blocked else self.blocked - {user_id}
        if self._block_changes is not None:
            self._block_changes[user_id] = blocked

    def blocks_loaded(self, blocked: Iterable[uuid.UUID]) -> None:
        """The block list as read when the stream opened. A change that arrived while it was read is newer or the
        same: it is applied on top, so the read cannot undo it."""
        current = set(blocked)
        for user_id, state in (self._block_changes or {}).items():
            (current.add if state else current.discard)(user_id)
        self.blocked, self._block_changes = frozenset(current), None


class Interest(Protocol):
    """What the hub tells the bus: the chats and users whose events this process now needs, or no longer."""

    def want(self, chats: Iterable[uuid.UUID] = (), users: Iterable[uuid.UUID] = ()) -> bool:
        """True if one of them is not subscribed and confirmed yet (its events until now did not come here)."""
        ...

    def drop(self, chats: Iterable[uuid.UUID] = (), users: Iterable[uuid.UUID] = ()) -> None: ...


class CatchUp:
    """An outbox item: the connection started streaming a chat this process did not receive until now (a chat
    created with its user, or its user added). What the chat's channel carried before this process subscribed
    is read from the log, from `after` (how far the connection's stream was) on, before anything after it."""

    __slots__ = ("after",)

    def __init__(self, after: Vector | None) -> None:
        self.after = after


# What a connection's outbox holds: events, replies (text), catch-ups, and sends the fan-out started that the
# socket's backpressure held up (realtime.eager).
OutboxItem = Delivery | str | CatchUp | Suspended


class Hub:
    def __init__(
        self, *, outbox_max_events: int, outbox_max_bytes: int, interest: Interest, history_from_joining: bool = False
    ) -> None:
        self._outbox_max_events = outbox_max_events
        # HISTORY_VISIBILITY=joined: a member added to a group does not hear of its earlier messages (`joined_at`).
        self._history_from_joining = history_from_joining
        self._outbox_max_bytes = outbox_max_bytes
        self._interest = interest
        self._by_user: dict[uuid.UUID, set[Connection]] = {}
        self._by_chat: dict[uuid.UUID, set[Connection]] = {}
        self.open_by_kind: dict[str, int] = {}
        self.send_latency = Histogram()
        self.closed_connections = 0  # a running total
        self.delivered = 0
        self.dropped = 0
        self.overflows = 0

    @property
    def open_connections(self) -> int:
        return sum(self.open_by_kind.values())

    # -- connections -------------------------------------------------------------------------------

    def open(self, user_id: uuid.UUID, kind: str, transport: Transport, conn_id: str | None = None) -> Connection:
        """Register a connection by user first, so membership events reach it before its chats are loaded."""
        outbox: Outbox[OutboxItem] = Outbox(max_items=self._outbox_max_events, max_bytes=self._outbox_max_bytes)
        conn = Connection(user_id, kind, outbox, transport, conn_id)
        conn.subscribed_new = self._interest.want(users=[user_id])
        self._by_user.setdefault(user_id, set()).add(conn)
        self.open_by_kind[kind] = self.open_by_kind.get(kind, 0) + 1
        return conn

    def close(self, conn: Connection) -> bool:
        """Forget a connection. True if it was the user's last one in this process."""
        # The transport references the adapter's tasks and sockets: releasing them lets a closed connection be
        # freed by reference counting alone, instead of waiting (as a cycle) for a full garbage collection.
        conn.transport.release()
        if conn in self._by_user.get(conn.user_id, ()):
            self.open_by_kind[conn.kind] -= 1
            self.closed_connections += 1
        conn.outbox.close()
        unwatched = [chat_id for chat_id in conn.chats if self._discard(self._by_chat, chat_id, conn)]
        conn.chats.clear()
        last = self._discard(self._by_user, conn.user_id, conn)
        self._interest.drop(chats=unwatched, users=[conn.user_id] if last else [])
        return last

    def watch(self, conn: Connection, chat_ids: set[uuid.UUID] | list[uuid.UUID]) -> bool:
        """Stream these chats on the connection. True if this process had to subscribe to one of them (its events
        until now did not come here: the connection's stream must read them from the log)."""
        for chat_id in chat_ids:
            conn.chats.add(chat_id)
            self._by_chat.setdefault(chat_id, set()).add(conn)
        # Every chat, not only those new to this process: one another connection just asked for may still await
        # the broker's confirmation, and until then its events do not come here either.
        subscribed_new = self._interest.want(chats=chat_ids)
        conn.subscribed_new = conn.subscribed_new or subscribed_new
        return subscribed_new

    def joined_midway(self, conn: Connection, joined_at: dict[uuid.UUID, int]) -> None:
        """The groups the connection's user joined after their start, as read when it opened (`Connection.joined_at`;
        only under HISTORY_VISIBILITY=joined). A `MemberAdded` that arrived while they were read is as new or newer:
        it stays."""
        if self._history_from_joining:
            for chat_id, seq in joined_at.items():
                conn.joined_at.setdefault(chat_id, seq)

    def unwatch(self, conn: Connection, chat_id: uuid.UUID) -> None:
        conn.chats.discard(chat_id)
        conn.paused.discard(chat_id)
        conn.joined_at.pop(chat_id, None)
        if self._discard(self._by_chat, chat_id, conn):
            self._interest.drop(chats=[chat_id])

    def pause(self, conn: Connection, chat_id: uuid.UUID) -> None:
        """Stop this connection's events of a chat (legacy `leave_chat`); membership is unchanged."""
        conn.paused.add(chat_id)

    def resume(self, conn: Connection, chat_id: uuid.UUID) -> None:
        """(Re)start this connection's events of a chat the user belongs to (legacy `join_chat`)."""
        conn.paused.discard(chat_id)
        self.watch(conn, [chat_id])

    def streams_chat(self, chat_id: uuid.UUID) -> bool:
        """True while a connection of this process streams the chat."""
        return chat_id in self._by_chat

    def connections_of(self, user_id: uuid.UUID) -> set[Connection]:
        return self._by_user.get(user_id, set())

    @staticmethod
    def _discard(index: dict[uuid.UUID, set[Connection]], key: uuid.UUID, conn: Connection) -> bool:
        conns = index.get(key)
        if conns is None:
            return False
        conns.discard(conn)
        if not conns:
            del index[key]
            return True
        return False

    def wants(self, envelope: dict[str, Any]) -> bool:
        """Whether a durable event (its JSON envelope, not yet decoded) concerns a connection of this process: its
        chat is streamed here, or a user it names (a notification's target, a membership change's subject, a new
        chat's members) is connected here. False only when nothing here could receive it or start streaming."""
        data = envelope.get("data")
        if not isinstance(data, dict):
            return True  # let the decoder reject it
        if envelope.get("type") == "global_notification":
            route = envelope.get("route")
            if not isinstance(route, dict):
                return True
            chat, user = route.get("chat_id"), route.get("user_id")
            return self._known(self._by_chat, chat) or self._known(self._by_user, user)
        if self._known(self._by_chat, data.get("chat_id")) or self._known(self._by_user, data.get("user_id")):
            return True
        members = data.get("member_ids")
        return isinstance(members, list) and any(self._known(self._by_user, m) for m in members)

    @staticmethod
    def _known(index: dict[uuid.UUID, set[Connection]], key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            return uuid.UUID(key) in index
        except ValueError:
            return True  # not an id: let the decoder reject it

    # -- fan-out ------------------------------------------------------------------------------------

    def dispatch(self, event: Event, raw: str, after: Vector | None = None, *, queued: bool = False) -> None:
        """Route one event from the bus to every local connection that should see it (`after`: the streams'
        progress once they have it, for its cursor). `queued`: into each connection's outbox even where its socket
        could take the event now, for one of a burst of events dispatched together (presence): each socket's
        writer then sends its share of the burst in one write, not one write per event."""
        route = event.route()
        change = event.block_change()
        if change is not None:
            blocker, other, blocked = change
            for conn in self.connections_of(blocker):
                conn.block(other, blocked)
        starting: list[Connection] = []  # connections that start streaming a chat this process did not receive
        if route.chat_id is not None:
            joins_at = event.joins_at() if self._history_from_joining else None
            for user_id in event.starts_streaming():
                for conn in self.connections_of(user_id):
                    conn.membership_moved = True
                    if joins_at is not None:
                        conn.joined_at[route.chat_id] = joins_at
                    if self.watch(conn, [route.chat_id]):
                        starting.append(conn)

        if route.user_id is not None:
            targets = self._by_user.get(route.user_id, ())
        elif route.chat_id is not None:
            targets = self._by_chat.get(route.chat_id, ())
        else:
            targets = ()

        sent_at = event.sent_at()
        if sent_at is not None and targets and sent_at.tzinfo is not None:
            self.send_latency.observe(max(0.0, (datetime.now(UTC) - sent_at).total_seconds()))
        delivery = Delivery(event, raw, after)
        size = len(raw)
        ephemeral = event.ephemeral
        exclude = route.exclude_user_id
        paused_chat = route.chat_id if route.user_id is None else None
        author = route.from_user_id
        message_seq = route.message_seq
        delivered = 0
        # A UUID's hash and equality are Python code: each test below first asks what is free (a None, an empty set),
        # so an ordinary message costs no UUID comparison per recipient.
        for conn in tuple(targets):  # a copy: an overflow callback may close connections
            if exclude is not None and conn.user_id == exclude:
                continue
            if paused_chat is not None and conn.paused and paused_chat in conn.paused:
                continue
            if author is not None and conn.blocked and author in conn.blocked:
                continue
            if message_seq is not None and conn.joined_at and conn.hides(route.chat_id, message_seq):
                continue
            if (not queued and conn.transport.send_now(delivery)) or conn.outbox.put(
                delivery, size=size, ephemeral=ephemeral
            ):
                delivered += 1
            elif conn.outbox.closed_reason == "overflow":
                if not conn.overflowed:  # once per connection: it stays in the hub until its adapter closes it
                    conn.overflowed = True
                    self.overflows += 1
                    # Named explicitly: this runs in whichever task published, not in the connection's.
                    log.warning("closing slow consumer %s: outbox full", conn.id, extra={"connection_id": conn.id})
                    conn.transport.overflowed()
            else:
                self.dropped += 1
        self.delivered += delivered

        for conn in starting:  # after the membership event itself
            conn.outbox.put(CatchUp(after), size=0, ephemeral=False)
        if route.chat_id is not None:
            for user_id in event.stops_streaming():
                for conn in tuple(self.connections_of(user_id)):
                    conn.membership_moved = True
                    self.unwatch(conn, route.chat_id)
