"""Streams resuming over one stretch of the log share one read of it (journal.ReplayWindows): each still gets exactly
its own missed events, as the per-stream database filter gives them, once each (docs/resume.md)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from realtime.hub import Delivery
from realtime.positions import Vector
from services import chats, journal, messages, users
from services.auth import Actor
from services.runtime import Runtime
from tests.legacy_client import LegacyClient
from tests.support import Api, Subscriber


async def new_users(rt: Runtime, count: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    for user_id in ids:
        await users.upsert_user(rt, actor=Actor.service(), user_id=user_id, email=f"{user_id.hex[:8]}@example.test")
    return ids


async def shared(rt: Runtime, user_id: uuid.UUID, after: Vector, upto: Vector, limit: int = 100) -> list[Delivery]:
    """The replay through the shared window, with the membership a stream of the user reads when it opens."""
    start = await rt.store.stream_start(user_id=user_id)
    return await rt.replays.replay(
        rt.db, user_id=user_id, member_since=start.member_since, after=after, upto=upto, limit=limit
    )


async def filtered(rt: Runtime, user_id: uuid.UUID, after: Vector, upto: Vector, limit: int = 100) -> list[Delivery]:
    """The replay through the database's filter (a stream's own read)."""
    return journal.deliveries(
        await journal.replay_for(rt.db, user_id=user_id, after=after, upto=upto, limit=limit), after
    )


def wire(replay: list[Delivery]) -> list[tuple[str, str | None]]:
    return [(d.raw, d.cursor) for d in replay]


async def test_a_shared_window_replays_for_each_user_what_the_database_filter_replays(backend: Runtime) -> None:
    rt = backend
    a, b, c, outsider = await new_users(rt, 4)
    service = Actor.service()
    group = (await chats.create_chat(rt, actor=service, member_ids=[a, b, c], name="g", is_group=True)).id
    pair = (await chats.create_chat(rt, actor=service, member_ids=[a, b], name="p", is_group=True)).id
    after = await journal.current(rt.db)
    await messages.send_message(rt, actor=Actor(user_id=b), chat_id=group, content="to the group")
    await messages.send_message(rt, actor=Actor(user_id=a), chat_id=pair, content="before c joined")
    await chats.add_member(rt, actor=service, chat_id=pair, user_id=c)  # c sees the pair from here on
    await messages.send_message(rt, actor=Actor(user_id=b), chat_id=pair, content="after c joined")
    await chats.remove_member(rt, actor=service, chat_id=group, user_id=b)  # b hears of it, and no more
    await messages.send_message(rt, actor=Actor(user_id=a), chat_id=group, content="after b left")
    await messages.mark_read(rt, actor=Actor(user_id=a), chat_id=group)
    upto = await journal.current(rt.db)

    replays = {user: await shared(rt, user, after, upto) for user in (a, b, c, outsider)}
    for user, replay in replays.items():
        assert wire(replay) == wire(await filtered(rt, user, after, upto))
    assert len(replays[a]) > len(replays[c]) > 0 and replays[b] and replays[outsider] == []
    assert all(d.cursor for replay in replays.values() for d in replay)


async def test_streams_resuming_over_one_window_share_one_read_and_its_deliveries(
    backend: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = backend
    a, b, c = await new_users(rt, 3)
    service = Actor.service()
    both = (await chats.create_chat(rt, actor=service, member_ids=[a, b, c], name="all", is_group=True)).id
    ab = (await chats.create_chat(rt, actor=service, member_ids=[a, b], name="ab", is_group=True)).id
    after = await journal.current(rt.db)
    for i in range(3):
        await messages.send_message(rt, actor=Actor(user_id=c), chat_id=both, content=f"all {i}")
        await messages.send_message(rt, actor=Actor(user_id=b if i else a), chat_id=ab, content=f"ab {i}")
    upto = await journal.current(rt.db)

    reads = 0
    read_window = journal.read_window

    async def counted(*args: Any) -> list[journal.WindowRow]:
        nonlocal reads
        reads += 1
        return await read_window(*args)

    monkeypatch.setattr(journal, "read_window", counted)
    first_a, again_a, first_b, first_c = await asyncio.gather(
        shared(rt, a, after, upto), shared(rt, a, after, upto), shared(rt, b, after, upto), shared(rt, c, after, upto)
    )
    assert reads == 1
    # a and b missed the same events: the same deliveries, so each wire form is encoded once for both.
    assert len(first_a) == 6 and all(x is y is z for x, y, z in zip(first_a, again_a, first_b, strict=True))
    assert [d.event for d in first_c] == [d.event for d in first_a if d.event.route().chat_id == both]
    for user, replay in ((a, first_a), (b, first_b), (c, first_c)):
        assert wire(replay) == wire(await filtered(rt, user, after, upto))
    # The window stays for the streams that come a little later: no second read.
    await shared(rt, c, after, upto)
    assert reads == 1


async def test_a_shared_window_asks_for_a_resync_when_the_database_filter_does(backend: Runtime) -> None:
    rt = backend
    a, b = await new_users(rt, 2)
    chat = (await chats.create_chat(rt, actor=Actor.service(), member_ids=[a, b], name="c", is_group=True)).id
    after = await journal.current(rt.db)
    for i in range(3):
        await messages.send_message(rt, actor=Actor(user_id=b), chat_id=chat, content=f"m{i}")
    upto = await journal.current(rt.db)
    for replay in (shared, filtered):
        with pytest.raises(journal.ResyncRequired, match="too many missed events"):
            await replay(rt, a, after, upto, 2)
    ahead = Vector({w: n + 5 for w, n in upto.items()})
    for replay in (shared, filtered):
        with pytest.raises(journal.ResyncRequired, match="unknown cursor"):
            await replay(rt, a, ahead, Vector({w: n + 9 for w, n in upto.items()}))


async def test_clients_resuming_at_once_from_one_cursor_each_get_their_missed_events_once(api: Api) -> None:
    """alice (GraphQL and legacy) and carol come back at the same moment with the cursor of the same last event:
    each gets what it missed of its own chats, in order, once, then live events."""
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    group = await api.new_chat(bob, alice, carol, name="trio", is_group=True)
    pair = await api.new_chat(bob, alice)
    streams = [await Subscriber(api, alice).start(), await Subscriber(api, carol).start()]
    await api.send(bob, group, "seen by both")
    cursors = {(await s.next())["cursor"] for s in streams}
    assert len(cursors) == 1, "the same last event: the same cursor"
    (cursor,) = cursors
    for s in streams:
        await s.close()

    sent = [(group, "g0"), (pair, "p0"), (group, "g1"), (pair, "p1"), (group, "g2")]
    for chat_id, content in sent:
        await api.send(bob, chat_id, content)

    legacy = LegacyClient(api, alice)
    legacy.url += f"&cursor={cursor}"
    resumed_alice, resumed_carol, _ = await asyncio.gather(
        Subscriber(api, alice, after=cursor).start(), Subscriber(api, carol, after=cursor).start(), legacy.connect()
    )
    try:
        mine = [content for _, content in sent]
        theirs = [content for chat_id, content in sent if chat_id == group]
        assert [(await resumed_alice.next())["message"]["content"] for _ in mine] == mine
        assert [(await resumed_carol.next())["message"]["content"] for _ in theirs] == theirs
        assert [(await legacy.next("new_message"))["data"]["content"] for _ in mine] == mine
        await legacy.ready()
        await api.send(bob, group, "live")
        for stream in (resumed_alice, resumed_carol):
            live = await stream.next()
            assert live["message"]["content"] == "live", "nothing replayed twice, nothing between"
        assert (await legacy.next("new_message"))["data"]["content"] == "live"
    finally:
        await asyncio.gather(resumed_alice.close(), resumed_carol.close(), legacy.close())
