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

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from realtime.event_base import (
    ENVELOPE_FIELDS,
    EVENT_TYPES,
    Event,
    MessageData,
    ReactionCount,
    Route,
    UserRef,
    hints_of,
    jsonable,
    legacy_message,
    registered,
    uuid_or_none,
)

# The registry's machinery lives in realtime.event_base; the rest of the code imports it from here, with the events.
__all__ = [
    "ENVELOPE_FIELDS",
    "EVENT_TYPES",
    "Event",
    "MessageData",
    "ReactionCount",
    "Route",
    "UserRef",
    "hints_of",
    "legacy_message",
    "registered",
]


@registered
@dataclass(frozen=True, slots=True)
class NewMessage(Event):
    type: ClassVar[str] = "new_message"
    chat_id: uuid.UUID
    message: MessageData

    def route(self) -> Route:
        return Route(chat_id=self.chat_id, from_user_id=self.message.sender.id)

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
    blockable: ClassVar[bool] = True
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
    blockable: ClassVar[bool] = True
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

    def joins_at(self) -> int | None:
        return self.seq


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
    """A notification from server-side code: to one user, or to the members of a chat (docs/operations.md "Server-side API")."""

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
            target_user_id=uuid_or_none(route.get("user_id")),
            chat_id=uuid_or_none(route.get("chat_id")),
            exclude_user_id=uuid_or_none(route.get("exclude_user_id")),
        )

    def payload(self) -> dict[str, Any]:
        return self.payload_data

    def _envelope(self) -> dict[str, Any]:
        envelope = super(GlobalNotification, self)._envelope()
        envelope["route"] = jsonable(self.route())
        return envelope


@registered
@dataclass(frozen=True, slots=True)
class MessageEdited(Event):
    """The sender edited a message: its new content, to every member (the sender's other devices included)."""

    type: ClassVar[str] = "message_edited"
    graphql_description: ClassVar[str | None] = "A message of one of my chats was edited by its sender."
    blockable: ClassVar[bool] = True  # not to users who block the sender (their messages do not reach them either)
    chat_id: uuid.UUID
    message_id: uuid.UUID
    message_seq: int
    user_id: uuid.UUID
    content: str
    edited_at: datetime
    client_id: str | None


@registered
@dataclass(frozen=True, slots=True)
class MessageDeleted(Event):
    """A message became a tombstone (empty content, `deleted_at` set); `deleted_by` None: a service deleted it."""

    type: ClassVar[str] = "message_deleted"
    graphql_description: ClassVar[str | None] = (
        "A message of one of my chats was deleted: it stays in history as a tombstone (content empty, deletedAt set)."
    )
    chat_id: uuid.UUID
    message_id: uuid.UUID
    message_seq: int
    deleted_by: uuid.UUID | None
    deleted_at: datetime


@registered
@dataclass(frozen=True, slots=True)
class ReactionChanged(Event):
    """`user_id` added (`added`) or removed a reaction; `counts`: the message's reactions after the change. One
    rendering serves every member, so "did I react" is the client's: `user_id` and `added` say whose change it is."""

    type: ClassVar[str] = "reaction_changed"
    graphql_description: ClassVar[str | None] = (
        "A member added or removed a reaction to a message; counts are the message's reactions after the change."
    )
    blockable: ClassVar[bool] = True  # not to users who block the reacting user
    chat_id: uuid.UUID
    message_id: uuid.UUID
    message_seq: int
    user_id: uuid.UUID
    emoji: str
    added: bool
    counts: tuple[ReactionCount, ...]


@registered
@dataclass(frozen=True, slots=True)
class BlockChanged(Event):
    """`user_id` blocked (`blocked`) or unblocked `blocked_user_id`: to the blocker's own connections, on every
    process, which from then on drop (or again take) the blocked user's messages and typing (services.blocks)."""

    type: ClassVar[str] = "block_changed"
    graphql_description: ClassVar[str | None] = (
        "I blocked or unblocked a user (on one of my devices, or the main app for me): while `blocked`, their "
        "messages and typing do not reach me."
    )
    user_id: uuid.UUID
    blocked_user_id: uuid.UUID
    blocked: bool

    def route(self) -> Route:
        return Route(user_id=self.user_id)

    def block_change(self) -> tuple[uuid.UUID, uuid.UUID, bool] | None:
        return (self.user_id, self.blocked_user_id, self.blocked)


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
