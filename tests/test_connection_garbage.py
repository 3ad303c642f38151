"""A closed connection is freed by reference counting: the server's objects of a socket form no reference cycle
once it has closed, so closing thousands of them (a reconnect storm's drop) leaves nothing for a full garbage
collection to walk and free (realtime.gcpolicy runs one per turnover; it took ~2 s after 10,000 sockets closed
when each left ~40-80 objects in cycles).

A real uvicorn in the test's process, on the server's own protocols (`cli.py serve`'s), with the collector off: a
socket's protocol object (which everything the socket's handling made leads back to) must be gone once the socket
closed. Real WebSocket clients, both protocols."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import websockets

from realtime import gcpolicy
from server.uvicorn_protocols import GuardedWebSocketProtocol
from tests.inprocess import InProcessServer, settings_for
from tests.support import EVENT_TIMEOUT, Api

SOCKETS = 20


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + EVENT_TIMEOUT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    async with InProcessServer(
        settings_for(f"sqlite+aiosqlite:///{tmp_path / 'garbage.db'}"), as_served=True
    ) as server:
        yield server


@pytest.fixture
def no_collector(served: InProcessServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No garbage collection meanwhile, CPython's or the server's policy's (realtime.gcpolicy: it collects the young
    generations every second): what reference counting does not free stays."""
    monkeypatch.setattr(served.runtime, "gc_policy", None)
    monkeypatch.setattr(gcpolicy, "_installed", None)
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_closed_sockets_of_both_protocols_are_freed_by_reference_counting(
    served: InProcessServer, no_collector: None
) -> None:
    api = Api(served)  # type: ignore[arg-type]  # the url / ws_url of a Server
    users = [await api.new_user(f"user{n}") for n in range(SOCKETS)]
    for user in users[1:]:
        await api.new_chat(users[0], user)
    hub, state = served.runtime.hub, served.server_state
    sockets = []
    for user in users:
        legacy = await websockets.connect(f"{served.ws_url}/websocket/ws/{user.id}?token={user.token}")
        graphql = await websockets.connect(f"{served.ws_url}/graphql", subprotocols=["graphql-transport-ws"])
        await graphql.send(json.dumps({"type": "connection_init", "payload": {"token": user.token}}))
        assert json.loads(await asyncio.wait_for(graphql.recv(), EVENT_TIMEOUT))["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": "subscription { chatEvents { __typename } }"}}
        await graphql.send(json.dumps(subscribe))
        sockets += [legacy, graphql]
    await until(lambda: hub.open_connections == 2 * SOCKETS, "every stream open on the server")
    # A round trip on each socket after its stream started: each is served in full, not just opened.
    for ws in sockets:
        graphql_socket = ws.subprotocol is not None
        await ws.send(json.dumps({"type": "ping"} if graphql_socket else {"type": "get_my_chats", "data": {}}))
        answer = "pong" if graphql_socket else "my_chats"
        async with asyncio.timeout(EVENT_TIMEOUT):
            while json.loads(await ws.recv())["type"] != answer:
                pass
    served_by = [weakref.ref(p) for p in state.connections if isinstance(p, GuardedWebSocketProtocol)]
    assert len(served_by) == 2 * SOCKETS

    # Half close with the closing handshake; half just drop, as clients of a network that went away do (and as a
    # reconnect storm begins): the server learns it from the transport.
    await asyncio.gather(*(ws.close() for ws in sockets[::2]))
    for ws in sockets[1::2]:
        ws.transport.abort()
    # Every socket gone from uvicorn (`connection_lost`) and every socket's task done, its stream closed.
    await until(lambda: not state.connections and not state.tasks, "every socket's end on the server")
    assert hub.open_connections == 0 and hub.closed_connections == 2 * SOCKETS
    await until(lambda: all(ref() is None for ref in served_by), "the closed sockets' objects to be freed")
