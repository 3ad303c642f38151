"""What a hostile or careless client can make the server log: never a token, whatever the encoding of the
parameter that carries it; and protocol violations as one WARNING line naming the connection, no traceback.

Both ways of serving: `python cli.py serve` (our log handler, our uvicorn protocols) and plain
`uvicorn app:app` (uvicorn's own log handlers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import websockets
from websockets.frames import Frame, Opcode

from tests.support import EVENT_TIMEOUT, Api, Server, sqlite_server


@pytest.fixture(params=["cli", "uvicorn"], scope="module")
def logged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"hygiene-{request.param}")
    with sqlite_server(root, {"LOG_LEVEL": "INFO"}, cli=request.param == "cli") as server:
        yield server


async def _open_and_close(url: str, **options: object) -> None:
    try:
        async with websockets.connect(url, open_timeout=EVENT_TIMEOUT, **options) as ws:  # type: ignore[arg-type]
            # an answer, a refusal, or nothing: all of it is logged
            with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
                await ws.send(json.dumps({"type": "get_chat_status", "data": {}}))
                await asyncio.wait_for(ws.recv(), 0.3)
    except websockets.InvalidStatus:
        pass  # refused at the handshake: logged all the same


async def test_no_token_reaches_the_log_whatever_the_encoding(logged: Server) -> None:
    api = Api(logged)
    alice = await api.new_user("alice")
    token = alice.token
    legacy = f"{logged.ws_url}/websocket/ws/{alice.id}"
    spelled = {
        "plain": f"?token={token}",
        "encoded name": f"?%74oken={token}",
        "encoded name, other letters": f"?tok%65n={token}",
        "repeated": f"?token=nothing&token={token}&token={token}",
        "upper case": f"?TOKEN={token}",
        "encoded value": f"?token={quote(token, safe='')}",
        "every byte encoded": "?token=" + "".join(f"%{b:02X}" for b in token.encode()),
        "unknown parameter": f"?session={token}",
        "with a cursor": f"?cursor=opaque-cursor-value&token={token}",
    }
    for query in spelled.values():
        await _open_and_close(legacy + query)
        await _open_and_close(f"{logged.ws_url}/graphql{query}", subprotocols=["graphql-transport-ws"])
        async with httpx.AsyncClient(timeout=EVENT_TIMEOUT) as client:
            await client.post(f"{logged.url}/graphql{query}", json={"query": "{ __typename }"})
    for header in ("Authorization", "AUTHORIZATION", "authorization"):
        await _open_and_close(legacy, additional_headers={header: f"Bearer {token}"})
        async with httpx.AsyncClient(timeout=EVENT_TIMEOUT) as client:
            await client.post(
                f"{logged.url}/graphql", json={"query": "{ me { id } }"}, headers={header: f"BEARER {token}"}
            )
    # a token offered as a subprotocol (some clients do), and in a connection_init payload
    await _open_and_close(f"{logged.ws_url}/graphql", subprotocols=["graphql-transport-ws", token])
    async with websockets.connect(f"{logged.ws_url}/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))["type"] == "connection_ack"

    log = logged.log()
    signature = token.rsplit(".", 1)[1]
    assert "[accepted]" in log or "accepted" in log  # the access log was on: there was something to mask
    assert token not in log and signature not in log, [line for line in log.splitlines() if signature in line]
    assert "opaque-cursor-value" not in log
    assert "token=***" in log


async def test_invalid_utf8_is_one_warning_line_without_a_traceback(logged: Server) -> None:
    api = Api(logged)
    alice = await api.new_user("alice")
    before = len(logged.log().splitlines())
    for url, subprotocols in (
        (f"{logged.ws_url}/websocket/ws/{alice.id}?token={alice.token}", None),
        (f"{logged.ws_url}/graphql", ["graphql-transport-ws"]),
    ):
        async with websockets.connect(url, subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
            if subprotocols:
                await ws.send(json.dumps({"type": "connection_init", "payload": {"token": alice.token}}))
                assert json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))["type"] == "connection_ack"
            else:
                await ws.send(json.dumps({"type": "get_chat_status", "data": {}}))
                assert json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))["type"] == "chat_status"
            # A flood: each frame would have been an ERROR with a traceback. In one write, so the server reads them
            # all before it closes: frames left unread in its kernel buffer at the close would make it reset the
            # connection, and the client could lose the close frame (1006 instead of 1007).
            flood = b"".join(Frame(Opcode.TEXT, b"\xff\xfe not utf-8").serialize(mask=True) for _ in range(5))
            ws.transport.write(flood)
            await asyncio.wait_for(ws.wait_closed(), EVENT_TIMEOUT)
            assert ws.close_code == 1007
    await _wait_for(logged, lambda lines: sum("invalid UTF-8" in line for line in lines) >= 2, before)
    lines = logged.log().splitlines()[before:]
    violations = [line for line in lines if "invalid UTF-8" in line]
    assert len(violations) == 2, violations  # one per connection, not one per frame
    assert all("WARNING" in line for line in violations), violations
    assert not any("Traceback" in line or "ERROR" in line for line in lines), "\n".join(lines)
    if logged.cli:
        assert any("[legacy-" in line for line in violations) and any("[graphql-" in line for line in violations)


async def _wait_for(server: Server, done: object, since: int) -> None:
    for _ in range(int(EVENT_TIMEOUT / 0.05)):
        if done(server.log().splitlines()[since:]):  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(server.log()[-3000:])


async def test_other_protocol_violations_are_one_warning_line(logged: Server, tmp_path: Path) -> None:
    api = Api(logged)
    alice = await api.new_user("alice")
    before = len(logged.log().splitlines())
    async with websockets.connect(f"{logged.ws_url}/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send("not a protocol message")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT)
        assert ws.close_code == 4400
    url = f"{logged.ws_url}/websocket/ws/{alice.id}?token={alice.token}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "get_chat_status", "data": {}}))
        await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT)
        ws.protocol.send_frame(Frame(Opcode.CONT, b"a continuation of nothing"))  # a framing error (1002)
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(json.dumps({"type": "get_chat_status", "data": {}}))
        await asyncio.wait_for(ws.wait_closed(), EVENT_TIMEOUT)
        assert ws.close_code == 1002
    await _wait_for(
        logged, lambda lines: sum("protocol violation" in line for line in lines) >= (2 if logged.cli else 1), before
    )
    lines = logged.log().splitlines()[before:]
    assert not any("Traceback" in line or "ERROR" in line for line in lines), "\n".join(lines)
    violations = [line for line in lines if "protocol violation" in line]
    assert all("WARNING" in line and ("[graphql-" in line or "[legacy-" in line) for line in violations), violations
