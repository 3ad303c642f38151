"""The relay alone (services.relay), with stand-ins for the process's other parts: a committed event reaches this
process's connections at once and goes out on its channels followed by how far its writer got; what the bus brings
while a catch-up is due waits for it; the periodic look at the log starts a catch-up only for a gap that stays."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, cast

from realtime.bus import CONTROL, chat_channel
from realtime.events import Event, MessageData, NewMessage, UserRef
from realtime.positions import Pos, Vector
from services.housekeeping import LostPublishes
from services.relay import Relay
from services.runtime import Runtime
from storage import Recorded


class Bus:
    def __init__(self, *, routed: bool = True) -> None:
        self.routed = routed  # False: `memory://`, this process alone
        self.batches: list[list[tuple[list[str], str]]] = []
        self.published = asyncio.Event()
        self.publish_failures = 0

    async def publish_many(self, batch: list[tuple[list[str], str]]) -> bool:
        self.batches.append(batch)
        self.published.set()
        return True


class Sequencer:
    def __init__(self) -> None:
        self.offered: list[Event] = []
        self.announced: list[tuple[int, int]] = []

    def offer(self, event: Event, raw: str) -> None:
        self.offered.append(event)

    def announce(self, writer: int, n: int) -> None:
        self.announced.append((writer, n))


class Parts:
    """What the relay uses of the runtime."""

    def __init__(self, *, routed: bool = True) -> None:
        self.bus, self.sequencer, self.process_id = Bus(routed=routed), Sequencer(), "p1"
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.create_task(coro))


def _recorded(writer: int, n: int) -> Recorded:
    now = datetime.now(UTC)
    chat = uuid.uuid4()
    sender = UserRef(id=uuid.uuid4(), email="a@example.test", image_url=None)
    data = MessageData(uuid.uuid4(), chat, 1, "hi", now, now, sender, None)
    event = dataclasses.replace(NewMessage(chat_id=chat, message=data), pos=Pos(writer, n), seq=1)
    return Recorded(event, event.encode())


async def test_a_committed_event_is_offered_here_at_once_then_published_with_how_far_its_writer_got() -> None:
    parts = Parts()
    relay = Relay(cast(Runtime, parts))
    recorded = _recorded(3, 7)
    relay.publish_recorded(recorded)
    assert parts.sequencer.offered == [recorded.event]  # this process's connections: at once
    publisher = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(parts.bus.published.wait(), 5)
    finally:
        publisher.cancel()
    assert isinstance(recorded.event, NewMessage)
    (batch,) = parts.bus.batches
    assert batch[0] == ([chat_channel(recorded.event.chat_id)], recorded.raw)
    assert batch[1][0] == [CONTROL]
    assert json.loads(batch[1][1]) == {"type": "_upto", "writer": 3, "n": 7}
    assert relay.events_published == 1


async def test_on_memory_a_committed_event_is_offered_here_and_not_sent_round_the_bus() -> None:
    parts = Parts(routed=False)
    relay = Relay(cast(Runtime, parts))
    recorded = _recorded(0, 1)
    relay.publish_recorded(recorded)
    assert parts.sequencer.offered == [recorded.event]
    publisher = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0)  # the publisher's first step: it would hand over a waiting batch without suspending
    finally:
        publisher.cancel()
    assert parts.bus.batches == []  # no other process shares `memory://`
    assert relay.events_published == 1


async def test_what_the_bus_brings_waits_while_a_catch_up_is_due() -> None:
    parts = Parts()
    relay = Relay(cast(Runtime, parts))
    relay.start(Vector())
    assert relay.catching_up
    relay.on_bus_message({"type": "_upto", "writer": 1, "n": 5}, "")
    assert parts.sequencer.announced == []  # held until the log has been read


def test_the_log_ahead_for_a_moment_is_no_lost_publish_and_ahead_at_two_looks_is() -> None:
    """services.housekeeping.LostPublishes: a commit whose publish is on its way (the log ahead of the sequencer at
    one look, caught up by the next) starts no catch-up, which would hold that publish behind a read of the log; a
    position still missing at the next look does."""
    lost = LostPublishes()
    assert not lost.check(head=Vector({0: 5}), frontier=Vector({0: 5}))
    assert not lost.check(head=Vector({0: 6}), frontier=Vector({0: 5}))  # 6 committed, its publish on its way
    assert not lost.check(head=Vector({0: 7}), frontier=Vector({0: 6}))  # 6 arrived; 7 is the next one in flight
    assert not lost.check(head=Vector({0: 7}), frontier=Vector({0: 7}))
    assert not lost.check(head=Vector({0: 8}), frontier=Vector({0: 7}))
    assert lost.check(head=Vector({0: 8}), frontier=Vector({0: 7}))  # 8 never came: lost
    assert lost.check(head=Vector({0: 8, 1: 3}), frontier=Vector({0: 7}))  # still behind what was seen
    assert lost.check(head=Vector({0: 8, 1: 3}), frontier=Vector({0: 8}))  # writer 1's 3, seen last time, missing
    assert not lost.check(head=Vector({0: 8, 1: 3}), frontier=Vector({0: 8, 1: 3}))
