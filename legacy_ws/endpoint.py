"""The legacy endpoint `/websocket/ws/{user_id}`: a translation of JSON frames onto the services and the hub.

One connection = one hub stream of all the user's chats. Two tasks watch the two directions: the reader
parses commands and calls services; the writer drains the connection's bounded outbox to the socket. When
either ends (client gone, server shutting down, slow consumer), the other is cancelled at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from legacy_ws import frames
from legacy_ws.origins import origin_allowed
from realtime import close_codes
from realtime.events import Event
from realtime.expiry import TOKEN_EXPIRED_REASON, TokenExpiry
from realtime.hub import Delivery, new_connection_id
from realtime.outbox import OutboxClosed
from realtime.ratelimit import RateLimiter
from realtime.stream import Stream, StreamWriter
from server.logging_setup import bind_connection, fields, peer
from server.sends import GuardedSend, direct_send, server_frame
from services import activity, blocks, chats, messages, reactions
from services.auth import Actor, TokenRules, authenticate, refresh, token_from
from services.errors import BadRequest, DomainError, Forbidden, Unauthenticated
from services.runtime import Runtime
from services.streams import open_stream

log = logging.getLogger(__name__)

# A close handshake with a client that stopped reading cannot complete; give up on it after this long.
CLOSE_TIMEOUT_SECONDS = 5.0

Handler = Callable[["LegacySession", dict[str, Any]], Awaitable[None]]


def _chat_id(data: dict[str, Any]) -> uuid.UUID:
    return _uuid(data, "chat_id")


def _uuid(data: dict[str, Any], name: str) -> uuid.UUID:
    value = data.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{name}: expected a UUID string", details={"field": name})
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequest(f"{name}: expected a UUID string", details={"field": name}) from None


def _field(data: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = data.get(name)
    if value is None and not required:
        return None
    # bool is an int in Python: do not accept true as a number or 1 as a boolean.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadRequest(f"{name}: expected a {kind.__name__}", details={"field": name})
    return value


class LegacySession:
    def __init__(self, rt: Runtime, websocket: WebSocket, actor: Actor, stream: Stream, writer: StreamWriter) -> None:
        self.rt = rt
        self.websocket = websocket
        self.actor = actor
        self.stream = stream
        self.conn = stream.conn
        self.limiter = RateLimiter.for_connection(rt.settings)
        self.writer = writer
        # Why the session ended early, when it did (token expired): the code and reason the socket closes with.
        self.ended: tuple[int, str] | None = None
        self.tasks: tuple[asyncio.Task[None], ...] = ()
        self.expiry = TokenExpiry(actor.expires_at, leeway=rt.settings.token_leeway, on_expired=self._expired)

    def _expired(self) -> None:
        log.info("legacy connection closing: token expired")
        self.end(close_codes.TOKEN_EXPIRED, TOKEN_EXPIRED_REASON)

    def end(self, code: int, reason: str) -> None:
        """End the session now: the socket closes with `code` and `reason`."""
        self.ended = (code, reason)
        for task in self.tasks:
            task.cancel()

    # -- commands: one handler per type ------------------------------------------------------------

    async def handle_get_my_chats(self, data: dict[str, Any]) -> None:
        views = await chats.my_chats(self.rt, actor=self.actor)
        connected = self.conn.chats - self.conn.paused
        self.conn.reply(frames.my_chats_frame(views, connected=connected))

    async def handle_get_chat_status(self, data: dict[str, Any]) -> None:
        self.conn.reply(frames.chat_status_frame(await chats.chat_status(self.rt, actor=self.actor)))

    async def handle_send_message(self, data: dict[str, Any]) -> None:
        # The sender's own `new_message` arrives through the stream, like everyone else's.
        await messages.send_message(
            self.rt,
            actor=self.actor,
            chat_id=_chat_id(data),
            content=_field(data, "content", str),
            client_id=_field(data, "client_id", str, required=False),
        )

    async def handle_edit_message(self, data: dict[str, Any]) -> None:
        """Additive: `{message_id, content, client_id?}`. Like a send, the answer is the event: `message_edited` to
        every member, the sender's own connections included (a retry or the same content: none)."""
        await messages.edit_message(
            self.rt,
            actor=self.actor,
            message_id=_uuid(data, "message_id"),
            content=_field(data, "content", str),
            client_id=_field(data, "client_id", str, required=False),
        )

    async def handle_delete_message(self, data: dict[str, Any]) -> None:
        """Additive: `{message_id}` -> `message_deleted` to every member (already deleted: none)."""
        await messages.delete_message(self.rt, actor=self.actor, message_id=_uuid(data, "message_id"))

    async def handle_add_reaction(self, data: dict[str, Any]) -> None:
        """Additive: `{message_id, emoji}` -> `reaction_changed` to every member (already there: none)."""
        await self._react(data, add=True)

    async def handle_remove_reaction(self, data: dict[str, Any]) -> None:
        """Additive: `{message_id, emoji}` -> `reaction_changed` to every member (not there: none)."""
        await self._react(data, add=False)

    async def _react(self, data: dict[str, Any], *, add: bool) -> None:
        await reactions.set_reaction(
            self.rt, actor=self.actor, message_id=_uuid(data, "message_id"), emoji=_field(data, "emoji", str), add=add
        )

    async def handle_typing(self, data: dict[str, Any]) -> None:
        await activity.set_typing(
            self.rt,
            actor=self.actor,
            chat_id=_chat_id(data),
            is_typing=_field(data, "is_typing", bool),
            origin=self.conn.id,
        )

    async def handle_mark_read(self, data: dict[str, Any]) -> None:
        await messages.mark_read(self.rt, actor=self.actor, chat_id=_chat_id(data))

    async def handle_join_chat(self, data: dict[str, Any]) -> None:
        await activity.set_chat_stream(self.rt, actor=self.actor, conn=self.conn, chat_id=_chat_id(data), open=True)

    async def handle_leave_chat(self, data: dict[str, Any]) -> None:
        await activity.set_chat_stream(self.rt, actor=self.actor, conn=self.conn, chat_id=_chat_id(data), open=False)

    async def handle_exit_chat(self, data: dict[str, Any]) -> None:
        """Additive: `{chat_id}` -> leave the chat for good (`leave_chat` only pauses this socket's stream). The
        answer is the event: `member_removed` (removed_by: the leaver) to every member, the leaver included."""
        await chats.leave_chat(self.rt, actor=self.actor, chat_id=_chat_id(data))

    async def handle_block_user(self, data: dict[str, Any]) -> None:
        """Additive: `{user_id}` -> reply `blocked_users`; `block_changed` to every connection of mine if it changed."""
        await self._block(data, blocked=True)

    async def handle_unblock_user(self, data: dict[str, Any]) -> None:
        """Additive: `{user_id}` -> reply `blocked_users`; `block_changed` to every connection of mine if it changed."""
        await self._block(data, blocked=False)

    async def handle_get_blocked_users(self, data: dict[str, Any]) -> None:
        """Additive: `{}` -> reply `blocked_users {user_ids}`."""
        self.conn.reply(frames.blocked_users_frame(await blocks.blocked_users(self.rt, actor=self.actor)))

    async def _block(self, data: dict[str, Any], *, blocked: bool) -> None:
        await blocks.set_block(self.rt, actor=self.actor, user_id=_uuid(data, "user_id"), blocked=blocked)
        await self.handle_get_blocked_users(data)

    async def handle_get_messages(self, data: dict[str, Any]) -> None:
        """History (additive command): `{chat_id, before?, after?, limit?}` -> reply `messages`.

        A reply never exceeds half the outbox: a page of long messages is cut short (the newest kept when
        paging back, the oldest when paging forward) and the client asks for the rest."""
        chat_id = _chat_id(data)
        after = _field(data, "after", int, required=False)
        limit = _field(data, "limit", int, required=False)
        page = await messages.list_messages(
            self.rt,
            actor=self.actor,
            chat_id=chat_id,
            before=_field(data, "before", int, required=False),
            after=after,
            limit=messages.DEFAULT_PAGE if limit is None else limit,
        )
        self.conn.reply(
            frames.messages_frame(
                chat_id, page, max_bytes=self.rt.settings.outbox_max_bytes // 2, keep_newest=after is None
            )
        )

    async def handle_refresh_token(self, data: dict[str, Any]) -> None:
        """A fresh token for this socket (additive command): `{token}` -> reply `token_refreshed {expires_at}`. It
        must be valid and for the same user; the socket then stays open until the fresh token expires."""
        self.actor = refresh(self.actor, _field(data, "token", str), TokenRules.of(self.rt.settings))
        self.expiry.renew(self.actor.expires_at)
        assert self.actor.expires_at is not None  # every token has one
        self.conn.reply(frames.token_refreshed_frame(self.actor.expires_at))

    HANDLERS: ClassVar[dict[str, Handler]] = {
        "get_my_chats": handle_get_my_chats,
        "get_chat_status": handle_get_chat_status,
        "send_message": handle_send_message,
        "typing": handle_typing,
        "mark_read": handle_mark_read,
        "join_chat": handle_join_chat,
        "leave_chat": handle_leave_chat,
        "get_messages": handle_get_messages,
        "refresh_token": handle_refresh_token,
        "edit_message": handle_edit_message,
        "delete_message": handle_delete_message,
        "add_reaction": handle_add_reaction,
        "remove_reaction": handle_remove_reaction,
        "exit_chat": handle_exit_chat,
        "block_user": handle_block_user,
        "unblock_user": handle_unblock_user,
        "get_blocked_users": handle_get_blocked_users,
    }

    # -- the two directions ------------------------------------------------------------------------

    async def read(self) -> None:
        """Parse and run commands until the client goes away. Bad input gets an error frame, never a close."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if not self.limiter.allow():
                if self.limiter.abusive:
                    await self.close(close_codes.POLICY, "rate limit exceeded")
                    return
                self.conn.reply(frames.error_frame("RATE_LIMITED", "too many commands: slow down"))
                continue
            text = message.get("text")
            if text is None:
                self.conn.reply(frames.error_frame("BAD_REQUEST", "expected a JSON text frame"))
                continue
            await self.dispatch(text)

    async def dispatch(self, text: str) -> None:
        try:
            try:
                frame = json.loads(text)
            except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser allows
                raise BadRequest("expected a JSON object") from None
            if not isinstance(frame, dict):
                raise BadRequest("expected a JSON object")
            kind = frame.get("type")
            data = frame.get("data", {})
            if not isinstance(kind, str):
                raise BadRequest("type: expected a string")
            handler = self.HANDLERS.get(kind)
            if handler is None:
                shown = kind[:64].encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot be sent
                raise BadRequest(f"unknown type {shown!r}", details={"type": shown})
            if not isinstance(data, dict):
                raise BadRequest("data: expected an object")
            await handler(self, data)
        except DomainError as exc:
            self.conn.reply(frames.error_frame(exc.code, exc.message, exc.details))
        except Exception:
            log.exception("legacy command failed (connection %s)", self.conn.id)
            self.conn.reply(frames.error_frame("INTERNAL", "internal error"))

    async def write(self) -> None:
        """Send the stream; each event's text is encoded once for all legacy connections."""
        try:
            await self.writer.run(self.stream)
        except OutboxClosed as closed:
            if closed.reason == "overflow":
                await self.close(close_codes.TRY_AGAIN_LATER, "too slow: resume from your cursor")
        except OSError:  # the client went away mid-send (the raw ASGI send says so with an OSError)
            return

    async def close(self, code: int, reason: str) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for runs the close as a task of its own, and the error
            # of a socket the client already closed then holds wait_for's frame, which holds that task (a cycle). What
            # the writer still sends once the close went out is dropped by the guarded send (server.sends).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                    await self.websocket.close(code, reason)


class LegacyEndpoint:
    """The route's ASGI app. Not a Starlette endpoint function, which would see only a `WebSocket`: the writer
    sends through the raw ASGI `send`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _connection(scope, receive, send)


legacy_endpoint = LegacyEndpoint()


async def _connection(scope: Scope, receive: Receive, send: Send) -> None:
    websocket = WebSocket(scope, receive, send)
    rt: Runtime = websocket.app.state.runtime
    conn_id = new_connection_id("legacy")
    bind_connection(conn_id, scope)
    token = token_from(
        authorization=websocket.headers.get("authorization"), query_token=websocket.query_params.get("token")
    )
    # Accept first, then close: a close before accept reaches the client as HTTP 403 with no close code,
    # and docs/configuration.md "Tokens" promises 1008 (docs/library-notes.md).
    await websocket.accept()
    try:
        if not origin_allowed(websocket.headers, rt.settings.allowed_origins):
            raise Forbidden("this origin may not open WebSockets here")
        actor = authenticate(token, TokenRules.of(rt.settings))
        if actor.user_id is None or str(actor.user_id) != str(_path_user(websocket)):
            raise Unauthenticated("the token's user does not match the URL")
    except (Unauthenticated, Forbidden) as exc:
        log.info("legacy connection refused: %s", exc.message, extra=fields(client=peer(websocket.scope)))
        await websocket.close(close_codes.POLICY, exc.message)
        return

    user_id = actor.user_id
    if not rt.admission.admit_user(user_id):
        reason = f"at most {rt.admission.per_user} connections per user"
        log.info("legacy connection refused: %s", reason, extra=fields(client=peer(websocket.scope)))
        await websocket.close(close_codes.POLICY, reason)
        return
    cursor = websocket.query_params.get("cursor")
    try:
        # Events go out through the raw ASGI `send` (the guard's, past the framework's wrappers), as one message dict
        # per event shared by every recipient. A client that stopped reading leaves the writer stuck in a send: on
        # overflow the writer's task is cancelled.
        guarded = direct_send(scope, send)
        writer = StreamWriter(
            guarded,
            render_now=_event_message,
            render=_item_message,
            write_now=_frame_writer(guarded) if isinstance(guarded, GuardedSend) else None,
            write_many=_frames_writer(guarded) if isinstance(guarded, GuardedSend) else None,
        )
        async with open_stream(
            rt, actor=actor, kind="legacy", transport=writer, cursor=cursor, conn_id=conn_id
        ) as stream:
            await _serve(rt, websocket, actor, stream, writer)
    finally:
        rt.admission.release_user(user_id)


async def _serve(rt: Runtime, websocket: WebSocket, actor: Actor, stream: Stream, stream_writer: StreamWriter) -> None:
    conn = stream.conn
    session = LegacySession(rt, websocket, actor, stream, stream_writer)
    reader = asyncio.create_task(session.read(), name=f"{conn.id}-read")
    writer = asyncio.create_task(session.write(), name=f"{conn.id}-write")
    session.tasks = (reader, writer)
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        session.expiry.close()
        for task in (reader, writer):
            task.cancel()
        results = await asyncio.gather(reader, writer, return_exceptions=True)
        # A cancelled task keeps its CancelledError, whose traceback holds the session: without its tasks the session
        # is not part of a cycle, and is freed by reference counting when the socket closes.
        session.tasks = ()
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, (WebSocketDisconnect, asyncio.CancelledError)):
            log.warning("legacy connection %s ended with %r", conn.id, result)
    if session.ended is not None:
        code, reason = session.ended
    elif conn.outbox.closed_reason == "overflow":
        code, reason = close_codes.TRY_AGAIN_LATER, "too slow: resume from your cursor"
    else:
        code, reason = close_codes.NORMAL, ""
    await session.close(code, reason)
    log.info("legacy connection closed", extra=fields(code=code, client=peer(websocket.scope)))


def _event_message(delivery: Delivery) -> Message:
    message: Message = delivery.encoded("legacy-asgi", _asgi_message)
    return message


def _frame_writer(send: GuardedSend) -> Callable[[Delivery], bool]:
    """Write an event's frame to the socket without a coroutine when it can take it now: the frame is serialized
    once per event for every legacy socket (all get the same text)."""

    def write_now(delivery: Delivery) -> bool:
        return send.write_frame(_frame(delivery))

    return write_now


def _frames_writer(send: GuardedSend) -> Callable[[Sequence[Delivery]], int]:
    """`_frame_writer` for several events at once, in one write (a replay)."""

    def write_many(deliveries: Sequence[Delivery]) -> int:
        return len(deliveries) if send.write_frames([_frame(d) for d in deliveries]) else 0

    return write_many


def _frame(delivery: Delivery) -> bytes:
    frame: bytes | None = delivery.cached("legacy-frame")
    if frame is None:
        frame = server_frame(_event_message(delivery)["text"])
        delivery.store("legacy-frame", frame)
    return frame


def _asgi_message(event: Event, cursor: str | None) -> Message:
    return {"type": "websocket.send", "text": frames.event_frame(event, cursor)}


async def _item_message(item: Delivery | str) -> Message:
    return {"type": "websocket.send", "text": item} if isinstance(item, str) else _event_message(item)


def _path_user(websocket: WebSocket) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(websocket.path_params.get("user_id")))
    except ValueError:
        return None
