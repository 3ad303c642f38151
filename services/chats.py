"""Chats and membership: create, add/remove members, the chat list with unread counts, presence per chat."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Chat, Member, Message, User
from models.tables import UserBlock
from services.auth import Actor, require_user
from services.errors import BadRequest, DomainError, Forbidden, NotFound
from services.message_views import message_data, with_reactions
from services.runtime import Runtime
from services.users import user_view
from services.validation import valid_text
from services.views import ChatPresence, ChatStatus, ChatView, ReadMarker, UserView
from storage import NewChat, Refusal, direct_key

Ts = TypeVarTuple("Ts")

MAX_CHAT_NAME_LENGTH = 200
# The one answer for a user who is unknown, blocks the caller or left the group: none of them is told apart.
UNADDABLE = "no such user, or not one you can add"


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
    Refusal.NOT_GROUP: BadRequest("members of a 1:1 chat cannot change: leave it with leaveChat"),
    Refusal.NOT_ADMIN: Forbidden(
        "only the chat's admin may remove other members: its creator, or once the creator has left, the member "
        "who has been in it longest"
    ),
    Refusal.UNKNOWN_USER: NotFound(f"userId: {UNADDABLE}"),
}


def _refused(refusal: Refusal, rt: Runtime) -> DomainError:
    if refusal is Refusal.FULL:
        return BadRequest(f"the chat is full: at most {rt.settings.max_chat_members} members (MAX_CHAT_MEMBERS)")
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
    """Create a chat; a user token adds its own user. A 1:1 chat of the same two users is returned, not duplicated
    (and a creator who had left it is in it again). A member who is unknown, or blocks the creator, is refused
    alike: NOT_FOUND."""
    members = set(member_ids)
    creator: uuid.UUID | None = None
    if not actor.is_service:
        creator = require_user(actor)
        members.add(creator)
    if len(members) > rt.settings.max_chat_members:
        raise BadRequest(f"memberIds: at most {rt.settings.max_chat_members} members (MAX_CHAT_MEMBERS)")
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
        raise NotFound(f"memberIds: {UNADDABLE}")
    assert created.chat_id is not None
    return await get_chat(rt, actor=Actor(user_id=creator or min(members)), chat_id=created.chat_id)


async def add_member(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, user_id: uuid.UUID) -> ChatView:
    """Add a member to a group chat: any member may, and services may; a user who left it may re-join by adding
    themselves, and nobody else may add them back. Unknown, blocking the caller and left are refused alike."""
    by = None if actor.is_service else require_user(actor)
    added = await rt.store.add_member(chat_id=chat_id, user_id=user_id, by=by, max_members=rt.settings.max_chat_members)
    if added.refused is not None:
        raise _refused(added.refused, rt)
    return await get_chat(rt, actor=Actor(user_id=actor.user_id or user_id), chat_id=chat_id)


async def remove_member(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Remove a member from a group chat: members may remove themselves (they have left: see `leave_chat`); the
    chat's admin and services anyone."""
    by = None if actor.is_service else require_user(actor)
    removed = await rt.store.remove_member(chat_id=chat_id, user_id=user_id, by=by)
    if removed.refused is not None:
        raise _refused(removed.refused, rt)
    return removed.changed


async def leave_chat(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID) -> bool:
    """Leave a chat for good (`MemberRemoved`, removed by the leaver). A group: nobody else may add the leaver back;
    they may re-join by adding themselves. A 1:1 chat: gone from the leaver's list and streams, read-only for the
    other member, until the leaver creates it again (`create_chat` with the other: the same chat, its history)."""
    user_id = require_user(actor)
    left = await rt.store.leave_chat(chat_id=chat_id, user_id=user_id)
    if left.refused is not None:
        raise _refused(left.refused, rt)
    return True


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
    seniority: dict[uuid.UUID, list[tuple[int, uuid.UUID]]] = defaultdict(list)
    member_rows = await session.execute(
        select(Member.chat_id, User, Member.last_read_seq, Member.joined_seq)
        .join(User, User.id == Member.user_id)
        .where(Member.chat_id.in_(my_chat_ids))
        .order_by(Member.joined_at, User.id)
    )
    for cid, user, read_seq, joined_seq in member_rows.all():
        participants[cid].append(user_view(rt, user))
        markers[cid].append(ReadMarker(chat_id=cid, user_id=user.id, last_read_seq=read_seq))
        seniority[cid].append((joined_seq, user.id))

    # 3. the last message of each chat that I see
    latest = (
        select(Message.chat_id, func.max(Message.seq).label("seq"))
        .join(Member, and_(Member.chat_id == Message.chat_id, Member.user_id == user_id))
        .where(Message.chat_id.in_(my_chat_ids), *_visible(rt, user_id))
        .group_by(Message.chat_id)
        .subquery()
    )
    message_rows = await session.execute(
        select(Message, User)
        .join(latest, and_(latest.c.chat_id == Message.chat_id, latest.c.seq == Message.seq))
        .join(User, User.id == Message.sender_id)
    )
    last = [message_data(message, sender) for message, sender in message_rows.all()]
    last_messages = {m.chat_id: m for m in await with_reactions(session, last, viewer=user_id)}

    # 4. unread: messages from others after my own read marker, per chat (those I see)
    unread_rows = await session.execute(
        select(Message.chat_id, func.count())
        .join(Member, and_(Member.chat_id == Message.chat_id, Member.user_id == user_id))
        .where(Message.seq > Member.last_read_seq, Message.sender_id != user_id, *_visible(rt, user_id))
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
            admin_id=_admin(chat, seniority[chat.id]),
        )
        for chat, last_read_seq in chats
    ]


def _admin(chat: Chat, members: list[tuple[int, uuid.UUID]]) -> uuid.UUID | None:
    """Who may remove others from a group (storage.membership): its creator while a member, else the member who has
    been in it longest (the smallest id among those who joined together); a 1:1 chat has none."""
    if not chat.is_group or not members:
        return None
    if chat.created_by in {user_id for _, user_id in members}:
        return chat.created_by
    return min(members)[1]


def _visible(rt: Runtime, user_id: uuid.UUID) -> list[ColumnElement[bool]]:
    """Which messages `user_id` sees in their chats, their own `Member` row joined: none from a user they block;
    with HISTORY_VISIBILITY=joined, in a group only those sent since they (last) joined."""
    conditions: list[ColumnElement[bool]] = [Message.sender_id.not_in(_blocked_by(user_id))]
    if rt.settings.history_visibility == "joined":
        direct = select(Chat.id).where(Chat.id == Message.chat_id, Chat.is_group.is_(False)).exists()
        conditions.append(or_(Message.seq > Member.joined_seq, direct))
    return conditions


def _blocked_by(user_id: uuid.UUID) -> Select[uuid.UUID]:
    return select(UserBlock.blocked_id).where(UserBlock.blocker_id == user_id)


def visible_history(rt: Runtime, query: Select[*Ts], *, user_id: uuid.UUID) -> Select[*Ts]:
    """A query of `Message` rows cut to those `user_id` sees (`_visible`): history pages."""
    mine = and_(Member.chat_id == Message.chat_id, Member.user_id == user_id)
    return query.join(Member, mine).where(*_visible(rt, user_id))


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
        blocked = set((await session.execute(_blocked_by(user_id))).scalars())
    online_others: set[uuid.UUID] = set()
    chats = []
    for cid, uids in sorted(members.items()):
        online = tuple(sorted(u for u in uids if u != user_id and rt.is_online(u)))
        online_others.update(online)
        typing = tuple(sorted(u for u in rt.typing_in(cid) if u != user_id and u not in blocked))
        chats.append(ChatPresence(chat_id=cid, online_user_ids=online, typing_user_ids=typing, users_count=len(uids)))
    return ChatStatus(chats=tuple(chats), total_online_users=len(online_others))
