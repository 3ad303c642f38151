"""How the client speaks to each server under test: opening a receiver, opening a sender, a send's frame,
and the protocol's keep-alive.

- baseline: `/ws?rooms=a,b`; a send is `{"room", "content"}`.
- socketio: Engine.IO v4 over a WebSocket (`0{…}` open, `40{auth}` → `40{…}` connect, `42[…]` events,
  ping `2` answered with `3`); the rooms travel in the connect packet's auth payload.
- legacy: the product's `/websocket/ws/{user_id}?token=…`; a send is the `send_message` command, whose
  acknowledgement is the sender's own `new_message` (the protocol has no other reply to a send).
- graphql: receivers are `chatEvents` subscriptions over graphql-transport-ws (token in `connection_init`);
  senders are legacy connections, so both product servers share one write path and differ in fan-out.
- strawberry, graphqlws (the GraphQL peers): graphql-transport-ws with an empty `connection_init`; a receiver
  subscribes to `chatEvents(chatId)` once per room; a send is a `sendMessage` mutation over the same socket,
  whose result (the message's id only) and `complete` are replies, not deliveries.

Resuming (the reconnect storm, product only): a legacy connection adds `&cursor=` to its URL, a GraphQL one
subscribes with `chatEvents(after:)` (docs/resume.md).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

from bench.plan import Plan
from bench.wsclient import WebSocket, connect

CONNECT_TIMEOUT = 60.0  # 10,000 connections queue up behind one busy server core

# What a GraphQL client of the chat app selects (the README's example, plus the ids a client keys on).
# `$after` is given only when resuming.
CHAT_EVENTS = (
    "subscription($after: String) { chatEvents(after: $after) { __typename ... on NewMessage { cursor chatId "
    "message { id seq content createdAt clientId sender { id email } } } } }"
)
# The GraphQL peers' operations: a subscription per chat, and a send whose result is the new message's id.
PEER_SUBSCRIPTION = "subscription($chatId: ID!) { chatEvents(chatId: $chatId) { id chatId content sender createdAt } }"
PEER_SEND = "mutation($chatId: ID!, $content: String!) { sendMessage(chatId: $chatId, content: $content) { id } }"
CURSOR_KEY = b'"cursor":'
PROBE = "subscription probe"  # the text of a GraphQL peer's sender's first messages (not bench messages)
PROBE_INTERVAL = 0.2  # seconds before a probe that has not come back is sent again


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

    def reply(self, data: bytes, start: int, end: int) -> bool:
        """The server's answer to one of our sends that is not the message itself (a mutation's result)."""
        return False

    async def _connect(self, path: str, subprotocol: str | None = None, within: float = CONNECT_TIMEOUT) -> WebSocket:
        return await connect(self.host, self.port, path, subprotocol=subprotocol, within=within)

    async def _graphql_socket(self, init: dict[str, object], within: float) -> WebSocket:
        """A graphql-transport-ws connection, acknowledged."""
        ws = await self._connect("/graphql", "graphql-transport-ws", within)
        ws.send(_json({"type": "connection_init", "payload": init}))
        ack = await ws.recv(within)
        if b'"connection_ack"' not in ack:
            raise ConnectionError(f"expected connection_ack, got {ack[:120]!r}")
        return ws


def graphql_keep_alive(ws: WebSocket, data: bytes, start: int, end: int) -> bool:
    """graphql-transport-ws: answer `{"type": "ping"}` (spaced or not) with a pong."""
    if data.find(b'"ping"', start, end) >= 0:
        ws.send(b'{"type":"pong"}')
        return True
    return False


def cursor_in(data: bytes, start: int, end: int) -> str | None:
    """The resume cursor a product frame carries (legacy: top-level `cursor`; GraphQL: the event's `cursor`)."""
    i = data.find(CURSOR_KEY, start, end)
    if i < 0:
        return None
    i = data.find(b'"', i + len(CURSOR_KEY), end) + 1
    if i == 0:
        return None
    return data[i : data.find(b'"', i, end)].decode()


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


class GraphQLPeer(Dialect):
    async def open_receiver(self, user: int, rooms: list[str]) -> WebSocket:
        ws = await self._graphql_socket({}, CONNECT_TIMEOUT)
        for i, room in enumerate(rooms):
            variables = {"chatId": room}
            ws.send(
                _json(
                    {
                        "id": f"c{i}",
                        "type": "subscribe",
                        "payload": {"query": PEER_SUBSCRIPTION, "variables": variables},
                    }
                )
            )
        return ws

    async def open_sender(self, user: int, room: str) -> WebSocket:
        """A receiver of `room` whose subscription is known to be live: a server sets a subscription up while it
        goes on reading the socket, so a send right after subscribing can be published before it exists and
        never come back. Probe messages are sent until one comes back."""
        ws = await self.open_receiver(user, [room])
        attempts = 0
        while True:
            ws.send(self.send_frame(room, PROBE, f"probe-{attempts}"))
            if await self._probe_came_back(ws):
                return ws
            attempts += 1
            if attempts * PROBE_INTERVAL > CONNECT_TIMEOUT:
                raise ConnectionError(f"the subscription to {room} never delivered a message")

    @staticmethod
    async def _probe_came_back(ws: WebSocket) -> bool:
        """Whether a probe's event (not a mutation's answer) arrives within PROBE_INTERVAL."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROBE_INTERVAL
        while (left := deadline - loop.time()) > 0:
            try:
                frame = await ws.recv(left)
            except TimeoutError:
                return False
            if PROBE.encode() in frame and b'"send-' not in frame:
                return True
        return False

    def send_frame(self, room: str, content: str, client_id: str) -> bytes:
        variables = {"chatId": room, "content": content}
        return _json(
            {"id": f"send-{client_id}", "type": "subscribe", "payload": {"query": PEER_SEND, "variables": variables}}
        )

    def keep_alive(self, ws: WebSocket, data: bytes, start: int, end: int) -> bool:
        return graphql_keep_alive(ws, data, start, end)

    def reply(self, data: bytes, start: int, end: int) -> bool:
        # A mutation's `next` (its result) and `complete`, or a late subscription probe; a subscription's events
        # carry the marker instead. A refused send (`error`, or `errors` in its result) counts as unexpected.
        if data.find(b'"error', start, end) >= 0:
            return False
        return data.find(b'"send-', start, end) >= 0 or data.find(PROBE.encode(), start, end) >= 0


class Legacy(Dialect):
    async def open_receiver(self, user: int, rooms: list[str]) -> WebSocket:
        # The connection streams every chat of the user: membership, not `rooms`, decides what arrives.
        return await self._connect(f"/websocket/ws/{Plan.user(user)}?token={self.tokens[user]}")

    async def resume(self, user: int, cursor: str, within: float) -> WebSocket:
        """A connection of `user` that first replays what came after `cursor`."""
        path = f"/websocket/ws/{Plan.user(user)}?token={self.tokens[user]}&cursor={quote(cursor, safe='')}"
        return await self._connect(path, within=within)

    def send_frame(self, room: str, content: str, client_id: str) -> bytes:
        return _json({"type": "send_message", "data": {"chat_id": room, "content": content, "client_id": client_id}})

    def presence(self, data: bytes, start: int, end: int) -> bool:
        # legacy `user_online` / `user_offline`; GraphQL `UserOnline` / `UserOffline`
        return any(data.find(name, start, end) >= 0 for name in PRESENCE_NAMES)


class GraphQL(Legacy):
    async def open_receiver(self, user: int, rooms: list[str]) -> WebSocket:
        ws = await self._graphql_socket({"token": self.tokens[user]}, CONNECT_TIMEOUT)
        ws.send(_json({"id": "1", "type": "subscribe", "payload": {"query": CHAT_EVENTS}}))
        return ws

    async def open_sender(self, user: int, room: str) -> WebSocket:
        return await Legacy.open_receiver(self, user, [room])

    async def resume(self, user: int, cursor: str, within: float) -> WebSocket:
        ws = await self._graphql_socket({"token": self.tokens[user]}, within)
        payload = {"query": CHAT_EVENTS, "variables": {"after": cursor}}
        ws.send(_json({"id": "1", "type": "subscribe", "payload": payload}))
        return ws

    def keep_alive(self, ws: WebSocket, data: bytes, start: int, end: int) -> bool:
        return graphql_keep_alive(ws, data, start, end)


PRESENCE_NAMES = (b'"user_online"', b'"user_offline"', b'"UserOnline"', b'"UserOffline"')

DIALECTS: dict[str, type[Dialect]] = {
    "baseline": Baseline,
    "socketio": SocketIO,
    "strawberry": GraphQLPeer,
    "graphqlws": GraphQLPeer,
    "legacy": Legacy,
    "graphql": GraphQL,
}
