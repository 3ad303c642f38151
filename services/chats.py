"""Chats and membership: create, add/remove members, the chat list with unread counts, presence per chat."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Chat, Member, Message, User
from realtime.events import MessageData, UserRef
from services.auth import Actor, require_user
from services.errors import BadRequest, DomainError, Forbidden, NotFound
from services.runtime import Runtime
from services.users import user_view
from services.validation import valid_text
from services.views import ChatPresence, ChatStatus, ChatView, ReadMarker, UserView
from storage import NewChat, Refusal, direct_key

MAX_CHAT_NAME_LENGTH = 200
# A group larger than this is a broadcast channel, not a chat; it also bounds one createChat's work.
MAX_CHAT_MEMBERS = 10_000


def message_data(message: Message, sender: User) -> MessageData:
    return MessageData(
        id=message.id,
        chat_id=message.chat_id,
        seq=message.seq,
        content=message.content,
        created_at=message.created_at,
        updated_at=message.updated_at,
        sender=UserRef(id=sender.id, email=sender.email, image_url=sender.image_url),
        client_id=message.client_id,
    )


async def require_member(session: AsyncSession, *, chat_id: uuid.UUID, user_id: uuid.UUID) -> Member:
    """The user's membership row, or FORBIDDEN — the same answer whether or not the chat exists."""
    member = await session.get(Member, (chat_id, user_id))
    if member is None:
        raise Forbidden()
    return member


async def user_chat_ids(rt: Runtime, *, user_id: uuid.UUID) -> list[uuid.UUID]:
    """The chats of a user: the first query of every connection."""
    return await rt.store.user_chat_ids(user_id=user_id)


# What a refused membership change answers.
_REFUSALS: dict[Refusal, DomainError] = {
    Refusal.NOT_MEMBER: Forbidden(),
    Refusal.NO_CHAT: NotFound("chat not found"),
    Refusal.NOT_GROUP: BadRequest("members of a 1:1 chat cannot change"),
    Refusal.NOT_CREATOR: Forbidden("only the chat's creator may remove other members"),
    Refusal.UNKNOWN_USER: NotFound("userId: unknown user"),
}


def _refused(refusal: Refusal) -> DomainError:
    error = _REFUSALS[refusal]
    return type(error)(error.message)  # a fresh exception each time (a raised one keeps its traceback)


async def create_chat(
    rt: Runtime,
    *,
    actor: Actor,
    member_ids: Sequence[uuid.UUID],
    name: str | None = None,
    is_group: bool | None = None,
) -> ChatView:
    """Create a chat; a user token adds its own user. A 1:1 chat of the same two users is returned, not duplicated."""
    members = set(member_ids)
    creator: uuid.UUID | None = None
    if not actor.is_service:
        creator = require_user(actor)
        members.add(creator)
    if len(members) > MAX_CHAT_MEMBERS:
        raise BadRequest(f"memberIds: at most {MAX_CHAT_MEMBERS} members")
    if name is not None and len(name) > MAX_CHAT_NAME_LENGTH:
        raise BadRequest(f"name: at most {MAX_CHAT_NAME_LENGTH} characters")
    if name is not None:
        valid_text(name, "name")
    group = is_group if is_group is not None else len(members) != 2
    if not group and len(members) != 2:
        raise BadRequest("a 1:1 chat has exactly two members")
    if not members:
        raise BadRequest("memberIds: a chat needs at least one member")
    chat = NewChat(
        id=uuid.uuid4(),
        name=name,
        is_group=group,
        created_by=creator,
        direct_key=None if group else direct_key(sorted(members)),
        members=tuple(sorted(members)),
    )
    created = await rt.store.create_chat(chat)
    if created.refused is not None:
        raise NotFound("memberIds: unknown user")
    assert created.chat_id is not None
    return await get_chat(rt, actor=Actor(user_id=creator or min(members)), chat_id=created.chat_id)


async def add_member(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, user_id: uuid.UUID) -> ChatView:
    """Add a member to a group chat: any member may, and services may."""
    by = None if actor.is_service else require_user(actor)
    added = await rt.store.add_member(chat_id=chat_id, user_id=user_id, by=by)
    if added.refused is not None:
        raise _refused(added.refused)
    return await get_chat(rt, actor=Actor(user_id=actor.user_id or user_id), chat_id=chat_id)


async def remove_member(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Remove a member from a group chat: members may remove themselves; the creator and services anyone."""
    by = None if actor.is_service else require_user(actor)
    removed = await rt.store.remove_member(chat_id=chat_id, user_id=user_id, by=by)
    if removed.refused is not None:
        raise _refused(removed.refused)
    return removed.changed


async def my_chats(rt: Runtime, *, actor: Actor) -> list[ChatView]:
    """All the user's chats, most recently active first, in four queries however many chats there are."""
    user_id = require_user(actor)
    async with rt.db.snapshot() as session:
        return await _chat_views(rt, session, user_id=user_id)


async def get_chat(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID) -> ChatView:
    user_id = require_user(actor)
    async with rt.db.snapshot() as session:
        views = await _chat_views(rt, session, user_id=user_id, chat_id=chat_id)
    if not views:
        raise Forbidden()
    return views[0]


async def _chat_views(
    rt: Runtime, session: AsyncSession, *, user_id: uuid.UUID, chat_id: uuid.UUID | None = None
) -> list[ChatView]:
    mine = select(Member.chat_id).where(Member.user_id == user_id)
    if chat_id is not None:
        mine = mine.where(Member.chat_id == chat_id)
    my_chat_ids = mine.scalar_subquery()

    # 1. the chats with my read marker
    chats_q: Select[Chat, int] = (
        select(Chat, Member.last_read_seq)
        .join(Member, and_(Member.chat_id == Chat.id, Member.user_id == user_id))
        .order_by(Chat.updated_at.desc(), Chat.id)
    )
    if chat_id is not None:
        chats_q = chats_q.where(Chat.id == chat_id)
    chats = (await session.execute(chats_q)).all()
    if not chats:
        return []

    # 2. every participant of those chats, and their read markers
    participants: dict[uuid.UUID, list[UserView]] = defaultdict(list)
    markers: dict[uuid.UUID, list[ReadMarker]] = defaultdict(list)
    member_rows = await session.execute(
        select(Member.chat_id, User, Member.last_read_seq)
        .join(User, User.id == Member.user_id)
        .where(Member.chat_id.in_(my_chat_ids))
        .order_by(Member.joined_at, User.id)
    )
    for cid, user, read_seq in member_rows.all():
        participants[cid].append(user_view(rt, user))
        markers[cid].append(ReadMarker(chat_id=cid, user_id=user.id, last_read_seq=read_seq))

    # 3. the last message of each chat
    latest = (
        select(Message.chat_id, func.max(Message.seq).label("seq"))
        .where(Message.chat_id.in_(my_chat_ids))
        .group_by(Message.chat_id)
        .subquery()
    )
    message_rows = await session.execute(
        select(Message, User)
        .join(latest, and_(latest.c.chat_id == Message.chat_id, latest.c.seq == Message.seq))
        .join(User, User.id == Message.sender_id)
    )
    last_messages = {message.chat_id: message_data(message, sender) for message, sender in message_rows.all()}

    # 4. unread: messages from others after my own read marker, per chat
    unread_rows = await session.execute(
        select(Message.chat_id, func.count())
        .join(Member, and_(Member.chat_id == Message.chat_id, Member.user_id == user_id))
        .where(Message.seq > Member.last_read_seq, Message.sender_id != user_id)
        .group_by(Message.chat_id)
    )
    unread = {cid: count for cid, count in unread_rows.all()}

    return [
        ChatView(
            id=chat.id,
            name=chat.name,
            is_group=chat.is_group,
            created_at=chat.created_at,
            updated_at=chat.updated_at,
            participants=tuple(participants[chat.id]),
            last_message=last_messages.get(chat.id),
            unread_count=unread.get(chat.id, 0),
            last_read_seq=last_read_seq,
            read_markers=tuple(markers[chat.id]),
        )
        for chat, last_read_seq in chats
    ]


async def chat_status(rt: Runtime, *, actor: Actor) -> ChatStatus:
    """Per chat of the user: who else is online and typing, and how many members it has."""
    user_id = require_user(actor)
    async with rt.db.read() as session:
        rows = await session.execute(
            select(Member.chat_id, Member.user_id).where(
                Member.chat_id.in_(select(Member.chat_id).where(Member.user_id == user_id).scalar_subquery())
            )
        )
        members: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for cid, uid in rows.all():
            members[cid].append(uid)
    online_others: set[uuid.UUID] = set()
    chats = []
    for cid, uids in sorted(members.items()):
        online = tuple(sorted(u for u in uids if u != user_id and rt.is_online(u)))
        online_others.update(online)
        typing = tuple(sorted(u for u in rt.typing_in(cid) if u != user_id))
        chats.append(ChatPresence(chat_id=cid, online_user_ids=online, typing_user_ids=typing, users_count=len(uids)))
    return ChatStatus(chats=tuple(chats), total_online_users=len(online_others))
