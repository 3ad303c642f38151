"""In process, on the server's own WebSocket protocol (server.uvicorn_protocols): a frame serialized once for many
sockets (server.sends.server_frame) is written straight to a socket that can take it now, and refused — so the
fan-out sends it the ASGI way, which waits or raises — while the socket applies backpressure, after the app closed
it, and once it is gone. The frames are what websockets' own client reads as the text. Frames in a row (a replay)
go out in one write, and a stream's writer sends events in a row that way: a burst the hub dispatches `queued`
(presence after a crowd came online) reaches each socket in one write."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from realtime.events import UserTyping
from realtime.hub import Connection, Delivery, Hub, OutboxItem
from realtime.outbox import Outbox, OutboxClosed
from realtime.stream import Stream, StreamWriter
from server.sends import GuardedSend, server_frame
from server.uvicorn_protocols import GuardedWebSocketProtocol


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


@dataclass
class Served:
    protocol: GuardedWebSocketProtocol
    transport: Transport
    client: ClientProtocol
    guarded: GuardedSend
    release: asyncio.Event  # set: the app closes the socket
    closed: asyncio.Event  # set by the app once its close went out


async def served() -> Served:
    """A socket of the server's protocol, its handshake done by websockets' client, and the guarded send its app
    was given; the app holds the socket open until `release` is set."""
    accepted: asyncio.Future[GuardedSend] = asyncio.get_running_loop().create_future()
    release, closed = asyncio.Event(), asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        accepted.set_result(GuardedSend(send))
        await release.wait()
        await send({"type": "websocket.close", "code": 1000})
        closed.set()

    config = Config(app=app, ws_per_message_deflate=False, lifespan="off", log_level="warning")
    config.load()
    protocol = GuardedWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8000/ws"))
    client.send_request(client.connect())
    protocol.data_received(b"".join(client.data_to_send()))
    guarded = await asyncio.wait_for(accepted, 5)
    client.receive_data(b"".join(transport.written))  # the handshake's answer
    transport.written.clear()
    return Served(protocol, transport, client, guarded, release, closed)


def texts(client: ClientProtocol, transport: Transport) -> list[str]:
    client.receive_data(b"".join(transport.written))
    transport.written.clear()
    return [event.data.decode() for event in client.events_received() if getattr(event, "opcode", None) == Opcode.TEXT]


async def test_a_shared_frame_is_written_when_the_socket_can_take_it_and_refused_otherwise() -> None:
    socket = await served()
    protocol, transport, client, guarded = socket.protocol, socket.transport, socket.client, socket.guarded
    frame = server_frame('{"type":"new_message","data":{"content":"héllo"}}')

    assert guarded.write_frame(frame)
    assert guarded.write_frame(frame)
    assert texts(client, transport) == ['{"type":"new_message","data":{"content":"héllo"}}'] * 2

    protocol.pause_writing()  # the kernel's buffer is full: the ASGI send would wait
    assert not guarded.write_frame(frame)
    protocol.resume_writing()
    assert guarded.write_frame(frame)
    assert len(texts(client, transport)) == 1

    socket.release.set()  # the app closes the socket
    await asyncio.wait_for(socket.closed.wait(), 5)
    assert protocol.close_sent
    assert not guarded.write_frame(frame)
    protocol.connection_lost(None)
    assert not guarded.write_frame(frame)
    assert texts(client, transport) == []


async def test_the_guard_drops_a_frame_on_a_socket_it_closed() -> None:
    socket = await served()
    socket.guarded.closed = True  # as the guard does when it closes a socket for a protocol violation
    assert socket.guarded.write_frame(server_frame("dropped"))  # taken, and dropped as the ASGI send drops it
    await socket.guarded({"type": "websocket.send", "text": "dropped too"})
    assert socket.transport.written == []
    socket.release.set()


async def test_what_the_app_sends_after_its_own_close_is_dropped_not_an_error() -> None:
    """One task of the app closes the socket while another still sends an event: uvicorn would refuse that send
    with an error ("Unexpected ASGI message 'websocket.send', after sending 'websocket.close'")."""
    socket = await served()
    await socket.guarded({"type": "websocket.close", "code": 1008, "reason": "rate limit exceeded"})
    assert socket.protocol.close_sent
    socket.transport.written.clear()
    await socket.guarded({"type": "websocket.send", "text": "after the close"})  # no error
    assert socket.guarded.write_frame(server_frame("after the close too"))  # taken, and dropped
    assert socket.transport.written == []
    socket.release.set()


def test_a_send_without_the_servers_protocol_has_no_frame_writes() -> None:
    async def plain_send(message: Message) -> None:
        return None

    assert not GuardedSend(plain_send).write_frame(server_frame("x"))  # plain uvicorn: the ASGI send only


def test_a_server_frame_is_the_bytes_websockets_serializes() -> None:
    """`server_frame` writes RFC 6455's header itself: byte for byte websockets' own unmasked text frame, at every
    length encoding's bounds (7-bit, 16-bit, 64-bit) and for text that is not ASCII."""
    for size in (0, 1, 124, 125, 126, 127, 65534, 65535, 65536, 70000):
        text = "x" * size
        assert server_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False), size
    for text in ("héllo", "日本語" * 50, "🙂" * 20000):
        assert server_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


async def test_frames_in_a_row_go_out_in_one_write_or_wait_together() -> None:
    socket = await served()
    protocol, transport, client, guarded = socket.protocol, socket.transport, socket.client, socket.guarded
    frames = [server_frame(f'{{"n":{n}}}') for n in range(3)]

    assert guarded.write_frames(frames)
    assert len(transport.written) == 1, "one write for the three"
    assert texts(client, transport) == ['{"n":0}', '{"n":1}', '{"n":2}']

    protocol.pause_writing()
    assert not guarded.write_frames(frames)
    assert transport.written == []
    protocol.resume_writing()
    socket.release.set()
    await asyncio.wait_for(socket.closed.wait(), 5)
    assert not guarded.write_frames(frames)


async def test_a_stream_writes_events_in_a_row_together_and_the_rest_the_asgi_way() -> None:
    """A replay goes out through `write_many`, as much at a time as it takes; what it does not take now (the socket
    applies backpressure) is sent the ASGI way, and anything that is not an event too — all in order."""
    chat = uuid.uuid4()
    replay = [Delivery(UserTyping(chat_id=chat, user_id=uuid.uuid4()), raw=str(n)) for n in range(5)]
    order: list[str] = []
    calls = 0

    def write_many(deliveries: Sequence[Delivery]) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            return 0  # the socket is full just now
        taken = deliveries[:2]
        order.append("written " + ",".join(d.raw for d in taken))
        return len(taken)

    async def render(item: Delivery | str) -> str:
        return item if isinstance(item, str) else f"asgi {item.raw}"

    async def send(message: str) -> None:
        order.append(message)

    writer = StreamWriter(send, render_now=lambda delivery: None, render=render, write_many=write_many)
    outbox: Outbox[OutboxItem] = Outbox(max_items=10, max_bytes=10_000)
    stream = Stream(Connection(uuid.uuid4(), "legacy", outbox, writer), replay=replay)
    running = asyncio.ensure_future(writer.run(stream))
    outbox.put("a text frame", size=12, ephemeral=False)
    outbox.close()
    with pytest.raises(OutboxClosed):
        await asyncio.wait_for(running, 5)
    assert order == ["written 0,1", "asgi 2", "written 3,4", "a text frame"]


class Everything:
    """The bus's side of the hub (realtime.hub.Interest): every chat and user is already subscribed."""

    def want(self, chats: Any = (), users: Any = ()) -> bool:
        return False

    def drop(self, chats: Any = (), users: Any = ()) -> None:
        pass


async def test_a_burst_dispatched_queued_reaches_each_socket_in_one_write() -> None:
    """Presence after a crowd came online: events dispatched `queued` wait in each connection's outbox, and its
    writer sends them in one write; one dispatched alone is written at once, from the fan-out."""
    chat = uuid.uuid4()
    writes: list[list[str]] = []
    burst_written = asyncio.Event()

    def write_now(delivery: Delivery) -> bool:
        writes.append([delivery.raw])
        return True

    def write_many(deliveries: Sequence[Delivery]) -> int:
        writes.append([d.raw for d in deliveries])
        burst_written.set()
        return len(deliveries)

    async def never(item: Delivery | str) -> str:
        raise AssertionError("every event goes out through write_now or write_many")

    writer = StreamWriter(never, render_now=lambda d: None, render=never, write_now=write_now, write_many=write_many)
    hub = Hub(outbox_max_events=100, outbox_max_bytes=100_000, interest=Everything())
    conn = hub.open(uuid.uuid4(), "graphql", writer)
    hub.watch(conn, [chat])
    running = asyncio.ensure_future(writer.run(Stream(conn)))
    await asyncio.sleep(0)  # the writer waits for its first items

    hub.dispatch(UserTyping(chat_id=chat, user_id=uuid.uuid4()), "alone")
    assert writes == [["alone"]], "not written at once"
    for n in range(3):
        hub.dispatch(UserTyping(chat_id=chat, user_id=uuid.uuid4()), f"burst {n}", queued=True)
    assert writes == [["alone"]], "a queued event was written from the fan-out"
    await asyncio.wait_for(burst_written.wait(), 5)
    assert writes == [["alone"], ["burst 0", "burst 1", "burst 2"]]
    hub.close(conn)
    with pytest.raises(OutboxClosed):
        await asyncio.wait_for(running, 5)
