"""Fast in-process unit tests: query counts of the chat list, the bounded outbox, the events' JSON form."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_type_hints

import pytest
from sqlalchemy import event

from realtime import event_base
from realtime.codec import EventDecodeError, decode
from realtime.event_base import MessageData, UserRef, iso, jsonable, message_payload, uuid_text
from realtime.events import EVENT_TYPES, Event
from realtime.outbox import Outbox, OutboxClosed
from services import chats, messages, users
from services.auth import Actor
from services.runtime import Runtime

# -- my_chats: a fixed number of statements however many chats -------------------------------------


@contextmanager
def counting_statements(rt: Runtime) -> Iterator[list[str]]:
    """Every SQL statement any of the runtime's engines executes inside the block."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engines = {id(e): e for e in (rt.db._read_engine, rt.db._write_engine)}.values()
    for engine in engines:
        event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine.sync_engine, "before_cursor_execute", record)


async def new_user(rt: Runtime, name: str) -> Actor:
    user_id = uuid.uuid4()
    await users.upsert_user(rt, actor=Actor.service(), user_id=user_id, email=f"{name}-{user_id.hex[:6]}@example.test")
    return Actor(user_id=user_id)


async def chat_with_messages(rt: Runtime, me: Actor, other: Actor, *, group_with: Actor | None = None) -> None:
    members = [other.user_id] + ([group_with.user_id] if group_with else [])
    chat = await chats.create_chat(rt, actor=me, member_ids=members)  # type: ignore[arg-type]
    await messages.send_message(rt, actor=other, chat_id=chat.id, content="from the other")
    await messages.send_message(rt, actor=me, chat_id=chat.id, content="from me")
    if group_with is not None:
        await messages.send_message(rt, actor=group_with, chat_id=chat.id, content="from the third")


async def test_my_chats_statement_count_does_not_grow_with_the_number_of_chats(rt: Runtime) -> None:
    few, many = await new_user(rt, "few"), await new_user(rt, "many")
    await chat_with_messages(rt, few, await new_user(rt, "friend"))
    for n in range(20):
        third = await new_user(rt, f"third{n}") if n % 2 else None
        await chat_with_messages(rt, many, await new_user(rt, f"friend{n}"), group_with=third)

    with counting_statements(rt) as few_statements:
        few_chats = await chats.my_chats(rt, actor=few)
    with counting_statements(rt) as many_statements:
        many_chats = await chats.my_chats(rt, actor=many)

    assert len(few_chats) == 1
    assert len(many_chats) == 20
    assert all(c.last_message is not None and c.unread_count >= 1 for c in many_chats)
    assert len(many_statements) == len(few_statements), "\n\n".join(many_statements)
    assert 1 <= len(few_statements) <= 6, "\n\n".join(few_statements)


# -- Outbox ----------------------------------------------------------------------------------------


async def drain(outbox: Outbox[str]) -> list[str]:
    return [await outbox.get() for _ in range(len(outbox))]


async def test_outbox_drops_a_new_ephemeral_item_when_full() -> None:
    outbox: Outbox[str] = Outbox(max_items=2, max_bytes=1000)
    assert outbox.put("message-1", size=10, ephemeral=False)
    assert outbox.put("typing-1", size=10, ephemeral=True)
    assert not outbox.put("typing-2", size=10, ephemeral=True)
    assert outbox.closed_reason is None
    assert outbox.dropped == 1
    assert await drain(outbox) == ["message-1", "typing-1"]


async def test_outbox_evicts_queued_ephemeral_items_oldest_first_to_fit_a_durable_one() -> None:
    outbox: Outbox[str] = Outbox(max_items=3, max_bytes=1000)
    outbox.put("typing-1", size=10, ephemeral=True)
    outbox.put("message-1", size=10, ephemeral=False)
    outbox.put("typing-2", size=10, ephemeral=True)
    assert outbox.put("message-2", size=10, ephemeral=False)
    assert outbox.closed_reason is None
    assert outbox.dropped == 1  # only as many as needed
    assert await drain(outbox) == ["message-1", "typing-2", "message-2"]


async def test_outbox_evicts_ephemeral_items_to_fit_a_durable_one_by_bytes() -> None:
    outbox: Outbox[str] = Outbox(max_items=100, max_bytes=100)
    outbox.put("typing-1", size=40, ephemeral=True)
    outbox.put("typing-2", size=40, ephemeral=True)
    assert outbox.put("message", size=90, ephemeral=False)
    assert outbox.size_bytes == 90
    assert await drain(outbox) == ["message"]


async def test_outbox_overflows_when_a_durable_item_does_not_fit() -> None:
    outbox: Outbox[str] = Outbox(max_items=2, max_bytes=1000)
    outbox.put("message-1", size=10, ephemeral=False)
    outbox.put("message-2", size=10, ephemeral=False)
    assert not outbox.put("message-3", size=10, ephemeral=False)
    assert outbox.closed_reason == "overflow"
    # The consumer is told to go (and resume from its cursor) rather than served a gap.
    with pytest.raises(OutboxClosed) as closed:
        await outbox.get()
    assert closed.value.reason == "overflow"
    assert not outbox.put("message-4", size=10, ephemeral=False)


async def test_outbox_overflows_when_a_durable_item_is_too_big_even_after_evicting() -> None:
    outbox: Outbox[str] = Outbox(max_items=10, max_bytes=100)
    outbox.put("typing", size=30, ephemeral=True)
    outbox.put("message-1", size=50, ephemeral=False)
    assert not outbox.put("message-2", size=60, ephemeral=False)
    assert outbox.closed_reason == "overflow"
    with pytest.raises(OutboxClosed):
        await outbox.get()


async def test_outbox_closed_normally_serves_what_it_holds_then_ends() -> None:
    outbox: Outbox[str] = Outbox(max_items=10, max_bytes=1000)
    outbox.put("message-1", size=10, ephemeral=False)
    outbox.close()
    assert not outbox.put("message-2", size=10, ephemeral=False)
    assert await outbox.get() == "message-1"
    with pytest.raises(OutboxClosed) as closed:
        await outbox.get()
    assert closed.value.reason == "closed"


# -- events: encode / decode -----------------------------------------------------------------------


def sample(hint: Any, *, nulls: bool) -> Any:
    """A value of a field's type; `nulls` fills every nullable field with None."""
    args = getattr(hint, "__args__", ())
    if type(None) in args:
        if nulls:
            return None
        hint = next(a for a in args if a is not type(None))
    if dataclasses.is_dataclass(hint):
        return build(hint, nulls=nulls)
    if hint is uuid.UUID:
        return uuid.uuid4()
    if hint is str:
        return 'text with "quotes", ünïcödé and 🐾'
    if hint is bool:
        return True
    if hint is int:
        return 42
    if hint is datetime:
        return datetime(2026, 11, 25, 21, 30, 15, 123456, tzinfo=UTC)
    if getattr(hint, "__origin__", None) is tuple:
        item = hint.__args__[0]
        if dataclasses.is_dataclass(item):
            return (build(item, nulls=nulls), build(item, nulls=nulls))
        return (uuid.uuid4(), uuid.uuid4())
    if getattr(hint, "__origin__", None) is dict or hint is dict:
        return {"type": "system_message", "n": 1, "nested": {"list": [1, "two", None, True]}}
    raise AssertionError(f"teach sample() to build a {hint!r}")


def build(cls: Any, *, nulls: bool) -> Any:
    hints = get_type_hints(cls)
    return cls(**{f.name: sample(hints[f.name], nulls=nulls) for f in dataclasses.fields(cls) if f.init})


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_event_survives_encode_and_decode(event_type: str, nulls: bool) -> None:
    original: Event = build(EVENT_TYPES[event_type], nulls=nulls)
    raw = original.encode()
    assert isinstance(raw, str)
    decoded = decode(raw)
    assert type(decoded) is type(original)
    assert decoded == original
    assert decoded.route() == original.route()
    assert decoded.encode() == raw


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
def test_a_message_is_encoded_as_the_generic_walk_of_its_fields_encodes_it(nulls: bool) -> None:
    """`message_payload` writes out what the generic dataclass walk gives, field for field and in field order: a
    field added to MessageData and not to it fails here."""
    message = build(MessageData, nulls=nulls)
    generic = {f.name: jsonable(getattr(message, f.name)) for f in dataclasses.fields(MessageData)}
    generic["sender"] = {f.name: jsonable(getattr(message.sender, f.name)) for f in dataclasses.fields(UserRef)}
    written = message_payload(message)
    assert list(written) == list(generic)
    assert list(written["sender"]) == list(generic["sender"])
    assert json.dumps(written) == json.dumps(generic)
    assert jsonable(message) == written


def test_uuid_text_is_str_of_the_uuid_also_once_the_memory_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_base, "UUID_TEXTS_MAX", 4)
    ids = [uuid.uuid4() for _ in range(10)]
    for value in [*ids, *ids, uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]:
        assert uuid_text(value) == str(value)
        assert uuid_text(uuid.UUID(str(value))) == str(value)  # another object, the same id
    assert len(event_base._UUID_TEXTS) <= 4


def test_iso_renders_each_moment_as_isoformat_does_even_equal_moments_in_other_zones() -> None:
    moment = datetime(2026, 12, 3, 15, 20, 1, 123456, tzinfo=UTC)
    same_instant = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))  # equal, but rendered otherwise
    equal_copy = moment.replace()  # equal, another object
    for value in (moment, moment, same_instant, moment, equal_copy, moment.replace(microsecond=0)):
        assert iso(value) == value.isoformat()


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"type": "no_such_event", "data": {}}',
        '{"type": "new_message"}',
        '{"type": "messages_read", "data": {}}',
    ],
)
def test_decode_rejects_what_is_not_an_encoded_event(raw: str) -> None:
    with pytest.raises(EventDecodeError):
        decode(raw)
