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
