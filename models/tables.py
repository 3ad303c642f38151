"""The tables. No business rules here: those live in `services`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every database: SQLite hands back naive datetimes (docs/library-notes.md)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"expected an aware datetime, got naive {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    image_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Chat(Base):
    __tablename__ = "chats"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str | None] = mapped_column(String(200))
    is_group: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # For 1:1 chats: the two member ids, sorted and joined, so "the chat of A and B" is one unique row.
    direct_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The per-chat counter: every durable event of the chat takes the next value inside the transaction
    # that writes it (an atomic UPDATE ... RETURNING), so seq order is commit order on every database.
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class Member(Base):
    __tablename__ = "members"

    chat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The member's read marker: the seq of the last message this member has read.
    last_read_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # The chat's seq at which the user became a member (0: with the chat's creation): a resume never replays the
    # chat's earlier events.
    joined_seq: Mapped[int] = mapped_column(BigInteger, default=0)

    # "The chats of user U" is the first query of every connection.
    __table_args__ = (Index("ix_members_user_id", "user_id"),)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    chat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    sender_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    content: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The last edit (None: never edited) and its client id: a retried edit with the same id changes nothing.
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    edit_client_id: Mapped[str | None] = mapped_column(String(100))
    # A tombstone: the row stays (its seq, sender and time), its content is emptied.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # History pages, the last message of a chat and unread counts all walk (chat_id, seq).
        UniqueConstraint("chat_id", "seq", name="uq_messages_chat_seq"),
        # Idempotent sends: one message per (chat, sender, client id), even under concurrent retries.
        # NULL client ids never collide (SQL unique semantics on both databases).
        UniqueConstraint("chat_id", "sender_id", "client_id", name="uq_messages_client"),
    )


class Reaction(Base):
    """One user's reaction with one emoji to one message."""

    __tablename__ = "reactions"

    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    emoji: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserBlock(Base):
    """`blocker_id` blocks `blocked_id`: the blocked user's messages and typing do not reach the blocker, and they
    cannot start a 1:1 chat with the blocker or add them to a group (services.blocks). `blocked_id` has no foreign
    key: blocking an id nobody has is stored like any other, so the answer reveals nothing about the id."""

    __tablename__ = "user_blocks"

    blocker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    blocked_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatDeparture(Base):
    """`user_id` left the group `chat_id` of their own accord: nobody else may add them back (services.chats); the
    row goes when they are a member again."""

    __tablename__ = "chat_departures"

    chat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventLog(Base):
    """Every durable event, replayable by resuming clients and by processes catching up after a broker fault.

    Its position is (`writer`, `n`): the writer slot that recorded it and that writer's gap-free counter, taken
    in the recording transaction (realtime.positions). A chat's events also carry the chat's `seq`.
    """

    __tablename__ = "event_log"

    writer: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The chat the event belongs to (None for a notification to one user) and its per-chat seq.
    chat_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    # A notification to one user.
    target_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The user a membership change is about: they see it even when it removed them from the chat.
    subject_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    type: Mapped[str] = mapped_column(String(40))
    # The event exactly as published on the bus.
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_event_log_chat_seq", "chat_id", "seq"),
        # Partial: most events (every message) have neither, and an index entry for NULL would be written by every
        # send for nothing (a B-tree page more per commit in SQLite's WAL each). An equality on the column implies
        # it is not NULL, so both databases still use these for `target_user_id = ?` (migration 0006).
        Index(
            "ix_event_log_target",
            "target_user_id",
            "writer",
            "n",
            sqlite_where=text("target_user_id IS NOT NULL"),
            postgresql_where=text("target_user_id IS NOT NULL"),
        ),
        Index(
            "ix_event_log_subject",
            "subject_user_id",
            "writer",
            "n",
            sqlite_where=text("subject_user_id IS NOT NULL"),
            postgresql_where=text("subject_user_id IS NOT NULL"),
        ),
        # No index on `created_at`: retention finds its cut by a binary search over `n` (services.journal).
    )


class Writer(Base):
    """A writer slot: held by one process at a time (models.Database / storage claim it), with its counter of
    positions handed out and the highest one purged by retention."""

    __tablename__ = "writers"

    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_n: Mapped[int] = mapped_column(BigInteger, default=0)
    floor_n: Mapped[int] = mapped_column(BigInteger, default=0)


__all__ = [
    "Base",
    "Chat",
    "ChatDeparture",
    "EventLog",
    "Member",
    "Message",
    "Reaction",
    "UTCDateTime",
    "User",
    "UserBlock",
    "Writer",
    "utcnow",
]
