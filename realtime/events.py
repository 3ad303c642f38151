"""Every event the backend streams, declared once: the event registry.

An event type is a frozen dataclass registered with `@registered`. Its declaration says everything the rest of
the code derives from it:
- its fields (the dataclass fields *are* the event schema: `realtime.codec.payload_schema` describes them, and tests check
  both protocols' output against it) and its wire name `type`;
- whether it is durable (stored in the event log, resumable, with a cursor) or `ephemeral`;
- how it is routed (`route()`: a chat's members, one user; `to_others`: not to the acting user), and whom it
  makes start or stop streaming a chat (`starts_streaming()`, `stops_streaming()`);
- its legacy frame (`legacy_data()`, under its `type`) and its GraphQL type (`graphql_name`,
  `graphql_description`, and per field `metadata={"graphql": False}` to leave a routing field out or
  `metadata={"graphql_name": ...}` to rename it). `schema/types.py` builds the `ChatEvent` union from here.

An event is encoded once when it is published (`encode`) and decoded once per process when it arrives
(`realtime.codec.decode`). docs/architecture.md walks through adding an event type.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar, get_type_hints

from realtime.positions import Pos


@dataclass(frozen=True, slots=True)
class UserRef:
    """A user as events carry it."""

    id: uuid.UUID
    email: str
    image_url: str | None


@dataclass(frozen=True, slots=True)
class MessageData:
    """A stored message as events and service results carry it."""

    id: uuid.UUID
    chat_id: uuid.UUID
    seq: int
    content: str
    created_at: datetime
    updated_at: datetime
    sender: UserRef
    client_id: str | None


@dataclass(frozen=True, slots=True)
class Route:
    """Who receives an event: the members of `chat_id`, or the user `user_id`; never `exclude_user_id`."""

    chat_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    exclude_user_id: uuid.UUID | None = None


# The registry: wire name -> event type, in declaration order (the order of GraphQL's `ChatEvent` union).
EVENT_TYPES: dict[str, type[Event]] = {}

E = TypeVar("E", bound="type[Event]")


def registered(cls: E) -> E:
    """Class decorator (outermost, above `@dataclass`): add an event type to the registry."""
    if cls.type in EVENT_TYPES:
        raise ValueError(f"event type {cls.type!r} is declared twice")
    EVENT_TYPES[cls.type] = cls
    return cls


@dataclass(frozen=True, slots=True)
class Event:
    type: ClassVar[str]
    # The GraphQL object type of the event in the `ChatEvent` union (default: the class name), and its description.
    graphql_name: ClassVar[str | None] = None
    graphql_description: ClassVar[str | None] = None
    # Ephemeral events (typing) are not stored and are the first dropped for a slow consumer.
    ephemeral: ClassVar[bool] = False
    # "To the others": the acting user's own connections do not receive it.
    to_others: ClassVar[bool] = False
    # A durable event's position in the event log: its writer and that writer's counter (realtime.positions;
    # None if ephemeral or not yet recorded). Clients see positions only as the opaque cursor of what they got.
    pos: Pos | None = field(default=None, kw_only=True, compare=False)
    # A chat's durable event's seq in that chat: a chat's events are delivered in seq order.
    seq: int | None = field(default=None, kw_only=True, compare=False)
    # The process that published an ephemeral event (typing): it alone expires it, unless it dies.
    origin: str | None = field(default=None, kw_only=True, compare=False)

    def route(self) -> Route:
        chat_id: uuid.UUID = getattr(self, "chat_id")  # noqa: B009 - every chat event has one
        actor: uuid.UUID | None = getattr(self, "user_id", None) if self.to_others else None
        return Route(chat_id=chat_id, exclude_user_id=actor)

    # What dispatching the event does besides delivering it; the hub, the bus and the runtime ask, never test
    # the event's class.

    def starts_streaming(self) -> tuple[uuid.UUID, ...]:
        """Users whose connections start streaming the event's chat, before the event itself is delivered."""
        return ()

    def stops_streaming(self) -> tuple[uuid.UUID, ...]:
        """Users whose connections stop streaming the event's chat, after the event itself is delivered."""
        return ()

    def typing_change(self) -> tuple[uuid.UUID, uuid.UUID, bool] | None:
        """(chat, user, typing now) if the event says who is typing where (kept for `chatStatus`)."""
        return None

    def sent_at(self) -> datetime | None:
        """When the message the event delivers was sent (the send-to-deliver latency histogram), if it is one."""
        return None

    def payload(self) -> dict[str, Any]:
        """The event's data as JSON-ready snake_case values."""
        return {
            f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in ENVELOPE_FIELDS
        }

    def legacy_data(self) -> Any:
        """The `data` of the event's legacy frame (snake_case, `chat_id` included): its payload, unless it says
        otherwise."""
        return self.payload()

    @classmethod
    def from_envelope(cls, data: Any, envelope: dict[str, Any]) -> Event:
        """The event (without its position, seq and origin) from its envelope's `data`: the inverse of `payload`."""
        event: Event = _build(cls, data)
        return event

    def encode(self) -> str:
        return json.dumps(self._envelope(), separators=(",", ":"))

    def _envelope(self) -> dict[str, Any]:
        envelope: dict[str, Any] = {"type": self.type, "data": self.payload()}
        if self.pos is not None:
            envelope["pos"] = self.pos.encode()
        if self.seq is not None:
            envelope["seq"] = self.seq
        if self.origin is not None:
            envelope["origin"] = self.origin
        return envelope


@registered
@dataclass(frozen=True, slots=True)
class NewMessage(Event):
    type: ClassVar[str] = "new_message"
    chat_id: uuid.UUID
    message: MessageData

    def sent_at(self) -> datetime | None:
        return self.message.created_at

    def legacy_data(self) -> Any:
        return legacy_message(self.message)


@registered
@dataclass(frozen=True, slots=True)
class MessagesRead(Event):
    """A member's read marker moved: a read receipt for the other members, and for the reader's own other devices
    the news that they have read there (their unread counts agree without a reload)."""

    type: ClassVar[str] = "messages_read"
    chat_id: uuid.UUID
    user_id: uuid.UUID
    last_read_seq: int


@registered
@dataclass(frozen=True, slots=True)
class UserTyping(Event):
    type: ClassVar[str] = "user_typing"
    ephemeral: ClassVar[bool] = True
    to_others: ClassVar[bool] = True
    chat_id: uuid.UUID
    user_id: uuid.UUID

    def typing_change(self) -> tuple[uuid.UUID, uuid.UUID, bool] | None:
        return (self.chat_id, self.user_id, True)


@registered
@dataclass(frozen=True, slots=True)
class UserStoppedTyping(Event):
    type: ClassVar[str] = "user_stopped_typing"
    ephemeral: ClassVar[bool] = True
    to_others: ClassVar[bool] = True
    chat_id: uuid.UUID
    user_id: uuid.UUID

    def typing_change(self) -> tuple[uuid.UUID, uuid.UUID, bool] | None:
        return (self.chat_id, self.user_id, False)


@registered
@dataclass(frozen=True, slots=True)
class UserOnline(Event):
    """A member of the chat came online: their first connection anywhere, after they had been offline for longer
    than the grace period (services.presence_feed). One per chat shared with them."""

    type: ClassVar[str] = "user_online"
    ephemeral: ClassVar[bool] = True
    to_others: ClassVar[bool] = True
    graphql_description: ClassVar[str | None] = "A member of one of my chats came online."
    chat_id: uuid.UUID
    user_id: uuid.UUID


@registered
@dataclass(frozen=True, slots=True)
class UserOffline(Event):
    """A member of the chat went offline: their last connection closed (or their process died) and they did not
    come back within the grace period. One per chat shared with them."""

    type: ClassVar[str] = "user_offline"
    ephemeral: ClassVar[bool] = True
    to_others: ClassVar[bool] = True
    graphql_description: ClassVar[str | None] = "A member of one of my chats went offline; `lastSeen` is when."
    chat_id: uuid.UUID
    user_id: uuid.UUID
    last_seen: datetime


@registered
@dataclass(frozen=True, slots=True)
class UserJoined(Event):
    """A user (re)opened a chat's stream on a connection (legacy `join_chat`); membership unchanged."""

    type: ClassVar[str] = "user_joined"
    to_others: ClassVar[bool] = True
    chat_id: uuid.UUID
    user_id: uuid.UUID


@registered
@dataclass(frozen=True, slots=True)
class UserLeft(Event):
    """A user closed a chat's stream on a connection (legacy `leave_chat`); membership unchanged."""

    type: ClassVar[str] = "user_left"
    to_others: ClassVar[bool] = True
    chat_id: uuid.UUID
    user_id: uuid.UUID


@registered
@dataclass(frozen=True, slots=True)
class ChatCreated(Event):
    """A chat was created; its members' open connections start streaming it."""

    type: ClassVar[str] = "chat_created"
    graphql_description: ClassVar[str | None] = (
        "A chat with me in it was created; it streams on this subscription from now on."
    )
    chat_id: uuid.UUID
    name: str | None
    is_group: bool
    created_by: uuid.UUID | None
    member_ids: tuple[uuid.UUID, ...]

    def starts_streaming(self) -> tuple[uuid.UUID, ...]:
        return self.member_ids


@registered
@dataclass(frozen=True, slots=True)
class MemberAdded(Event):
    """`user_id` became a member; their open connections start streaming the chat."""

    type: ClassVar[str] = "member_added"
    graphql_name: ClassVar[str | None] = "ChatMemberAdded"
    graphql_description: ClassVar[str | None] = (
        "A member was added to one of my chats (possibly me: the chat now streams here)."
    )
    chat_id: uuid.UUID
    user_id: uuid.UUID
    added_by: uuid.UUID | None

    def starts_streaming(self) -> tuple[uuid.UUID, ...]:
        return (self.user_id,)


@registered
@dataclass(frozen=True, slots=True)
class MemberRemoved(Event):
    """`user_id` is no longer a member; after this event their connections stop streaming the chat."""

    type: ClassVar[str] = "member_removed"
    graphql_name: ClassVar[str | None] = "ChatMemberRemoved"
    graphql_description: ClassVar[str | None] = (
        "A member was removed from one of my chats (if me: the chat stops streaming)."
    )
    chat_id: uuid.UUID
    user_id: uuid.UUID
    removed_by: uuid.UUID | None

    def stops_streaming(self) -> tuple[uuid.UUID, ...]:
        return (self.user_id,)


@registered
@dataclass(frozen=True, slots=True)
class GlobalNotification(Event):
    """A notification from server-side code: to one user, or to the members of a chat (README "Server-side API")."""

    type: ClassVar[str] = "global_notification"
    payload_data: dict[str, Any] = field(default_factory=dict, metadata={"graphql_name": "payload"})
    # Routing only: in the envelope's `route`, in neither protocol's payload.
    target_user_id: uuid.UUID | None = field(default=None, metadata={"graphql": False})
    chat_id: uuid.UUID | None = field(default=None, metadata={"graphql": False})
    exclude_user_id: uuid.UUID | None = field(default=None, metadata={"graphql": False})

    def route(self) -> Route:
        return Route(chat_id=self.chat_id, user_id=self.target_user_id, exclude_user_id=self.exclude_user_id)

    @classmethod
    def from_envelope(cls, data: Any, envelope: dict[str, Any]) -> Event:
        route = envelope["route"]
        return GlobalNotification(
            payload_data=data,
            target_user_id=_uuid_or_none(route.get("user_id")),
            chat_id=_uuid_or_none(route.get("chat_id")),
            exclude_user_id=_uuid_or_none(route.get("exclude_user_id")),
        )

    def payload(self) -> dict[str, Any]:
        return self.payload_data

    def _envelope(self) -> dict[str, Any]:
        envelope = super(GlobalNotification, self)._envelope()
        envelope["route"] = _jsonable(self.route())
        return envelope


@registered
@dataclass(frozen=True, slots=True)
class ResyncRequired(Event):
    """To one resuming connection only: its cursor cannot be replayed (older than retention, unknown, or too
    far behind). The client refetches its chats and history; live events follow."""

    type: ClassVar[str] = "resync_required"
    ephemeral: ClassVar[bool] = True
    graphql_description: ClassVar[str | None] = (
        "Your cursor cannot be replayed: refetch myChats and history; live events follow."
    )
    reason: str

    def route(self) -> Route:
        return Route()


def legacy_message(m: MessageData) -> dict[str, Any]:
    """A message in the legacy protocol (`new_message` data, `messages` replies): its fields at the top level."""
    return {
        "id": str(m.id),
        "content": m.content,
        "created_at": m.created_at.isoformat(),
        "updated_at": m.updated_at.isoformat(),
        # A message on its way to its readers is unread; the per-member truth is `unread_count`.
        "is_read": False,
        "chat_id": str(m.chat_id),
        "sender": {"id": str(m.sender.id), "email": m.sender.email, "image_url": m.sender.image_url},
        "seq": m.seq,
        "client_id": m.client_id,
    }


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# Fields of an event's envelope, not of its payload.
ENVELOPE_FIELDS = frozenset({"pos", "seq", "origin"})

_HINTS: dict[type, dict[str, Any]] = {}


def hints_of(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = hints_of(cls)
    meta = ENVELOPE_FIELDS if issubclass(cls, Event) else frozenset()
    kwargs = {f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name not in meta}
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if hint in (uuid.UUID, uuid.UUID | None):
        return uuid.UUID(value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if hint in (UserRef, MessageData):
        return _build(hint, value)
    if hint == tuple[uuid.UUID, ...]:
        return tuple(uuid.UUID(v) for v in value)
    return value
