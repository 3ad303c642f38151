"""Chats and membership: create, add/remove members, the chat list with unread counts, presence per chat."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Select, and_, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import Chat, Member, Message, User, utcnow
from models.group_commit import sqlite_uuid
from realtime.events import ChatCreated, MemberAdded, MemberRemoved, MessageData, UserRef
from services import journal
from services.auth import Actor, require_user
from services.errors import BadRequest, Forbidden, NotFound
from services.runtime import Runtime
from services.users import user_view
from services.validation import valid_text
from services.views import ChatPresence, ChatStatus, ChatView, ReadMarker, UserView

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
    """The chats of a user: the first query of every connection. On a SQLite file it is a unit of work of the
    group commit's thread (no pool to wait for: a reconnect storm of thousands of sockets queues there, in
    order, instead of timing out on the engine's pool)."""
    if rt.db.group_commit is not None:
        key = sqlite_uuid(user_id)
        rows = await rt.db.group_commit.run(lambda c: c.execute(_SQLITE_USER_CHATS, (key,)).fetchall())
        return [uuid.UUID(hex=chat_id) for (chat_id,) in rows]
    async with rt.db.read() as session:
        rows = await session.execute(select(Member.chat_id).where(Member.user_id == user_id))
        return list(rows.scalars())


_SQLITE_USER_CHATS = "SELECT chat_id FROM members WHERE user_id = ?"


def _direct_key(a: uuid.UUID, b: uuid.UUID) -> str:
    return ":".join(sorted((a.hex, b.hex)))


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
    direct_key = None if group else _direct_key(*members)

    viewer = creator or min(members)
    if direct_key is not None:
        existing = await _direct_chat(rt, direct_key)
        if existing is not None:
            return await get_chat(rt, actor=Actor(user_id=viewer), chat_id=existing)

    now = utcnow()
    chat_id = uuid.uuid4()
    try:
        async with rt.db.write() as session:
            known = await session.execute(select(func.count()).select_from(User).where(User.id.in_(members)))
            if known.scalar_one() != len(members):
                raise NotFound("memberIds: unknown user")
            session.add(
                Chat(
                    id=chat_id,
                    name=name,
                    is_group=group,
                    created_by=creator,
                    direct_key=direct_key,
                    created_at=now,
                    updated_at=now,
                    last_seq=0,
                )
            )
            await session.flush()
            # The creation is the chat's seq 0: its first message is seq 1.
            recorded = await journal.append(
                session,
                ChatCreated(
                    chat_id=chat_id, name=name, is_group=group, created_by=creator, member_ids=tuple(sorted(members))
                ),
            )
            await session.execute(
                insert(Member),
                [
                    {
                        "chat_id": chat_id,
                        "user_id": uid,
                        "joined_at": now,
                        "last_read_seq": 0,
                        "joined_pos": recorded.event.pos,
                    }
                    for uid in members
                ],
            )
    except IntegrityError:
        # Another request created the same 1:1 chat between our check and our commit.
        existing = await _direct_chat(rt, direct_key) if direct_key else None
        if existing is None:
            raise
        return await get_chat(rt, actor=Actor(user_id=viewer), chat_id=existing)

    rt.publish_recorded(recorded)
    return await get_chat(rt, actor=Actor(user_id=viewer), chat_id=chat_id)


async def _direct_chat(rt: Runtime, direct_key: str) -> uuid.UUID | None:
    async with rt.db.read() as session:
        result = await session.execute(select(Chat.id).where(Chat.direct_key == direct_key))
        return result.scalar_one_or_none()


async def add_member(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, user_id: uuid.UUID) -> ChatView:
    """Add a member to a group chat: any member may, and services may."""
    async with rt.db.write() as session:
        if not actor.is_service:
            await require_member(session, chat_id=chat_id, user_id=require_user(actor))
        chat = await session.get(Chat, chat_id)
        if chat is None:
            raise NotFound("chat not found")
        if not chat.is_group:
            raise BadRequest("members of a 1:1 chat cannot change")
        if await session.get(User, user_id) is None:
            raise NotFound("userId: unknown user")
        recorded = None
        if await session.get(Member, (chat_id, user_id)) is None:
            recorded = await journal.record_chat_event(
                session,
                chat_id,
                MemberAdded(chat_id=chat_id, user_id=user_id, added_by=actor.user_id),
                subject_user_id=user_id,
            )
            assert recorded is not None  # the chat was read above, in this transaction
            session.add(
                Member(
                    chat_id=chat_id, user_id=user_id, joined_at=utcnow(), last_read_seq=0, joined_pos=recorded.event.pos
                )
            )
    if recorded is not None:
        rt.publish_recorded(recorded)
    return await get_chat(rt, actor=Actor(user_id=actor.user_id or user_id), chat_id=chat_id)


async def remove_member(rt: Runtime, *, actor: Actor, chat_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Remove a member from a group chat: members may remove themselves; the creator and services anyone."""
    async with rt.db.write() as session:
        if not actor.is_service:
            me = require_user(actor)
            await require_member(session, chat_id=chat_id, user_id=me)
            chat = await session.get(Chat, chat_id)
            assert chat is not None  # a membership row implies its chat (foreign key)
            if user_id != me and chat.created_by != me:
                raise Forbidden("only the chat's creator may remove other members")
        else:
            chat = await session.get(Chat, chat_id)
            if chat is None:
                raise NotFound("chat not found")
        if not chat.is_group:
            raise BadRequest("members of a 1:1 chat cannot change")
        result = await session.execute(delete(Member).where(Member.chat_id == chat_id, Member.user_id == user_id))
        recorded = None
        if result.rowcount:  # type: ignore[attr-defined]
            recorded = await journal.record_chat_event(
                session,
                chat_id,
                MemberRemoved(chat_id=chat_id, user_id=user_id, removed_by=actor.user_id),
                subject_user_id=user_id,
            )
    if recorded is not None:
        rt.publish_recorded(recorded)
    return recorded is not None


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
    chats_q: Select[tuple[Chat, int]] = (
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
    rows = await session.execute(
        select(Member.chat_id, User, Member.last_read_seq)
        .join(User, User.id == Member.user_id)
        .where(Member.chat_id.in_(my_chat_ids))
        .order_by(Member.joined_at, User.id)
    )
    for cid, user, read_seq in rows.all():
        participants[cid].append(user_view(rt, user))
        markers[cid].append(ReadMarker(chat_id=cid, user_id=user.id, last_read_seq=read_seq))

    # 3. the last message of each chat
    latest = (
        select(Message.chat_id, func.max(Message.seq).label("seq"))
        .where(Message.chat_id.in_(my_chat_ids))
        .group_by(Message.chat_id)
        .subquery()
    )
    rows = await session.execute(
        select(Message, User)
        .join(latest, and_(latest.c.chat_id == Message.chat_id, latest.c.seq == Message.seq))
        .join(User, User.id == Message.sender_id)
    )
    last_messages = {message.chat_id: message_data(message, sender) for message, sender in rows.all()}

    # 4. unread: messages from others after my own read marker, per chat
    rows = await session.execute(
        select(Message.chat_id, func.count())
        .join(Member, and_(Member.chat_id == Message.chat_id, Member.user_id == user_id))
        .where(Message.seq > Member.last_read_seq, Message.sender_id != user_id)
        .group_by(Message.chat_id)
    )
    unread = {cid: count for cid, count in rows.all()}

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
