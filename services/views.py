"""What the services return: plain, immutable data the adapters translate (never ORM objects)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from realtime.events import MessageData, UserRef


@dataclass(frozen=True, slots=True)
class UserView:
    id: uuid.UUID
    email: str
    image_url: str | None
    last_seen: datetime | None
    is_online: bool

    @property
    def ref(self) -> UserRef:
        return UserRef(id=self.id, email=self.email, image_url=self.image_url)


@dataclass(frozen=True, slots=True)
class ReactionView:
    """One emoji's reactions to a message, as one viewer sees them."""

    emoji: str
    count: int
    reacted_by_me: bool


@dataclass(frozen=True, slots=True)
class MessageView(MessageData):
    """A message as history shows it to one viewer: with its reactions (in order of each emoji's first use). Events
    carry plain `MessageData` (a new message has no reactions; `reaction_changed` carries changes)."""

    reactions: tuple[ReactionView, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatView:
    id: uuid.UUID
    name: str | None
    is_group: bool
    created_at: datetime
    updated_at: datetime
    participants: tuple[UserView, ...]
    last_message: MessageData | None
    unread_count: int
    last_read_seq: int
    # Every member's read marker, in participant order: read receipts.
    read_markers: tuple[ReadMarker, ...] = ()
    # Who may remove other members of a group: its creator while a member, else its longest-standing member.
    admin_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class ChatPresence:
    chat_id: uuid.UUID
    online_user_ids: tuple[uuid.UUID, ...]
    typing_user_ids: tuple[uuid.UUID, ...]
    users_count: int


@dataclass(frozen=True, slots=True)
class ChatStatus:
    chats: tuple[ChatPresence, ...]
    total_online_users: int


@dataclass(frozen=True, slots=True)
class ReadMarker:
    chat_id: uuid.UUID
    user_id: uuid.UUID
    last_read_seq: int
