"""The GraphQL types (docs/protocols.md), converted from service results. No logic here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from realtime import events
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


# -- events of Subscription.chatEvents --------------------------------------------------------------

CURSOR_DOC = "Resume position: pass the last one you saw as chatEvents(after:) when you reconnect."


@strawberry.type(description="Your cursor cannot be replayed: refetch myChats and history; live events follow.")
class ResyncRequired:
    reason: str


@strawberry.type
class NewMessage:
    chat_id: strawberry.ID
    message: Message
    cursor: str = strawberry.field(description=CURSOR_DOC)


@strawberry.type
class MessagesRead:
    chat_id: strawberry.ID
    user_id: strawberry.ID
    last_read_seq: int
    cursor: str = strawberry.field(description=CURSOR_DOC)


@strawberry.type
class UserTyping:
    chat_id: strawberry.ID
    user_id: strawberry.ID


@strawberry.type
class UserStoppedTyping:
    chat_id: strawberry.ID
    user_id: strawberry.ID


@strawberry.type
class UserJoined:
    chat_id: strawberry.ID
    user_id: strawberry.ID
    cursor: str = strawberry.field(description=CURSOR_DOC)


@strawberry.type
class UserLeft:
    chat_id: strawberry.ID
    user_id: strawberry.ID
    cursor: str = strawberry.field(description=CURSOR_DOC)


@strawberry.type(description="A chat with me in it was created; it streams on this subscription from now on.")
class ChatCreated:
    chat_id: strawberry.ID
    name: str | None
    is_group: bool
    created_by: strawberry.ID | None
    member_ids: list[strawberry.ID]
    cursor: str = strawberry.field(description=CURSOR_DOC)


@strawberry.type(description="A member was added to one of my chats (possibly me: the chat now streams here).")
class ChatMemberAdded:
    chat_id: strawberry.ID
    user_id: strawberry.ID
    added_by: strawberry.ID | None
    cursor: str = strawberry.field(description=CURSOR_DOC)


@strawberry.type(description="A member was removed from one of my chats (if me: the chat stops streaming).")
class ChatMemberRemoved:
    chat_id: strawberry.ID
    user_id: strawberry.ID
    removed_by: strawberry.ID | None
    cursor: str = strawberry.field(description=CURSOR_DOC)


@strawberry.type
class GlobalNotification:
    payload: JSON
    cursor: str = strawberry.field(description=CURSOR_DOC)


ChatEvent = Annotated[
    NewMessage
    | MessagesRead
    | UserTyping
    | UserStoppedTyping
    | UserJoined
    | UserLeft
    | ChatCreated
    | ChatMemberAdded
    | ChatMemberRemoved
    | GlobalNotification
    | ResyncRequired,
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
        id=strawberry.ID(str(data.id)),
        chat_id=strawberry.ID(str(data.chat_id)),
        seq=data.seq,
        content=data.content,
        created_at=data.created_at,
        updated_at=data.updated_at,
        sender=User(
            id=strawberry.ID(str(sender.id)),
            email=sender.email,
            image_url=sender.image_url,
            is_online=sender_online,
            last_seen=None,
        ),
        client_id=data.client_id,
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


def event(e: events.Event, *, cursor: str | None = None, is_online: Any = None) -> Any:
    """The GraphQL object of one event (built once per event, shared by every subscriber); `cursor`: the
    resume cursor of the stream once it has the event (every durable event has one)."""
    c = cursor or ""
    match e:
        case events.NewMessage():
            online = bool(is_online(e.message.sender.id)) if is_online else False
            return NewMessage(chat_id=_id(e.chat_id), message=message(e.message, sender_online=online), cursor=c)  # type: ignore[arg-type]
        case events.MessagesRead():
            return MessagesRead(chat_id=_id(e.chat_id), user_id=_id(e.user_id), last_read_seq=e.last_read_seq, cursor=c)  # type: ignore[arg-type]
        case events.UserTyping():
            return UserTyping(chat_id=_id(e.chat_id), user_id=_id(e.user_id))  # type: ignore[arg-type]
        case events.UserStoppedTyping():
            return UserStoppedTyping(chat_id=_id(e.chat_id), user_id=_id(e.user_id))  # type: ignore[arg-type]
        case events.UserJoined():
            return UserJoined(chat_id=_id(e.chat_id), user_id=_id(e.user_id), cursor=c)  # type: ignore[arg-type]
        case events.UserLeft():
            return UserLeft(chat_id=_id(e.chat_id), user_id=_id(e.user_id), cursor=c)  # type: ignore[arg-type]
        case events.ChatCreated():
            return ChatCreated(
                chat_id=_id(e.chat_id),  # type: ignore[arg-type]
                name=e.name,
                is_group=e.is_group,
                created_by=_id(e.created_by),
                member_ids=_ids(e.member_ids),
                cursor=c,
            )
        case events.MemberAdded():
            return ChatMemberAdded(chat_id=_id(e.chat_id), user_id=_id(e.user_id), added_by=_id(e.added_by), cursor=c)  # type: ignore[arg-type]
        case events.MemberRemoved():
            return ChatMemberRemoved(
                chat_id=_id(e.chat_id), user_id=_id(e.user_id), removed_by=_id(e.removed_by), cursor=c
            )  # type: ignore[arg-type]
        case events.GlobalNotification():
            return GlobalNotification(payload=e.payload_data, cursor=c)
        case events.ResyncRequired():
            return ResyncRequired(reason=e.reason)
    raise TypeError(f"expected a known event, got {type(e).__name__}")


# GraphQL type name of each event type: the contract between the event schema and this adapter.
EVENT_TYPENAMES: dict[str, str] = {
    events.NewMessage.type: "NewMessage",
    events.MessagesRead.type: "MessagesRead",
    events.UserTyping.type: "UserTyping",
    events.UserStoppedTyping.type: "UserStoppedTyping",
    events.UserJoined.type: "UserJoined",
    events.UserLeft.type: "UserLeft",
    events.ChatCreated.type: "ChatCreated",
    events.MemberAdded.type: "ChatMemberAdded",
    events.MemberRemoved.type: "ChatMemberRemoved",
    events.GlobalNotification.type: "GlobalNotification",
    events.ResyncRequired.type: "ResyncRequired",
}
