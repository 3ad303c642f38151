"""The GraphQL types (docs/protocols.md), converted from service results; the `ChatEvent` union and its members are
built from the event registry (realtime.events). No logic here."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, Union, get_type_hints

import strawberry
from strawberry.scalars import JSON

from realtime import events
from realtime.event_base import uuid_text
from services import views


@strawberry.type
class User:
    id: strawberry.ID
    email: str
    image_url: str | None
    is_online: bool
    last_seen: datetime | None


@strawberry.type
class Message:
    id: strawberry.ID
    chat_id: strawberry.ID
    seq: int
    content: str
    created_at: datetime
    updated_at: datetime
    sender: User
    client_id: str | None
    edited_at: datetime | None = strawberry.field(description="When the content was last edited (null: never).")
    deleted_at: datetime | None = strawberry.field(
        description="Set when the message was deleted: a tombstone, its content is the empty string."
    )
    reactions: list[Reaction] = strawberry.field(
        description="Reactions, one per emoji in order of first use (in history; always empty in events: "
        "ReactionChanged carries changes)."
    )


@strawberry.type
class Reaction:
    emoji: str
    count: int
    reacted_by_me: bool


@strawberry.type(description="How many users reacted to a message with one emoji.")
class ReactionCount:
    emoji: str
    count: int


@strawberry.type
class Chat:
    id: strawberry.ID
    name: str | None
    is_group: bool
    created_at: datetime
    updated_at: datetime
    participants: list[User]
    last_message: Message | None
    unread_count: int
    read_markers: list[ReadMarker] = strawberry.field(
        description="Every member's read marker (the seq of the last message they have read): read receipts. "
        "The other members' changes arrive live as MessagesRead."
    )
    admin_id: strawberry.ID | None = strawberry.field(
        description="A group's admin, who may remove other members: its creator while a member, else the member "
        "who has been in it longest (the smallest id among those who joined together). Null for a 1:1 chat."
    )


@strawberry.type
class ChatPresence:
    chat_id: strawberry.ID
    online_user_ids: list[strawberry.ID]
    typing_user_ids: list[strawberry.ID]
    users_count: int = strawberry.field(description="Number of members of the chat.")


@strawberry.type
class ChatStatus:
    chats: list[ChatPresence]
    total_online_users: int = strawberry.field(description="Distinct other users online across my chats.")


@strawberry.type
class ReadMarker:
    chat_id: strawberry.ID
    user_id: strawberry.ID
    last_read_seq: int


# -- events of Subscription.chatEvents: derived from the event registry (realtime.events) -------------------

CURSOR_DOC = "Resume position: pass the last one you saw as chatEvents(after:) when you reconnect."


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str  # the event's field
    attr: str  # the GraphQL type's field (in snake_case)
    convert: Callable[[Any, Callable[[uuid.UUID], bool] | None], Any]


def _graphql_field(hint: Any) -> tuple[Any, Callable[[Any, Callable[[uuid.UUID], bool] | None], Any]]:
    """The GraphQL annotation of an event field's type, and how to convert its value."""
    if hint == uuid.UUID:
        return strawberry.ID, lambda v, _: strawberry.ID(str(v))
    if hint == uuid.UUID | None:
        return strawberry.ID | None, lambda v, _: _id(v)
    if hint == tuple[uuid.UUID, ...]:
        return list[strawberry.ID], lambda v, _: _ids(v)
    if hint == events.MessageData:
        return Message, lambda v, online: message(v, sender_online=bool(online(v.sender.id)) if online else False)
    if hint == dict[str, Any]:
        return JSON, lambda v, _: v
    if hint == tuple[events.ReactionCount, ...]:
        return list[ReactionCount], lambda v, _: [ReactionCount(emoji=c.emoji, count=c.count) for c in v]
    if hint in (str, int, bool, str | None, int | None, bool | None, datetime, datetime | None):
        return hint, lambda v, _: v
    raise TypeError(f"no GraphQL type for an event field of type {hint!r}: add it to schema.types._graphql_field")


def _event_type(cls: type[events.Event]) -> tuple[type, list[_Field]]:
    """The Strawberry type of one event type: its fields (camelCased by Strawberry), and `cursor` if durable."""
    hints = get_type_hints(cls)
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    converters: list[_Field] = []
    for f in dataclasses.fields(cls):
        if f.name in events.ENVELOPE_FIELDS or not f.metadata.get("graphql", True):
            continue
        name = f.metadata.get("graphql_name", f.name)
        annotations[name], convert = _graphql_field(hints[f.name])
        converters.append(_Field(f.name, name, convert))
    if not cls.ephemeral:
        annotations["cursor"] = str
        namespace["cursor"] = strawberry.field(description=CURSOR_DOC)
    name = cls.graphql_name or cls.__name__
    plain = type(name, (), {"__annotations__": annotations, **namespace})
    return strawberry.type(plain, name=name, description=cls.graphql_description), converters


EVENT_OBJECTS: dict[type[events.Event], tuple[type, list[_Field]]] = {
    cls: _event_type(cls) for cls in events.EVENT_TYPES.values()
}
# GraphQL type name of each event type: the contract between the event schema and this adapter.
EVENT_TYPENAMES: dict[str, str] = {t: cls.graphql_name or cls.__name__ for t, cls in events.EVENT_TYPES.items()}

if TYPE_CHECKING:
    ChatEvent: TypeAlias = Any  # built at import from the registry: no static type to name
else:
    ChatEvent = Annotated[
        Union[tuple(gql for gql, _ in EVENT_OBJECTS.values())],  # noqa: UP007 - a union built from the registry
        strawberry.union("ChatEvent"),
    ]


# -- converters -------------------------------------------------------------------------------------


def _id(value: uuid.UUID | None) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(str(value))


def _ids(values: Any) -> list[strawberry.ID]:
    return [strawberry.ID(str(v)) for v in values]


def user(view: views.UserView) -> User:
    return User(
        id=strawberry.ID(str(view.id)),
        email=view.email,
        image_url=view.image_url,
        is_online=view.is_online,
        last_seen=view.last_seen,
    )


def message(data: events.MessageData, *, sender_online: bool = False) -> Message:
    sender = data.sender
    return Message(
        id=strawberry.ID(uuid_text(data.id)),
        chat_id=strawberry.ID(uuid_text(data.chat_id)),
        seq=data.seq,
        content=data.content,
        created_at=data.created_at,
        updated_at=data.updated_at,
        sender=User(
            id=strawberry.ID(uuid_text(sender.id)),
            email=sender.email,
            image_url=sender.image_url,
            is_online=sender_online,
            last_seen=None,
        ),
        client_id=data.client_id,
        edited_at=data.edited_at,
        deleted_at=data.deleted_at,
        reactions=[
            Reaction(emoji=r.emoji, count=r.count, reacted_by_me=r.reacted_by_me)
            for r in (data.reactions if isinstance(data, views.MessageView) else ())
        ],
    )


def chat(view: views.ChatView) -> Chat:
    online = {p.id: p.is_online for p in view.participants}
    last = view.last_message
    return Chat(
        id=strawberry.ID(str(view.id)),
        name=view.name,
        is_group=view.is_group,
        created_at=view.created_at,
        updated_at=view.updated_at,
        participants=[user(p) for p in view.participants],
        last_message=None if last is None else message(last, sender_online=online.get(last.sender.id, False)),
        unread_count=view.unread_count,
        read_markers=[read_marker(m) for m in view.read_markers],
        admin_id=_id(view.admin_id),
    )


def chat_status(view: views.ChatStatus) -> ChatStatus:
    return ChatStatus(
        chats=[
            ChatPresence(
                chat_id=strawberry.ID(str(c.chat_id)),
                online_user_ids=_ids(c.online_user_ids),
                typing_user_ids=_ids(c.typing_user_ids),
                users_count=c.users_count,
            )
            for c in view.chats
        ],
        total_online_users=view.total_online_users,
    )


def read_marker(view: views.ReadMarker) -> ReadMarker:
    return ReadMarker(
        chat_id=strawberry.ID(str(view.chat_id)),
        user_id=strawberry.ID(str(view.user_id)),
        last_read_seq=view.last_read_seq,
    )


def event(e: events.Event, *, cursor: str | None = None, is_online: Callable[[uuid.UUID], bool] | None = None) -> Any:
    """The GraphQL object of one event (built once per event, shared by every subscriber); `cursor`: the
    resume cursor of the stream once it has the event (every durable event has one)."""
    gql, converters = EVENT_OBJECTS[type(e)]
    values = {f.attr: f.convert(getattr(e, f.name), is_online) for f in converters}
    if not e.ephemeral:
        values["cursor"] = cursor or ""
    return gql(**values)
