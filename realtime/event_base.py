"""The machinery of the event registry (realtime/events.py declares the events): the `Event` base class and
`@registered`, what events carry (`UserRef`, `MessageData`, `ReactionCount`), how they are routed (`Route`), and
their JSON form (`payload`, the bus envelope, and back with `hints_of` / `build`).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar, get_type_hints

from realtime.jsontext import dumps
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
    # The last edit (None: never edited); a deleted message is a tombstone: `deleted_at` set, `content` "".
    edited_at: datetime | None = None
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReactionCount:
    """How many users reacted to a message with one emoji."""

    emoji: str
    count: int


@dataclass(frozen=True, slots=True)
class Route:
    """Who receives an event: the members of `chat_id`, or the user `user_id`; never `exclude_user_id`, never
    a user who blocks `from_user_id` (the user whose message or activity the event reports), and never a member
    who cannot see the message `message_seq` of the chat (sent before they joined, under HISTORY_VISIBILITY=joined)."""

    chat_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    exclude_user_id: uuid.UUID | None = None
    from_user_id: uuid.UUID | None = None
    message_seq: int | None = None


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
    # The event reports an act of its `user_id` (typing): users who block them do not receive it (Route.from_user_id).
    blockable: ClassVar[bool] = False
    # A durable event's position in the event log: its writer and that writer's counter (realtime.positions;
    # None if ephemeral or not yet recorded). Clients see positions only as the opaque cursor of what they got.
    pos: Pos | None = field(default=None, kw_only=True, compare=False)
    # A chat's durable event's seq in that chat: a chat's events are delivered in seq order.
    seq: int | None = field(default=None, kw_only=True, compare=False)
    # The process that published an ephemeral event (typing): it alone expires it, unless it dies.
    origin: str | None = field(default=None, kw_only=True, compare=False)

    def route(self) -> Route:
        chat_id: uuid.UUID = getattr(self, "chat_id")  # noqa: B009 - every chat event has one
        actor: uuid.UUID | None = getattr(self, "user_id", None) if self.to_others or self.blockable else None
        return Route(
            chat_id=chat_id,
            exclude_user_id=actor if self.to_others else None,
            from_user_id=actor if self.blockable else None,
            message_seq=getattr(self, "message_seq", None),
        )

    # What dispatching the event does besides delivering it; the hub, the bus and the runtime ask, never test
    # the event's class.

    def starts_streaming(self) -> tuple[uuid.UUID, ...]:
        """Users whose connections start streaming the event's chat, before the event itself is delivered."""
        return ()

    def stops_streaming(self) -> tuple[uuid.UUID, ...]:
        """Users whose connections stop streaming the event's chat, after the event itself is delivered."""
        return ()

    def joins_at(self) -> int | None:
        """The chat's seq at which the users of `starts_streaming` joined an existing group (None: they see it from
        its start). Under HISTORY_VISIBILITY=joined they do not see its messages up to there."""
        return None

    def typing_change(self) -> tuple[uuid.UUID, uuid.UUID, bool] | None:
        """(chat, user, typing now) if the event says who is typing where (kept for `chatStatus`)."""
        return None

    def block_change(self) -> tuple[uuid.UUID, uuid.UUID, bool] | None:
        """(blocker, blocked, blocked now) if the event changes whose events the blocker's connections receive."""
        return None

    def sent_at(self) -> datetime | None:
        """When the message the event delivers was sent (the send-to-deliver latency histogram), if it is one."""
        return None

    def payload(self) -> dict[str, Any]:
        """The event's data as JSON-ready snake_case values."""
        return {name: jsonable(getattr(self, name)) for name in _payload_fields(type(self))}

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
        return dumps(self._envelope())

    def _envelope(self) -> dict[str, Any]:
        envelope: dict[str, Any] = {"type": self.type, "data": self.payload()}
        if self.pos is not None:
            envelope["pos"] = self.pos.encode()
        if self.seq is not None:
            envelope["seq"] = self.seq
        if self.origin is not None:
            envelope["origin"] = self.origin
        return envelope


def legacy_message(m: MessageData) -> dict[str, Any]:
    """A message in the legacy protocol (`new_message` data, `messages` replies): its fields at the top level."""
    return {
        "id": uuid_text(m.id),
        "content": m.content,
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
        # A message on its way to its readers is unread; the per-member truth is `unread_count`.
        "is_read": False,
        "chat_id": uuid_text(m.chat_id),
        "sender": {"id": uuid_text(m.sender.id), "email": m.sender.email, "image_url": m.sender.image_url},
        "seq": m.seq,
        "client_id": m.client_id,
        "edited_at": None if m.edited_at is None else m.edited_at.isoformat(),
        "deleted_at": None if m.deleted_at is None else m.deleted_at.isoformat(),
    }


# UUIDs as text, by their integer (a hash in C), for every event's payload and frame. `str(uuid)` is Python code
# (~9,000 instructions): a message's id, chat and sender are written for its log entry and again for its legacy
# frame, and a chat's and a sender's come back with every message. Emptied when full: each text is made once more.
_UUID_TEXTS: dict[int, str] = {}
UUID_TEXTS_MAX = 16_384


def uuid_text(value: uuid.UUID) -> str:
    """`str(value)`, remembered."""
    key = value.int
    text = _UUID_TEXTS.get(key)
    if text is None:
        if len(_UUID_TEXTS) >= UUID_TEXTS_MAX:
            _UUID_TEXTS.clear()
        text = _UUID_TEXTS[key] = str(value)
    return text


# The last moment `iso` rendered, and its text. A new message's creation time is also its update time (the same
# object), and it is rendered for its log entry and again for its legacy frame, one after the other: a C call that
# formats through printf each time (~1 µs, ~11,000 instructions). Identity, not equality: the tuple keeps the
# moment alive, so no other object can take its place; one rebinding, so any thread may call it.
_last_iso: tuple[datetime, str] | None = None


def iso(moment: datetime) -> str:
    """`moment.isoformat()`, remembered for the last moment asked for."""
    global _last_iso
    last = _last_iso
    if last is not None and last[0] is moment:
        return last[1]
    text = moment.isoformat()
    _last_iso = (moment, text)
    return text


def message_payload(m: MessageData) -> dict[str, Any]:
    """A message as `jsonable` gives it (a dataclass's fields in order), written out: every message sent is encoded
    through here on its way into the event log, and the generic walk costs three times as much
    (tests/test_services_unit.py compares the two)."""
    sender = m.sender
    return {
        "id": uuid_text(m.id),
        "chat_id": uuid_text(m.chat_id),
        "seq": m.seq,
        "content": m.content,
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
        "sender": {"id": uuid_text(sender.id), "email": sender.email, "image_url": sender.image_url},
        "client_id": m.client_id,
        "edited_at": None if m.edited_at is None else m.edited_at.isoformat(),
        "deleted_at": None if m.deleted_at is None else m.deleted_at.isoformat(),
    }


def uuid_or_none(value: str | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


# Values JSON takes as they are: the most common by far (every string, seq and flag of every event encoded), so they
# are answered by their exact type before any isinstance check (a subclass takes the general path below).
_AS_IS: frozenset[type] = frozenset({str, int, bool, float, type(None)})


def jsonable(obj: Any) -> Any:
    kind = type(obj)
    if kind in _AS_IS:
        return obj
    if kind is uuid.UUID:
        return uuid_text(obj)
    if kind is MessageData:
        return message_payload(obj)
    names = _FIELD_NAMES.get(kind)  # a dataclass met before (MessageData, UserRef): no is_dataclass walk
    if names is not None:
        return {name: jsonable(getattr(obj, name)) for name in names}
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {name: jsonable(getattr(obj, name)) for name in _field_names(type(obj))}
    return obj


# Fields of an event's envelope, not of its payload.
ENVELOPE_FIELDS = frozenset({"pos", "seq", "origin"})

# Field names by dataclass, and an event's payload fields by event type: asked for every event encoded, and
# `dataclasses.fields` builds its answer anew each time.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_PAYLOAD_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _payload_fields(cls: type) -> tuple[str, ...]:
    names = _PAYLOAD_FIELDS.get(cls)
    if names is None:
        names = _PAYLOAD_FIELDS[cls] = tuple(n for n in _field_names(cls) if n not in ENVELOPE_FIELDS)
    return names


_HINTS: dict[type, dict[str, Any]] = {}


def hints_of(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = hints_of(cls)
    meta = ENVELOPE_FIELDS if issubclass(cls, Event) else frozenset()
    # A field missing from `data` takes its default (an event logged before the field existed), if it has one.
    kwargs = {
        f.name: _convert(hints[f.name], data[f.name])
        for f in dataclasses.fields(cls)
        if f.name not in meta and f.name in data
    }
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if hint in (uuid.UUID, uuid.UUID | None):
        return uuid.UUID(value)
    if hint in (datetime, datetime | None):
        return datetime.fromisoformat(value)
    if hint in (UserRef, MessageData):
        return _build(hint, value)
    if hint == tuple[ReactionCount, ...]:
        return tuple(_build(ReactionCount, v) for v in value)
    if hint == tuple[uuid.UUID, ...]:
        return tuple(uuid.UUID(v) for v in value)
    return value
