"""Chats and membership, once for every backend: create a chat, add, remove and leave members, block users, and
what a connection reads when it opens.

Each unit of work is written here once, as a *program*: a generator that yields the statements it runs (`Query`)
and receives each one's rows, so its rules — who may add whom, who is the admin, what a 1:1 chat does when one
of its two members leaves — exist in one place. A backend runs a program inside its batched transaction with a
small driver (`storage.sqlite_members`, `storage.postgres_members`), which renders the statements in its dialect
and converts values. `MembershipStore` is the part of `Store` built on them; a backend inherits it and runs its
programs with `_program`.

The refusals an outsider could tell apart are one refusal: an unknown user, a user who blocks the actor and one
who left the group are each UNKNOWN_USER, reached by the same single statement.
"""

from __future__ import annotations

import functools
import uuid
from abc import abstractmethod
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from models import utcnow
from realtime.events import BlockChanged, MemberAdded, MemberRemoved
from storage.base import Changed, Created, Logged, NewChat, Refusal, Store, StreamStart

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Query:
    """One statement of a program and its parameters; it receives the first row (None: none), or all with `many`."""

    statement: str
    params: tuple[Any, ...] = ()
    many: bool = False


Program = Generator[Query, Any, T]


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    """A program's outcome."""

    value: T


_START = object()


def advance(program: Program[T], rows: Any = _START) -> Query | Done[T]:
    """Run a program to its next statement, handing it the rows of the one before (none on the first call), or to
    its end. A driver: `step = advance(p)`, then `while isinstance(step, Query): step = advance(p, rows(step))`."""
    try:
        return next(program) if rows is _START else program.send(rows)
    except StopIteration as done:
        return Done(done.value)


@dataclass(frozen=True)
class Dialect:
    """How a backend spells what the statements leave open: `{n}` its n-th parameter (from 0), `{lock}` a row lock
    on what a SELECT reads, `{each[n]}` the rows (`value`) of its n-th parameter, a list of ids."""

    placeholder: Callable[[int], str]
    lock: str
    each: Callable[[int], str]


@functools.cache
def render(statement: str, dialect: Dialect) -> str:
    return statement.format(
        *(dialect.placeholder(n) for n in range(10)),
        lock=dialect.lock,
        each=[dialect.each(n) for n in range(10)],
    )


def as_uuid(value: Any) -> uuid.UUID:
    """An id as a driver returns it (a UUID, or SQLite's hex text)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(hex=value)


# -- the statements -------------------------------------------------------------------------------------------

IS_MEMBER = "SELECT 1 FROM members WHERE chat_id = {0} AND user_id = {1}"
DEPARTED = "SELECT 1 FROM chat_departures WHERE chat_id = {0} AND user_id = {1}"
CHAT = "SELECT is_group, created_by FROM chats WHERE id = {0}{lock}"
MEMBER_COUNT = "SELECT count(*) FROM members WHERE chat_id = {0}"
# The admin: the creator ({1}) while a member, else the longest-standing member (the smallest id among equals).
ADMIN = (
    "SELECT user_id FROM members WHERE chat_id = {0} "
    "ORDER BY CASE WHEN user_id = {1} THEN 0 ELSE 1 END, joined_seq, user_id LIMIT 1"
)
# Whom {1} (None: a service) may add to the chat {2}: a known user who does not block {1} and did not leave the
# chat — unless {1} is that user, re-joining — or anyone known, for a service.
CAN_ADD = (
    "SELECT 1 FROM users u WHERE u.id = {0} "
    "AND NOT EXISTS (SELECT 1 FROM user_blocks b WHERE b.blocker_id = u.id AND b.blocked_id = {1}) "
    "AND ({1} IS NULL OR {1} = u.id "
    "OR NOT EXISTS (SELECT 1 FROM chat_departures d WHERE d.chat_id = {2} AND d.user_id = u.id))"
)
# How many of the users {0} the creator {1} may put in a new chat: known, and not blocking them.
ADDABLE = (
    "SELECT count(*) FROM users u WHERE u.id IN (SELECT value FROM {each[0]}) "
    "AND NOT EXISTS (SELECT 1 FROM user_blocks b WHERE b.blocker_id = u.id AND b.blocked_id = {1})"
)
DIRECT = "SELECT id FROM chats WHERE direct_key = {0}"
INSERT_CHAT = (
    "INSERT INTO chats (id, name, is_group, created_by, direct_key, created_at, updated_at, last_seq) "
    "VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {5}, 0) ON CONFLICT (direct_key) DO NOTHING RETURNING id"
)
INSERT_MEMBERS = (
    "INSERT INTO members (chat_id, user_id, joined_at, last_read_seq, joined_seq) "
    "SELECT {0}, value, {1}, 0, 0 FROM {each[2]}"
)
INSERT_MEMBER = (
    "INSERT INTO members (chat_id, user_id, joined_at, last_read_seq, joined_seq) VALUES ({0}, {1}, {2}, 0, {3})"
)
DELETE_MEMBER = "DELETE FROM members WHERE chat_id = {0} AND user_id = {1} RETURNING 1"
DEPART = (
    "INSERT INTO chat_departures (chat_id, user_id, created_at) VALUES ({0}, {1}, {2}) "
    "ON CONFLICT (chat_id, user_id) DO NOTHING"
)
RETURNED = "DELETE FROM chat_departures WHERE chat_id = {0} AND user_id = {1}"
NEXT_SEQ = "UPDATE chats SET last_seq = last_seq + 1, updated_at = {1} WHERE id = {0} RETURNING last_seq"
USER_EXISTS = "SELECT 1 FROM users WHERE id = {0}"
BLOCK = (
    "INSERT INTO user_blocks (blocker_id, blocked_id, created_at) VALUES ({0}, {1}, {2}) "
    "ON CONFLICT (blocker_id, blocked_id) DO NOTHING RETURNING 1"
)
UNBLOCK = "DELETE FROM user_blocks WHERE blocker_id = {0} AND blocked_id = {1} RETURNING 1"
CHATS_OF = (
    "SELECT m.chat_id, m.joined_seq, c.is_group FROM members m JOIN chats c ON c.id = m.chat_id WHERE m.user_id = {0}"
)
BLOCKED_BY = "SELECT blocked_id FROM user_blocks WHERE blocker_id = {0}"


# -- the programs ---------------------------------------------------------------------------------------------


def create_chat(logged: list[Logged], *, chat: NewChat) -> Program[Created]:
    members = list(chat.members)
    (addable,) = yield Query(ADDABLE, (members, chat.created_by))
    if addable != len(members):
        return Created(refused=Refusal.UNKNOWN_USER)
    if chat.direct_key is not None:
        existing = yield Query(DIRECT, (chat.direct_key,))
        if existing is not None:
            chat_id = as_uuid(existing[0])
            if chat.created_by is not None:
                yield from _come_back(logged, chat_id=chat_id, user_id=chat.created_by)
            return Created(chat_id=chat_id, existed=True)
    values = (chat.id, chat.name, chat.is_group, chat.created_by, chat.direct_key, chat.created_at)
    if (yield Query(INSERT_CHAT, values)) is None:  # the same 1:1 chat, created meanwhile by another process
        existing = yield Query(DIRECT, (chat.direct_key,))
        return Created(chat_id=as_uuid(existing[0]), existed=True)
    yield Query(INSERT_MEMBERS, (chat.id, chat.created_at, members))
    logged.append(chat.creation())
    return Created(chat_id=chat.id)


def _come_back(logged: list[Logged], *, chat_id: uuid.UUID, user_id: uuid.UUID) -> Program[None]:
    """A 1:1 chat created again by a member who had left it: they are a member again."""
    yield Query(CHAT, (chat_id,))  # locks the chat: one change of its membership at a time
    if not (yield Query(IS_MEMBER, (chat_id, user_id))):
        yield from _join(logged, MemberAdded(chat_id=chat_id, user_id=user_id, added_by=user_id))


def _join(logged: list[Logged], event: MemberAdded) -> Program[None]:
    (seq,) = yield Query(NEXT_SEQ, (event.chat_id, utcnow()))
    yield Query(INSERT_MEMBER, (event.chat_id, event.user_id, utcnow(), seq))
    yield Query(RETURNED, (event.chat_id, event.user_id))
    logged.append(Logged(event, seq=seq, subject_user_id=event.user_id))


def add_member(
    logged: list[Logged], *, chat_id: uuid.UUID, user_id: uuid.UUID, by: uuid.UUID | None, max_members: int
) -> Program[Changed]:
    if by is not None and not (yield Query(IS_MEMBER, (chat_id, by))):
        if by != user_id or not (yield Query(DEPARTED, (chat_id, user_id))):
            return Changed(refused=Refusal.NOT_MEMBER)
    chat = yield Query(CHAT, (chat_id,))
    if chat is None:
        return Changed(refused=Refusal.NO_CHAT)
    if not chat[0]:
        return Changed(refused=Refusal.NOT_GROUP)
    if (yield Query(IS_MEMBER, (chat_id, user_id))):
        return Changed()
    (count,) = yield Query(MEMBER_COUNT, (chat_id,))
    if count >= max_members:
        return Changed(refused=Refusal.FULL)
    if not (yield Query(CAN_ADD, (user_id, by, chat_id))):
        return Changed(refused=Refusal.UNKNOWN_USER)
    yield from _join(logged, MemberAdded(chat_id=chat_id, user_id=user_id, added_by=by))
    return Changed(changed=True)


def remove_member(
    logged: list[Logged], *, chat_id: uuid.UUID, user_id: uuid.UUID, by: uuid.UUID | None, leaving: bool = False
) -> Program[Changed]:
    """`by` removes `user_id` (`leaving`: they leave, whatever kind of chat it is)."""
    if by is not None and not (yield Query(IS_MEMBER, (chat_id, by))):
        return Changed(refused=Refusal.NOT_MEMBER)
    chat = yield Query(CHAT, (chat_id,))
    if chat is None:
        return Changed(refused=Refusal.NO_CHAT)
    is_group, creator = bool(chat[0]), None if chat[1] is None else as_uuid(chat[1])
    if by is not None and by != user_id:
        admin = yield Query(ADMIN, (chat_id, creator))
        if admin is None or as_uuid(admin[0]) != by:
            return Changed(refused=Refusal.NOT_ADMIN)
    if not is_group and not leaving:
        return Changed(refused=Refusal.NOT_GROUP)
    if (yield Query(DELETE_MEMBER, (chat_id, user_id))) is None:
        return Changed()
    if is_group and by == user_id:
        yield Query(DEPART, (chat_id, user_id, utcnow()))
    (seq,) = yield Query(NEXT_SEQ, (chat_id, utcnow()))
    event = MemberRemoved(chat_id=chat_id, user_id=user_id, removed_by=by)
    logged.append(Logged(event, seq=seq, subject_user_id=user_id))
    return Changed(changed=True)


def set_block(logged: list[Logged], *, blocker_id: uuid.UUID, blocked_id: uuid.UUID, blocked: bool) -> Program[Changed]:
    if not (yield Query(USER_EXISTS, (blocker_id,))):
        return Changed(refused=Refusal.NOT_PROVISIONED)
    change = Query(BLOCK, (blocker_id, blocked_id, utcnow())) if blocked else Query(UNBLOCK, (blocker_id, blocked_id))
    if (yield change) is None:
        return Changed()
    logged.append(Logged(BlockChanged(user_id=blocker_id, blocked_user_id=blocked_id, blocked=blocked)))
    return Changed(changed=True)


def stream_start(logged: list[Logged], *, user_id: uuid.UUID) -> Program[StreamStart]:
    chats = yield Query(CHATS_OF, (user_id,), many=True)
    blocked = yield Query(BLOCKED_BY, (user_id,), many=True)
    return starting(chats, [as_uuid(r[0]) for r in blocked])


def starting(chats: Sequence[Any], blocked_ids: list[uuid.UUID]) -> StreamStart:
    """A `StreamStart` from `CHATS_OF`'s rows."""
    member_since = {as_uuid(chat_id): int(seq) for chat_id, seq, _ in chats}
    return StreamStart(
        chat_ids=list(member_since),
        blocked_ids=blocked_ids,
        joined_at={as_uuid(chat_id): seq for chat_id, seq, group in chats if group and seq},
        member_since=member_since,
    )


# -- the store's part -----------------------------------------------------------------------------------------


class MembershipStore(Store):
    """The `Store` methods of chats and membership: each runs its program in the backend's next batch."""

    @abstractmethod
    async def _program(self, make: Callable[[list[Logged]], Program[T]]) -> T:
        """Run the program `make(logged)` as one unit of work (its events logged in `logged`)."""

    async def create_chat(self, chat: NewChat) -> Created:
        return await self._program(functools.partial(create_chat, chat=chat))

    async def add_member(
        self, *, chat_id: uuid.UUID, user_id: uuid.UUID, by: uuid.UUID | None, max_members: int
    ) -> Changed:
        unit = functools.partial(add_member, chat_id=chat_id, user_id=user_id, by=by, max_members=max_members)
        return await self._program(unit)

    async def remove_member(self, *, chat_id: uuid.UUID, user_id: uuid.UUID, by: uuid.UUID | None) -> Changed:
        return await self._program(functools.partial(remove_member, chat_id=chat_id, user_id=user_id, by=by))

    async def leave_chat(self, *, chat_id: uuid.UUID, user_id: uuid.UUID) -> Changed:
        unit = functools.partial(remove_member, chat_id=chat_id, user_id=user_id, by=user_id, leaving=True)
        return await self._program(unit)

    async def set_block(self, *, blocker_id: uuid.UUID, blocked_id: uuid.UUID, blocked: bool) -> Changed:
        unit = functools.partial(set_block, blocker_id=blocker_id, blocked_id=blocked_id, blocked=blocked)
        return await self._program(unit)
