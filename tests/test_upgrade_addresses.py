"""In process, on the server's own protocols (server.uvicorn_protocols): a WebSocket upgraded from an HTTP connection
takes that connection's addresses instead of reading the socket's again (each read makes a socket object and a
system call), and its ASGI scope still names both ends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.websockets import websockets_sansio_impl
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from server.uvicorn_protocols import GuardedHttpToolsProtocol, GuardedWebSocketProtocol
from tests.test_frame_writes import Transport


class UpgradingTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.protocol: Any = None
        self.reads = 0

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        self.reads += name in ("peername", "sockname", "socket")
        return super().get_extra_info(name, default)


async def test_an_upgraded_websocket_takes_the_http_connections_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    scopes: asyncio.Queue[Scope] = asyncio.Queue()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        await scopes.put(scope)
        await send({"type": "websocket.close", "code": 1000})

    def read_again(transport: Any) -> Any:
        raise AssertionError("the WebSocket protocol read the socket's addresses again")

    config = Config(
        app=app, ws="server.uvicorn_protocols:GuardedWebSocketProtocol", lifespan="off", log_level="warning"
    )
    config.load()
    http = GuardedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = UpgradingTransport()
    http.connection_made(transport)
    reads = transport.reads
    assert http.server == ("127.0.0.1", 8000) and http.client == ("127.0.0.1", 5000)

    monkeypatch.setattr(websockets_sansio_impl, "get_local_addr", read_again)
    monkeypatch.setattr(websockets_sansio_impl, "get_remote_addr", read_again)
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8000/ws"))
    client.send_request(client.connect())
    http.data_received(b"".join(client.data_to_send()))
    scope = await asyncio.wait_for(scopes.get(), 5)

    assert isinstance(transport.protocol, GuardedWebSocketProtocol)
    assert scope["type"] == "websocket" and scope["server"] == ("127.0.0.1", 8000)
    assert scope["client"] == ("127.0.0.1", 5000) and scope["scheme"] == "ws"
    assert transport.reads == reads  # nothing read from the socket since the HTTP protocol's connection_made
    http.connection_lost(None)
    transport.protocol.connection_lost(None)
