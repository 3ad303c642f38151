"""The storage seam: every durable change, once, as a method of `Store`; one backend per database.

A use case in `services` validates and authorizes what it can from its arguments, calls one `Store` method,
and maps the outcome to its answer or to a domain error. The method is one unit of work: the checks that must
hold at the moment of writing (membership, the chat's creator, a retried client id) run inside it, in the same
transaction as the write, and come back as an outcome rather than an exception. Each backend batches the units
that arrive together into one transaction (a group commit) and records their events in the event log.

Commit, then publish: every durable event a unit records is handed to `publish` (the runtime's) right after its
transaction commits, on the event loop, in commit order — before the caller of the method resumes.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models import User, utcnow
from realtime.events import ChatCreated, Event, MessageData
from realtime.positions import Pos


@dataclass(frozen=True, slots=True)
class Recorded:
    """A recorded event and its wire form, encoded once: the same text is stored and published."""

    event: Event
    raw: str


@dataclass(slots=True)
class Logged:
    """A durable event a unit of work writes. Its log position is given before the transaction commits, when
    `recorded` is set: the event at its position and its wire form."""

    event: Event
    seq: int | None = None  # the chat's seq of the event (chat events)
    target_user_id: uuid.UUID | None = None  # a notification to one user
    subject_user_id: uuid.UUID | None = None  # the user a membership change is about
    recorded: Recorded | None = None

    def at(self, pos: Pos) -> dict[str, Any]:
        """Give the event its log position: sets `recorded` and returns the `event_log` row."""
        positioned = dataclasses.replace(self.event, pos=pos, seq=self.seq)
        raw = positioned.encode()
        self.recorded = Recorded(positioned, raw)
        route = positioned.route()
        return {
            "writer": pos.writer,
            "n": pos.n,
            "chat_id": route.chat_id,
            "seq": self.seq,
            "target_user_id": self.target_user_id if self.target_user_id is not None else route.user_id,
            "subject_user_id": self.subject_user_id,
            "type": positioned.type,
            "payload": raw,
            "created_at": utcnow(),
        }


Publish = Callable[[Recorded], None]


# -- outcomes -----------------------------------------------------------------------------------------------


class Refusal(enum.Enum):
    """Why a unit of work wrote nothing."""

    NOT_MEMBER = "not a member"  # the acting user is not a member of the chat (or the chat does not exist)
    NO_CHAT = "no such chat"
    NOT_GROUP = "not a group chat"
    NOT_ADMIN = "not the chat's admin"  # its creator while a member, else its longest-standing member
    UNKNOWN_USER = "unknown user"  # or one the actor may not add (they block the actor, or left the group)
    FULL = "the chat has as many members as allowed"
    NOT_PROVISIONED = "the acting user is not provisioned"
    NO_MESSAGE = "no such message"  # to a service; a user is told NOT_MEMBER (nothing is revealed)
    NOT_SENDER = "not the message's sender"
    DELETED = "the message is deleted"
    TOO_MANY_REACTIONS = "the message has as many distinct reactions as allowed"


@dataclass(frozen=True, slots=True)
class Sent:
    """A send's outcome: the message (stored now, or by an earlier send with the same client id: `retry`), or a
    refusal."""

    message: MessageData | None = None
    retry: bool = False
    refused: Refusal | None = None


@dataclass(frozen=True, slots=True)
class ReadMoved:
    """A read marker's outcome: its position now (moved or not), or a refusal."""

    last_read_seq: int = 0
    refused: Refusal | None = None


@dataclass(frozen=True, slots=True)
class Changed:
    """A membership change's (or a message edit's, deletion's, reaction's) outcome: whether it changed anything,
    or a refusal."""

    changed: bool = False
    refused: Refusal | None = None


@dataclass(frozen=True, slots=True)
class Created:
    """A chat creation's outcome: the chat (new, or the existing 1:1 chat of the same two users), or a
    refusal."""

    chat_id: uuid.UUID | None = None
    existed: bool = False
    refused: Refusal | None = None


@dataclass(frozen=True, slots=True)
class StreamStart:
    """What a connection reads when it opens (`Store.stream_start`)."""

    chat_ids: list[uuid.UUID]
    blocked_ids: list[uuid.UUID]
    # The groups the user joined after their start, and the seq they joined at (HISTORY_VISIBILITY=joined).
    joined_at: dict[uuid.UUID, int]
    # Every chat of the user and the seq they joined it at (0: from its start): whose events a resume replays.
    member_since: dict[uuid.UUID, int]


@dataclass(frozen=True, slots=True)
class NewChat:
    id: uuid.UUID
    name: str | None
    is_group: bool
    created_by: uuid.UUID | None
    direct_key: str | None
    members: tuple[uuid.UUID, ...]
    created_at: datetime = field(default_factory=utcnow)

    def creation(self) -> Logged:
        """The `ChatCreated` event to log: the chat's seq 0 (its first message is seq 1)."""
        event = ChatCreated(
            chat_id=self.id,
            name=self.name,
            is_group=self.is_group,
            created_by=self.created_by,
            member_ids=tuple(sorted(self.members)),
        )
        return Logged(event, seq=0)


def log_at_seq(logged: list[Logged], event: Event, seq: int | None) -> bool:
    """Log a chat's `event` at its `seq`; False, and nothing logged, without one (no such chat, or not a member)."""
    if seq is None:
        return False
    logged.append(Logged(event, seq=seq))
    return True


class Store(ABC):
    """Every durable change of the product. Backends: `storage.sqlite` and `storage.postgres`.

    `writer` is the writer slot this store holds once started: the first number of the positions it gives.
    `transactions` and `units` count the committed transactions and the units of work they held (their ratio is
    the batching: how many writes share one commit)."""

    writer: int = 0

    @property
    @abstractmethod
    def transactions(self) -> int: ...

    @property
    @abstractmethod
    def units(self) -> int: ...

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    # -- messages ---------------------------------------------------------------------------------------

    @abstractmethod
    async def send_message(
        self, *, chat_id: uuid.UUID, sender_id: uuid.UUID, content: str, client_id: str | None
    ) -> Sent:
        """Store a message with the chat's next seq and record `NewMessage` — if the sender is a member and no
        message of theirs in the chat has this client id (then that one is the answer, `retry`)."""

    @abstractmethod
    async def mark_read(self, *, chat_id: uuid.UUID, user_id: uuid.UUID) -> ReadMoved:
        """Move the member's read marker to the chat's latest message; record `MessagesRead` if it moved."""

    @abstractmethod
    async def edit_message(
        self, *, message_id: uuid.UUID, user_id: uuid.UUID, content: str, client_id: str | None
    ) -> Changed:
        """Replace the content of a message `user_id` sent (still a member; not deleted) and record `MessageEdited`;
        unchanged, no event, if the content is the same or `client_id` is the last edit's (a retry)."""

    @abstractmethod
    async def delete_message(self, *, message_id: uuid.UUID, by: uuid.UUID | None) -> Changed:
        """Make a message a tombstone (content emptied, reactions removed) and record `MessageDeleted` — `by` its
        sender (still a member) or a service (None); unchanged, no event, if it is deleted already."""

    @abstractmethod
    async def set_reaction(
        self, *, message_id: uuid.UUID, user_id: uuid.UUID, emoji: str, add: bool, max_emoji: int
    ) -> Changed:
        """Add (`add`) or remove a member's reaction and record `ReactionChanged` with the message's counts after it;
        unchanged, no event, if it already was so. Adding to a deleted message, or a distinct emoji beyond
        `max_emoji`, is refused."""

    # -- chats and membership ---------------------------------------------------------------------------

    @abstractmethod
    async def create_chat(self, chat: NewChat) -> Created:
        """Create the chat with its members and record `ChatCreated` (its seq 0) — unless a member is unknown or
        blocks the creator (UNKNOWN_USER, the same refusal), or a 1:1 chat of the same two users exists (then that
        one is the answer, and a creator who had left it is a member again: `MemberAdded`)."""

    @abstractmethod
    async def add_member(
        self, *, chat_id: uuid.UUID, user_id: uuid.UUID, by: uuid.UUID | None, max_members: int
    ) -> Changed:
        """Add a member to a group chat (`by` a member, a former member re-joining by themselves, or a service:
        None) and record `MemberAdded` — unless the chat holds `max_members` already (FULL), or the user is unknown,
        blocks `by` or left the group (UNKNOWN_USER, the same refusal for each)."""

    @abstractmethod
    async def remove_member(self, *, chat_id: uuid.UUID, user_id: uuid.UUID, by: uuid.UUID | None) -> Changed:
        """Remove a member from a group chat (`by` that member, the chat's admin, or a service: None) and record
        `MemberRemoved`; a member who removes themselves has left (see `leave_chat`)."""

    @abstractmethod
    async def leave_chat(self, *, chat_id: uuid.UUID, user_id: uuid.UUID) -> Changed:
        """The member leaves the chat and `MemberRemoved` is recorded (removed by themselves). A group remembers
        the departure: nobody else may add them back. A 1:1 chat stays, read-only for the other member, until the
        leaver creates it again (`create_chat`)."""

    @abstractmethod
    async def set_block(self, *, blocker_id: uuid.UUID, blocked_id: uuid.UUID, blocked: bool) -> Changed:
        """Block (or unblock) a user and record `BlockChanged` if that changed anything; NOT_PROVISIONED for an
        unknown blocker. Any `blocked_id` is taken, known or not."""

    @abstractmethod
    async def record_chat_event(self, event: Event, *, chat_id: uuid.UUID, member: uuid.UUID | None) -> bool:
        """Record one of a chat's events with its next seq; False, and nothing written, if the chat does not
        exist or (with `member`) that user is not a member of it."""

    @abstractmethod
    async def record_user_event(self, event: Event, *, user_id: uuid.UUID) -> None:
        """Record an event addressed to one user."""

    # -- users --------------------------------------------------------------------------------------------

    @abstractmethod
    async def upsert_user(self, *, user_id: uuid.UUID, email: str, image_url: str | None, keep_image: bool) -> User:
        """Create the user or update their email (and image, unless `keep_image`); the stored row."""

    @abstractmethod
    async def touch_last_seen(self, *, user_id: uuid.UUID, when: datetime) -> None: ...

    # -- the first read of every connection --------------------------------------------------------------

    @abstractmethod
    async def user_chat_ids(self, *, user_id: uuid.UUID) -> list[uuid.UUID]:
        """The chats of a user. Not a write, but every connection's first query: each backend serves it
        without queueing behind a small connection pool in a reconnect storm."""

    @abstractmethod
    async def stream_start(self, *, user_id: uuid.UUID) -> StreamStart:
        """What a connection of the user reads when it opens: their chats, where they joined a group midway, and the
        users they block (served like `user_chat_ids`)."""


def direct_key(members: Sequence[uuid.UUID]) -> str:
    """The unique key of a 1:1 chat: its two members' ids, sorted and joined."""
    return ":".join(sorted(m.hex for m in members))
