"""Subscription.chatEvents: every event of every chat of the user, and their notifications, in one stream."""

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Annotated, Any

import strawberry
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from realtime import close_codes
from realtime.hub import Delivery
from realtime.outbox import OutboxClosed
from realtime.stream import Queued, StreamWriter
from resolvers import direct, fanout, http
from resolvers.context import Context
from resolvers.sockets import GraphQLSocket, socket_of
from schema import types
from server.logging_setup import fields
from server.sends import server_frame
from services.auth import require_user
from services.errors import RateLimited
from services.runtime import Runtime
from services.streams import open_stream

log = logging.getLogger(__name__)

Info = strawberry.Info[Context, None]

# A close handshake with a client that stopped reading cannot complete; give up on it after this long.
CLOSE_TIMEOUT_SECONDS = 5.0


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Every event of every chat I belong to, including chats I join later.")
    async def chat_events(
        self,
        info: Info,
        after: Annotated[
            str | None,
            strawberry.argument(
                description="Resume: the `cursor` of the last event you saw. The durable events you missed "
                "arrive first, in order, then live ones; `ResyncRequired` if they cannot be replayed."
            ),
        ] = None,
    ) -> AsyncGenerator[types.ChatEvent, None]:
        ctx = info.context
        rt = ctx.rt
        websocket = ctx.request if isinstance(ctx.request, WebSocket) else None
        lane = fanout.current_lane() if websocket is not None else None
        if lane is not None:
            # graphql-transport-ws: this resolver sends the events itself, and the next subscription with this
            # text goes straight to `stream_to_socket` (resolvers.direct).
            direct.remember(info._raw_info, lane.query, lane.operation_name, _start_direct)
            await stream_to_socket(ctx, lane, info, after)
            return
        on_overflow = None
        admitted: uuid.UUID | None = None  # a user counted for this stream (HTTP), released when it ends
        if websocket is not None:
            # A client that stopped reading leaves the sender stuck in a send: close the socket from here.
            on_overflow = _closer(rt, websocket)
        elif (request_stream := http.http_stream_of(ctx.request.scope)) is not None:
            # Streamed over HTTP: the request holds a connection as a socket does, and counts as one.
            user_id = require_user(ctx.actor)
            if not rt.admission.admit_user(user_id):
                raise RateLimited(f"at most {rt.admission.per_user} connections per user")
            admitted = user_id
            on_overflow = _cut_off(request_stream)
        try:
            async with open_stream(
                rt,
                actor=ctx.actor,
                kind="graphql",
                transport=Queued(on_overflow),
                cursor=after,
                conn_id=ctx.stream_id(),
            ) as stream:
                try:
                    while True:
                        for delivery in await stream.take():
                            if isinstance(delivery, Delivery):  # replies exist only on the legacy protocol
                                yield delivery.encoded("graphql", lambda e, c: _convert(e, c, rt))
                except OutboxClosed as closed:
                    if closed.reason == "overflow" and websocket is not None:
                        await websocket.close(close_codes.TRY_AGAIN_LATER)
        finally:
            if admitted is not None:
                rt.admission.release_user(admitted)


async def stream_to_socket(ctx: Context, lane: fanout.Lane, info: Any, after: str | None) -> None:
    """`chatEvents` on graphql-transport-ws: the stream sends its events itself, each executed once for all
    (resolvers.fanout), until the connection ends; from the resolver, or straight from the socket's handler
    for a document seen before (resolvers.direct)."""
    rt = ctx.rt
    websocket = ctx.request
    assert isinstance(websocket, WebSocket)
    renderer = fanout.SharedRenderer(lane, info, lambda e, c: _convert(e, c, rt))
    socket = socket_of(websocket.scope)
    frames = _EventFrames(websocket, socket, renderer) if socket is not None else None
    writer = StreamWriter(
        frames.send_text if frames is not None else websocket.send_text,
        render_now=renderer.frame_now,
        render=renderer.frame,
        on_overflow=_closer(rt, websocket),
        write_now=frames.write_now if frames is not None else None,
        write_many=frames.write_many if frames is not None else None,
    )
    async with open_stream(
        rt, actor=ctx.actor, kind="graphql", transport=writer, cursor=after, conn_id=ctx.stream_id()
    ) as stream:
        try:
            await writer.run(stream)
        except Exception as error:
            if stream.conn.overflowed:
                return  # closed with 1013 for its overflow: a send still in hand fails, as it should
            if not isinstance(error, OutboxClosed):
                raise
            if error.reason == "overflow":
                await websocket.close(close_codes.TRY_AGAIN_LATER)
            # Otherwise the server ended the stream: the operation completes.


async def _start_direct(ctx: Context, lane: fanout.Lane, prepared: direct.Prepared, arguments: dict[str, Any]) -> None:
    await stream_to_socket(ctx, lane, direct.ResolveInfoView(prepared), arguments.get("after"))


class _EventFrames:
    """How a subscription's event frames reach its socket (resolvers.sockets): written straight to the transport
    when the socket can take them now (`write_now`; the payload rendered once for all, the frame carrying this
    subscription's id), else through the socket's direct send (`send_text`: one coroutine per frame where
    Starlette's WebSocket and the framework's wrappers took five). Both keep Starlette's rule: only a connected
    socket is written to this way."""

    __slots__ = ("_renderer", "_socket", "_websocket")

    def __init__(self, websocket: WebSocket, socket: GraphQLSocket, renderer: fanout.SharedRenderer) -> None:
        self._websocket, self._socket, self._renderer = websocket, socket, renderer

    def write_now(self, delivery: Delivery) -> bool:
        if self._websocket.application_state is not WebSocketState.CONNECTED:
            return False
        text = self._renderer.frame_now(delivery)
        return text is not None and self._socket.write_frame(server_frame(text))

    def write_many(self, deliveries: Sequence[Delivery]) -> int:
        """`write_now` for as many of `deliveries` as render now, in one write (a replay); how many."""
        if self._websocket.application_state is not WebSocketState.CONNECTED:
            return 0
        frames = []
        for delivery in deliveries:
            text = self._renderer.frame_now(delivery)
            if text is None:
                break
            frames.append(server_frame(text))
        return len(frames) if frames and self._socket.write_frames(frames) else 0

    async def send_text(self, text: str) -> None:
        websocket = self._websocket
        if websocket.application_state is not WebSocketState.CONNECTED:
            await websocket.send_text(text)  # Starlette's answer for a socket not (or no longer) connected
            return
        try:
            await self._socket.send_direct({"type": "websocket.send", "text": text})
        except OSError:  # as Starlette's WebSocket.send: the client is gone
            websocket.application_state = WebSocketState.DISCONNECTED
            raise WebSocketDisconnect(code=1006) from None


def _closer(rt: Runtime, websocket: WebSocket) -> Callable[[], None]:
    """The overflow of a socket's stream: close the socket (1013) from the socket's own context; the overflow is
    noticed in the publisher's task, and a client that stopped reading leaves the writer stuck in a send."""
    context = contextvars.copy_context()

    def close_slow() -> None:
        rt.spawn(_close_slow(websocket), context=context)

    return close_slow


def _cut_off(stream: http.HttpStream) -> Callable[[], None]:
    """The overflow of an HTTP stream: its response ends where it is (the client resumes with `after:`)."""

    def cut_off() -> None:
        log.info("http stream cut off: the client stopped reading", extra=fields(reason="overflow"))
        stream.cut_off()

    return cut_off


async def _close_slow(websocket: WebSocket) -> None:
    with contextlib.suppress(Exception):
        # Not wait_for: Python 3.11's wait_for runs the close as a task of its own, and a close that fails (the client
        # is gone) then holds wait_for's frame, which holds that task: a cycle. (This runs in a task of its own.)
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await websocket.close(close_codes.TRY_AGAIN_LATER)


def _convert(event: Any, cursor: str | None, rt: Any) -> Any:
    return types.event(event, cursor=cursor, is_online=rt.is_online)
