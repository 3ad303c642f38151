"""Messages besides the send, once for every backend: the read marker, edits, deletions (tombstones) and reactions.

Each unit of work is a *program* (storage.membership: a generator that yields its statements and receives their
rows), run by the backend's driver inside its batched transaction. A program that changes a message first locks
its chat (PostgreSQL: `FOR UPDATE`; chats first, as sends and membership changes do) and reads the message after
that lock, so two processes never both change it from the same state. `MessagingStore` is the part of `Store`
built on them. The send stays each backend's own (storage.sqlite_messages, storage.postgres_statements): it is
the hot path, batched in one statement on PostgreSQL.
"""

from __future__ import annotations

import functools
import uuid
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from models import utcnow
from realtime.events import Event, MessageDeleted, MessageEdited, MessagesRead, ReactionChanged, ReactionCount
from storage.base import Changed, Logged, ReadMoved, Refusal, Store
from storage.membership import CHAT, NEXT_SEQ, Program, Query, as_uuid

T = TypeVar("T")

READ_MARKER = "SELECT last_read_seq FROM members WHERE chat_id = {0} AND user_id = {1}{lock}"
LATEST = "SELECT coalesce(max(seq), 0) FROM messages WHERE chat_id = {0}"
MOVE_MARKER = "UPDATE members SET last_read_seq = {2} WHERE chat_id = {0} AND user_id = {1}"
CHAT_OF = "SELECT chat_id FROM messages WHERE id = {0}"
# The message {0}, and whether {1} (None: a service) is a member of its chat.
TARGET = (
    "SELECT m.chat_id, m.seq, m.sender_id, m.content, m.deleted_at IS NOT NULL, m.edit_client_id, "
    "EXISTS (SELECT 1 FROM members WHERE chat_id = m.chat_id AND user_id = {1}) FROM messages m WHERE m.id = {0}"
)
EDIT = "UPDATE messages SET content = {1}, edited_at = {2}, updated_at = {2}, edit_client_id = {3} WHERE id = {0}"
TOMBSTONE = "UPDATE messages SET content = '', deleted_at = {1}, updated_at = {1} WHERE id = {0}"
CLEAR_REACTIONS = "DELETE FROM reactions WHERE message_id = {0}"
# The message's distinct emoji, and this one's reactions: at the limit, a new emoji is refused.
EMOJI_IN_USE = "SELECT count(DISTINCT emoji), count(*) FILTER (WHERE emoji = {1}) FROM reactions WHERE message_id = {0}"
ADD_REACTION = (
    "INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES ({0}, {1}, {2}, {3}) "
    "ON CONFLICT (message_id, user_id, emoji) DO NOTHING RETURNING 1"
)
REMOVE_REACTION = "DELETE FROM reactions WHERE message_id = {0} AND user_id = {1} AND emoji = {2} RETURNING 1"
# Per emoji, in order of its first use.
COUNTS = "SELECT emoji, count(*) FROM reactions WHERE message_id = {0} GROUP BY emoji ORDER BY min(created_at), emoji"


@dataclass(frozen=True, slots=True)
class Target:
    """A message as a program finds it, and whether the acting user is a member of its chat."""

    chat_id: uuid.UUID
    seq: int
    sender_id: uuid.UUID
    content: str
    deleted: bool
    edit_client_id: str | None
    member: bool


def _refusal(target: Target, *, by: uuid.UUID | None, sender_only: bool, live: bool) -> Refusal | None:
    """Why `by` (None: a service) may not change the message: a user outside its chat may not; `sender_only`: a
    user other than its sender may not; `live`: a deleted message may not be changed."""
    if by is not None and not target.member:
        return Refusal.NOT_MEMBER
    if sender_only and by is not None and target.sender_id != by:
        return Refusal.NOT_SENDER
    if live and target.deleted:
        return Refusal.DELETED
    return None


# -- the programs ---------------------------------------------------------------------------------------------


def _target(message_id: uuid.UUID, by: uuid.UUID | None, *, sender_only: bool, live: bool) -> Program[Target | Refusal]:
    """The message `by` (None: a service) may change, or why not (`_refusal`). An unknown message is NO_MESSAGE to a
    service and NOT_MEMBER to a user, as a chat they are not in is: nothing is revealed."""
    chat = yield Query(CHAT_OF, (message_id,))
    target = None
    if chat is not None:
        yield Query(CHAT, (as_uuid(chat[0]),))  # locks the chat: one change of its messages at a time
        row = yield Query(TARGET, (message_id, by))
        if row is not None:  # else deleted with its chat meanwhile
            chat_id, seq, sender_id, content, deleted, edit_client_id, member = row
            target = Target(
                as_uuid(chat_id), seq, as_uuid(sender_id), content, bool(deleted), edit_client_id, bool(member)
            )
    if target is None:
        return Refusal.NO_MESSAGE if by is None else Refusal.NOT_MEMBER
    return _refusal(target, by=by, sender_only=sender_only, live=live) or target


def _record(logged: list[Logged], event: Event, chat_id: uuid.UUID) -> Program[None]:
    """Log one of the chat's events at its next seq."""
    (seq,) = yield Query(NEXT_SEQ, (chat_id, utcnow()))
    logged.append(Logged(event, seq=seq))


def mark_read(logged: list[Logged], *, chat_id: uuid.UUID, user_id: uuid.UUID) -> Program[ReadMoved]:
    marker = yield Query(READ_MARKER, (chat_id, user_id))
    if marker is None:
        return ReadMoved(refused=Refusal.NOT_MEMBER)
    (latest,) = yield Query(LATEST, (chat_id,))
    if latest <= marker[0]:
        return ReadMoved(last_read_seq=marker[0])
    yield Query(MOVE_MARKER, (chat_id, user_id, latest))
    yield from _record(logged, MessagesRead(chat_id=chat_id, user_id=user_id, last_read_seq=latest), chat_id)
    return ReadMoved(last_read_seq=latest)


def edit(
    logged: list[Logged], *, message_id: uuid.UUID, user_id: uuid.UUID, content: str, client_id: str | None
) -> Program[Changed]:
    target = yield from _target(message_id, user_id, sender_only=True, live=True)
    if isinstance(target, Refusal):
        return Changed(refused=target)
    # The content it has already, or a retry of its last edit: nothing changes.
    if target.content == content or (client_id is not None and target.edit_client_id == client_id):
        return Changed()
    now = utcnow()
    yield Query(EDIT, (message_id, content, now, client_id))
    event = MessageEdited(
        chat_id=target.chat_id,
        message_id=message_id,
        message_seq=target.seq,
        user_id=user_id,
        content=content,
        edited_at=now,
        client_id=client_id,
    )
    yield from _record(logged, event, target.chat_id)
    return Changed(changed=True)


def delete(logged: list[Logged], *, message_id: uuid.UUID, by: uuid.UUID | None) -> Program[Changed]:
    target = yield from _target(message_id, by, sender_only=True, live=False)
    if isinstance(target, Refusal):
        return Changed(refused=target)
    if target.deleted:
        return Changed()
    now = utcnow()
    yield Query(TOMBSTONE, (message_id, now))
    yield Query(CLEAR_REACTIONS, (message_id,))
    event = MessageDeleted(
        chat_id=target.chat_id, message_id=message_id, message_seq=target.seq, deleted_by=by, deleted_at=now
    )
    yield from _record(logged, event, target.chat_id)
    return Changed(changed=True)


def set_reaction(
    logged: list[Logged], *, message_id: uuid.UUID, user_id: uuid.UUID, emoji: str, add: bool, max_emoji: int
) -> Program[Changed]:
    target = yield from _target(message_id, user_id, sender_only=False, live=add)
    if isinstance(target, Refusal):
        return Changed(refused=target)
    if add:
        distinct, this_one = yield Query(EMOJI_IN_USE, (message_id, emoji))
        if distinct >= max_emoji and not this_one:
            return Changed(refused=Refusal.TOO_MANY_REACTIONS)
        change = Query(ADD_REACTION, (message_id, user_id, emoji, utcnow()))
    else:
        change = Query(REMOVE_REACTION, (message_id, user_id, emoji))
    if (yield change) is None:
        return Changed()
    counts = yield Query(COUNTS, (message_id,), many=True)
    event = ReactionChanged(
        chat_id=target.chat_id,
        message_id=message_id,
        message_seq=target.seq,
        user_id=user_id,
        emoji=emoji,
        added=add,
        counts=tuple(ReactionCount(emoji=e, count=int(n)) for e, n in counts),
    )
    yield from _record(logged, event, target.chat_id)
    return Changed(changed=True)


# -- the store's part -----------------------------------------------------------------------------------------


class MessagingStore(Store):
    """The `Store` methods of read markers, edits, deletions and reactions: each runs its program in the backend's
    next batch."""

    @abstractmethod
    async def _program(self, make: Callable[[list[Logged]], Program[T]]) -> T:
        """Run the program `make(logged)` as one unit of work (its events logged in `logged`)."""

    async def mark_read(self, *, chat_id: uuid.UUID, user_id: uuid.UUID) -> ReadMoved:
        return await self._program(functools.partial(mark_read, chat_id=chat_id, user_id=user_id))

    async def edit_message(
        self, *, message_id: uuid.UUID, user_id: uuid.UUID, content: str, client_id: str | None
    ) -> Changed:
        unit = functools.partial(edit, message_id=message_id, user_id=user_id, content=content, client_id=client_id)
        return await self._program(unit)

    async def delete_message(self, *, message_id: uuid.UUID, by: uuid.UUID | None) -> Changed:
        return await self._program(functools.partial(delete, message_id=message_id, by=by))

    async def set_reaction(
        self, *, message_id: uuid.UUID, user_id: uuid.UUID, emoji: str, add: bool, max_emoji: int
    ) -> Changed:
        unit = functools.partial(
            set_reaction, message_id=message_id, user_id=user_id, emoji=emoji, add=add, max_emoji=max_emoji
        )
        return await self._program(unit)
