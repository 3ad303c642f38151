"""How the client speaks to each server under test: opening a receiver, opening a sender, a send's frame,
and the protocol's keep-alive.

- baseline: `/ws?rooms=a,b`; a send is `{"room", "content"}`.
- socketio: Engine.IO v4 over a WebSocket (`0{…}` open, `40{auth}` → `40{…}` connect, `42[…]` events,
  ping `2` answered with `3`); the rooms travel in the connect packet's auth payload.
- legacy: the product's `/websocket/ws/{user_id}?token=…`; a send is the `send_message` command, whose
  acknowledgement is the sender's own `new_message` (the protocol has no other reply to a send).
- graphql: receivers are `chatEvents` subscriptions over graphql-transport-ws (token in `connection_init`);
  senders are legacy connections, so both product servers share one write path and differ in fan-out.
"""

from __future__ import annotations

import json

from bench.plan import Plan
from bench.wsclient import WebSocket, connect

CONNECT_TIMEOUT = 60.0  # 10,000 connections queue up behind one busy server core

# What a GraphQL client of the chat app selects (the README's example, plus the ids a client keys on).
CHAT_EVENTS = (
    "subscription { chatEvents { __typename ... on NewMessage { cursor chatId "
    "message { id seq content createdAt clientId sender { id email } } } } }"
)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Dialect:
    def __init__(self, host: str, port: int, tokens: list[str]) -> None:
        self.host = host
        self.port = port
        self.tokens = tokens

    async def open_receiver(self, user: int, rooms: list[str]) -> WebSocket:
        raise NotImplementedError

    async def open_sender(self, user: int, room: str) -> WebSocket:
        return await self.open_receiver(user, [room])

    def send_frame(self, room: str, content: str, client_id: str) -> bytes:
        raise NotImplementedError

    def keep_alive(self, ws: WebSocket, data: bytes, start: int, end: int) -> bool:
        """Answer a protocol-level ping carried in a message; False if the message is not one."""
        return False

    def presence(self, data: bytes, start: int, end: int) -> bool:
        """A presence event (someone came online or went offline): live state, not a delivery."""
        return False

    async def _connect(self, path: str, subprotocol: str | None = None) -> WebSocket:
        return await connect(self.host, self.port, path, subprotocol=subprotocol, within=CONNECT_TIMEOUT)


class Baseline(Dialect):
    async def open_receiver(self, user: int, rooms: list[str]) -> WebSocket:
        return await self._connect("/ws?rooms=" + ",".join(rooms))

    def send_frame(self, room: str, content: str, client_id: str) -> bytes:
        return _json({"room": room, "content": content})


class SocketIO(Dialect):
    PATH = "/socket.io/?EIO=4&transport=websocket"

    async def open_receiver(self, user: int, rooms: list[str]) -> WebSocket:
        ws = await self._connect(self.PATH)
        opening = await ws.recv(CONNECT_TIMEOUT)
        if not opening.startswith(b"0{"):
            raise ConnectionError(f"expected an Engine.IO open packet, got {opening[:80]!r}")
        ws.send(b"40" + _json({"rooms": rooms}))
        while True:
            packet = await ws.recv(CONNECT_TIMEOUT)
            if packet.startswith(b"40"):
                return ws
            if packet == b"2":
                ws.send(b"3")
            else:
                raise ConnectionError(f"Socket.IO connect refused: {packet[:120]!r}")

    def send_frame(self, room: str, content: str, client_id: str) -> bytes:
        return b"42" + _json(["send", {"room": room, "content": content}])

    def keep_alive(self, ws: WebSocket, data: bytes, start: int, end: int) -> bool:
        if end - start == 1 and data[start] == 0x32:  # "2": Engine.IO ping
            ws.send(b"3")
            return True
        return False


class Legacy(Dialect):
    async def open_receiver(self, user: int, rooms: list[str]) -> WebSocket:
        # The connection streams every chat of the user: membership, not `rooms`, decides what arrives.
        return await self._connect(f"/websocket/ws/{Plan.user(user)}?token={self.tokens[user]}")

    def send_frame(self, room: str, content: str, client_id: str) -> bytes:
        return _json({"type": "send_message", "data": {"chat_id": room, "content": content, "client_id": client_id}})

    def presence(self, data: bytes, start: int, end: int) -> bool:
        # legacy `user_online` / `user_offline`; GraphQL `UserOnline` / `UserOffline`
        return any(data.find(name, start, end) >= 0 for name in PRESENCE_NAMES)


class GraphQL(Legacy):
    async def open_receiver(self, user: int, rooms: list[str]) -> WebSocket:
        ws = await self._connect("/graphql", subprotocol="graphql-transport-ws")
        ws.send(_json({"type": "connection_init", "payload": {"token": self.tokens[user]}}))
        ack = await ws.recv(CONNECT_TIMEOUT)
        if b'"connection_ack"' not in ack:
            raise ConnectionError(f"expected connection_ack, got {ack[:120]!r}")
        ws.send(_json({"id": "1", "type": "subscribe", "payload": {"query": CHAT_EVENTS}}))
        return ws

    async def open_sender(self, user: int, room: str) -> WebSocket:
        return await Legacy.open_receiver(self, user, [room])

    def keep_alive(self, ws: WebSocket, data: bytes, start: int, end: int) -> bool:
        if data.find(b'"ping"', start, end) >= 0:  # {"type": "ping"}, spaced or not
            ws.send(b'{"type":"pong"}')
            return True
        return False


PRESENCE_NAMES = (b'"user_online"', b'"user_offline"', b'"UserOnline"', b'"UserOffline"')

DIALECTS: dict[str, type[Dialect]] = {"baseline": Baseline, "socketio": SocketIO, "legacy": Legacy, "graphql": GraphQL}
