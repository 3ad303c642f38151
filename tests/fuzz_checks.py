"""What the fuzz tests hold every answer to, and how they collect what breaks it.

The oracles here decide, from a frame exactly as the server will parse it, which answers are legitimate
(docs/protocols.md; the graphql-transport-ws protocol with Strawberry's close codes). Violations are collected, not
raised, so one run reports every distinct problem it met, each with how often and its smallest input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import websockets
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from websockets.asyncio.client import ClientConnection

from legacy_ws.frames import CommandType
from tests.fuzz_frames import MAX_CONTENT, MAX_FRAME_BYTES, Wire

CODES = frozenset(
    {"UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "BAD_REQUEST", "RATE_LIMITED", "PAYLOAD_TOO_LARGE", "INTERNAL"}
)
# Text that only an internal error puts in an answer (a traceback, a driver's message, a Python repr).
INTERNAL_WORDS = ("Traceback", 'File "', "sqlalchemy", "asyncpg", "sqlite", "Exception", "<class")
MAX_PAGE = 200
DEFAULT_PAGE = 50


# -- findings ---------------------------------------------------------------------------------------


class Findings:
    """Violations by kind: how often each happened and the smallest input that caused it."""

    def __init__(self) -> None:
        self.found: dict[str, tuple[int, str]] = {}

    def add(self, kind: str, example: str) -> None:
        count, smallest = self.found.get(kind, (0, example))
        if len(example) < len(smallest):
            smallest = example
        self.found[kind] = (count + 1, smallest)

    def __bool__(self) -> bool:
        return bool(self.found)

    def report(self) -> str:
        lines = [f"{len(self.found)} distinct violation(s):"]
        for kind, (count, example) in sorted(self.found.items(), key=lambda item: -item[1][0]):
            lines.append(f"- {kind}  (x{count})\n    smallest input: {example}")
        return "\n".join(lines)


# -- the server log ---------------------------------------------------------------------------------

# uvicorn reports a text frame that is not UTF-8 at ERROR with a traceback, then closes with 1007 as RFC 6455
# requires: the server's answer is right, the log line is uvicorn's own. It is counted, not failed.
TOLERATED_LOG = ("Invalid UTF-8 sequence received from client",)
# Log lines of the product that mean an answer went wrong even without a traceback.
PROBLEM_LINES = re.compile(
    r"Exception in ASGI application|legacy connection \S+ ended with|closing slow consumer|was never awaited"
)
# A traceback that continues the one before it (chained exceptions) is part of that one.
CHAINED = ("The above exception was the direct cause", "During handling of the above exception")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*$")


def log_problems(text: str) -> tuple[list[str], int]:
    """Tracebacks and problem lines in a stretch of server log, each summarised in one line; and the number of
    tolerated entries."""
    problems: list[str] = []
    tolerated = 0
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            context = next((lines[k] for k in range(n - 1, -1, -1) if lines[k].strip()), "")
            if any(t in context for t in TOLERATED_LOG):
                tolerated += 1
                continue
            if context.startswith(CHAINED):
                continue
            error = next((x for x in lines[n + 1 :] if EXCEPTION_LINE.match(x)), "?")
            problems.append(f"log: {_strip_level(context)[:120]} -> {error[:160]}")
        elif PROBLEM_LINES.search(line) and not lines[n + 1 : n + 2] == ["Traceback (most recent call last):"]:
            problems.append(f"log: {_strip_level(line)[:160]}")
    return problems, tolerated


def _strip_level(line: str) -> str:
    """One log line without what varies between occurrences: level prefix, a warning's location, connection ids."""
    warning = re.search(r"\w+Warning: .*", line)
    if warning:
        return warning.group(0)
    if line.startswith(("ERROR:", "WARNING:")):
        line = line.split(":", 1)[1].strip()
    return re.sub(r"\b(legacy|graphql)-\d+\b", "<conn>", line)


class LogWatch:
    """Reads the server log incrementally, so a problem is pinned on the frame that was just sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.tolerated = 0

    def new_problems(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        # Only whole lines: a traceback being written now is read complete next time.
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        problems, tolerated = log_problems(chunk[:end].decode("utf-8", "replace"))
        self.tolerated += tolerated
        return problems


# -- answers ----------------------------------------------------------------------------------------


def leaks(raw: str, request: str, secrets: tuple[str, ...]) -> list[str]:
    """Internal text or the victim's secrets in an answer, unless the request itself carried them (an echo)."""
    found = [f"internal text {w!r} in an answer" for w in INTERNAL_WORDS if w in raw and w not in request]
    found += ["a victim secret in an answer" for s in secrets if s in raw and s not in request]
    return found


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


def has_surrogates(value: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in value)


CLOSED = object()


class Socket:
    """A raw `websockets` client whose frames are queued as they arrive; remembers how the server closed."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[str] = []
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> Socket:
        ws = await websockets.connect(url, max_size=None, open_timeout=10, close_timeout=5, **kwargs)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                self.received.append(text)
                await self.queue.put(text)
                self.changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code if self.ws.close_code is not None else 1006
            self.closed.set()
            self.changed.set()
            await self.queue.put(CLOSED)

    async def send(self, wire: Wire | str) -> bool:
        """False if the socket was already closed."""
        try:
            if isinstance(wire, str):
                await self.ws.send(wire)
            else:
                await self.ws.send(wire.payload, text=not wire.binary)
        except websockets.ConnectionClosed:
            return False
        return True

    async def next(self, timeout: float) -> Any:
        """The next frame's text, CLOSED, or None after `timeout`."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.closed.is_set():
                return predicate()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return True

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 10)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self.reader, 5)


# -- the legacy oracle ------------------------------------------------------------------------------


@dataclass
class LegacyExpect:
    """What may answer one legacy frame."""

    close: int | None = None
    codes: frozenset[str] = frozenset()  # an error with one of these codes must answer
    optional: frozenset[str] = frozenset()  # an error with one of these may answer instead of success
    reply: str | None = None  # on success, the reply type (get_my_chats, get_chat_status, get_messages)
    command: str | None = None
    chat: str | None = None  # canonical id of the chat a successful command acted on
    message: tuple[str | None, str | None] | None = None  # (content or None if unknowable, client_id): must arrive
    # (chat, client id) a successful send stores, whether or not this connection sees it (a paused chat): a later
    # send with the same pair is a retry, answered with the first message and no new event.
    stores_client_id: tuple[str, str] | None = None
    limit: int = DEFAULT_PAGE
    notes: list[str] = field(default_factory=list)


BAD = LegacyExpect(codes=frozenset({"BAD_REQUEST"}))
LEGACY_REPLIES = frozenset({"error", "my_chats", "chat_status", "messages", "token_refreshed", "blocked_users"})
LEGACY_EVENTS = frozenset(
    {
        "new_message",
        "messages_read",
        "user_typing",
        "user_stopped_typing",
        "user_joined",
        "user_left",
        "chat_created",
        "member_added",
        "member_removed",
        "global_notification",
        "resync_required",
        "block_changed",
        "user_online",
        "user_offline",
        "message_edited",
        "message_deleted",
        "reaction_changed",
    }
)


def server_view(wire: Wire) -> tuple[str, Any]:
    """The frame as the server parses it: ("close", code), ("binary", None), ("bad", None) or ("json", value)."""
    if wire.size > MAX_FRAME_BYTES:
        return "close", 1009
    if wire.binary:
        return "binary", None
    if isinstance(wire.payload, bytes):
        try:
            text = wire.payload.decode("utf-8")
        except UnicodeDecodeError:
            return "close", 1007
    else:
        text = wire.payload
    try:
        # Deep nesting this process cannot parse is generated only where it makes the frame invalid anyway.
        return "json", json.loads(text)
    except (ValueError, RecursionError):
        return "bad", None


def _is(value: Any, kind: type) -> bool:
    # bool is an int in Python; the protocol does not take true for a number.
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _chat(data: dict[str, Any]) -> uuid.UUID | None:
    value = data.get("chat_id")
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def legacy_expect(
    wire: Wire, *, own: frozenset[str], paused: set[str], used_client_ids: set[tuple[str, str]]
) -> LegacyExpect:
    kind, frame = server_view(wire)
    if kind == "close":
        return LegacyExpect(close=frame)
    if kind != "json" or not isinstance(frame, dict):
        return BAD
    command, data = frame.get("type"), frame.get("data", {})
    if not isinstance(command, str) or command not in LEGACY_COMMAND_SET or not isinstance(data, dict):
        return BAD
    if command in ("get_my_chats", "get_chat_status"):
        return LegacyExpect(command=command, reply={"get_my_chats": "my_chats"}.get(command, "chat_status"))
    if command in ("block_user", "unblock_user", "get_blocked_users"):
        if command == "get_blocked_users":
            return LegacyExpect(command=command, reply="blocked_users")
        try:
            uuid.UUID(data["user_id"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return BAD
        # Blocking oneself is BAD_REQUEST (the oracle does not tell the attacker's own id apart).
        return LegacyExpect(command=command, reply="blocked_users", optional=frozenset({"BAD_REQUEST"}))
    if command in ("edit_message", "delete_message", "add_reaction", "remove_reaction"):
        # The attacker knows no message's id: a malformed one is BAD_REQUEST; a well-formed one is FORBIDDEN (an
        # unknown message is answered as one in another's chat), unless another field is refused first.
        try:
            uuid.UUID(data["message_id"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return BAD
        return LegacyExpect(command=command, codes=frozenset({"FORBIDDEN", "BAD_REQUEST", "PAYLOAD_TOO_LARGE"}))
    if command == "refresh_token":
        # The fuzz holds no valid token to hand over: a string is UNAUTHENTICATED, anything else BAD_REQUEST.
        code = "UNAUTHENTICATED" if isinstance(data.get("token"), str) else "BAD_REQUEST"
        return LegacyExpect(command=command, codes=frozenset({code}))

    codes: set[str] = set()
    optional: set[str] = set()
    chat = _chat(data)
    canonical = None if chat is None else str(chat)
    if chat is None:
        codes.add("BAD_REQUEST")
    elif canonical not in own:
        codes.add("FORBIDDEN")
    expect = LegacyExpect(command=command, chat=canonical)

    if command == "send_message":
        content, client_id = data.get("content"), data.get("client_id")
        if not isinstance(content, str):
            codes.add("BAD_REQUEST")
        else:
            if len(content) > MAX_CONTENT:
                codes.add("PAYLOAD_TOO_LARGE")
            if not content:
                codes.add("BAD_REQUEST")
            elif not content.strip() or has_surrogates(content) or "\x00" in content:
                # Blank, not Unicode (lone surrogates) or NUL: refusing is right, so may be storing it.
                optional.add("BAD_REQUEST")
        if client_id is not None:
            if not isinstance(client_id, str) or not 1 <= len(client_id) <= 100:
                codes.add("BAD_REQUEST")
            elif has_surrogates(client_id) or "\x00" in client_id:
                optional.add("BAD_REQUEST")
        retry = not codes and client_id is not None and (canonical, client_id) in used_client_ids
        if not codes and client_id is not None and not retry:
            expect.stores_client_id = (canonical, client_id)
        if not codes and canonical not in paused and not retry:
            exact = isinstance(content, str) and not has_surrogates(content)
            expect.message = (content if exact else None, client_id)
    elif command == "typing":
        if not _is(data.get("is_typing"), bool):
            codes.add("BAD_REQUEST")
    elif command == "get_messages":
        expect.reply = "messages"
        values = {name: data.get(name) for name in ("before", "after", "limit")}
        for value in values.values():
            if value is not None and not _is(value, int):
                codes.add("BAD_REQUEST")
            elif _is(value, int) and abs(value) >= 2**63:
                optional.add("BAD_REQUEST")  # past any seq: an empty page or a refusal are both right
        limit = values["limit"]
        if _is(limit, int):
            if limit == 0:
                optional.add("BAD_REQUEST")  # the legacy command takes a falsy limit as the default page
            elif not 1 <= limit <= MAX_PAGE:
                codes.add("BAD_REQUEST")
            else:
                expect.limit = limit
        if values["before"] is not None and values["after"] is not None:
            codes.add("BAD_REQUEST")
    expect.codes = frozenset(codes)
    expect.optional = frozenset(optional - codes)
    return expect


LEGACY_COMMAND_SET = frozenset(get_args(CommandType))


def check_legacy_frame(frame: Any, *, own: frozenset[str], users: frozenset[str], markers: set[str]) -> list[str]:
    """Shape and privacy of any frame the attacker receives."""
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str) or "data" not in frame:
        return ["a frame that is not {type, data}"]
    kind, data = frame["type"], frame["data"]
    problems: list[str] = []
    if kind == "error":
        code = data.get("code") if isinstance(data, dict) else None
        if code not in CODES:
            problems.append(f"error frame with code {code!r}")
        elif code == "INTERNAL":
            problems.append("INTERNAL error (the server failed on client input)")
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            problems.append("error frame without a message")
        return problems
    if kind not in LEGACY_REPLIES and kind not in LEGACY_EVENTS:
        return [f"unknown frame type {kind!r}"]
    if kind == "global_notification":
        if not (isinstance(data, dict) and data.get("marker") in markers):
            problems.append("a global_notification nobody sent to this user")
        return problems
    if kind == "resync_required":
        return ["resync_required on a connection opened without a cursor"]
    chats: list[Any] = []
    if kind == "my_chats":
        chats = [c.get("id") for c in data.get("chats", [])]
        emails_ok = all(p.get("id") in users for c in data.get("chats", []) for p in c.get("participants", []))
        if not emails_ok:
            problems.append("my_chats lists a participant outside the attacker's chats")
        if data.get("total_chats") != len(chats):
            problems.append("my_chats total_chats differs from its list")
    elif kind == "chat_status":
        chats = [c.get("chat_id") for c in data.get("chats", [])]
        for c in data.get("chats", []):
            if not set(c.get("online_users", []) + c.get("typing_users", [])) <= users:
                problems.append("chat_status names a user outside the attacker's chats")
    elif kind == "messages":
        chats = [data.get("chat_id")] + [m.get("chat_id") for m in data.get("messages", [])]
    elif kind == "blocked_users":
        chats = []  # ids the attacker named herself
    elif kind == "block_changed":
        if data.get("user_id") not in users:
            problems.append("block_changed about another user's block list")
    else:
        chats = [data.get("chat_id")]
        named = {data.get("sender", {}).get("id")} if kind == "new_message" else {data.get("user_id")} - {None}
        named |= set(data.get("member_ids", []))
        if not named <= users:
            problems.append(f"{kind} names a user outside the attacker's chats")
    if any(c not in own for c in chats):
        problems.append(f"{kind} about a chat the attacker is not in")
    return problems


def check_legacy_reply(frame: dict[str, Any], expect: LegacyExpect, own: frozenset[str]) -> list[str]:
    data = frame["data"]
    if frame["type"] != expect.reply:
        return [f"{expect.command} answered with {frame['type']} instead of {expect.reply}"]
    if frame["type"] == "my_chats" and {c["id"] for c in data["chats"]} != own:
        return ["my_chats does not list exactly the attacker's chats"]
    if frame["type"] == "chat_status" and {c["chat_id"] for c in data["chats"]} != own:
        return ["chat_status does not cover exactly the attacker's chats"]
    if frame["type"] == "messages":
        seqs = [m["seq"] for m in data["messages"]]
        if data["chat_id"] != expect.chat:
            return ["messages for another chat than asked"]
        if seqs != sorted(set(seqs)) or len(seqs) > expect.limit:
            return ["messages page not ascending or longer than its limit"]
    return []


# -- the graphql-transport-ws oracle ---------------------------------------------------------------

NO_OP = object()
GQL_SERVER_TYPES = frozenset({"connection_ack", "next", "error", "complete", "ping", "pong"})


@dataclass
class GqlExpect:
    """What may answer one graphql-transport-ws message, given the connection's state."""

    closes: frozenset[int] = frozenset()  # the server must close with one of these
    may_close: frozenset[int] = frozenset()  # closes that are a right answer too
    ack: bool = False
    pong: bool = False
    op_id: Any = NO_OP  # an operation was started with this id


def _closes(*codes: int) -> GqlExpect:
    return GqlExpect(closes=frozenset(codes))


def _hashable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def init_token(payload: dict[str, Any]) -> str | None:
    """The token a `connection_init` payload carries: `{"token": t}` or `{"Authorization": "Bearer t"}` (docs/configuration.md "Tokens")."""
    token = payload.get("token")
    if isinstance(token, str) and token:
        return token
    for key in ("Authorization", "authorization"):
        header = payload.get(key)
        if isinstance(header, str):
            scheme, _, value = header.partition(" ")
            return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    return None


def gql_expect(wire: Wire, *, acked: bool, live_id: str | None, valid_tokens: frozenset[str]) -> GqlExpect:
    kind, msg = server_view(wire)
    if kind == "close":
        return _closes(msg)
    # Anything that is not a JSON object with a type is not a protocol message: 4400 (graphql-ws PROTOCOL.md).
    if kind != "json" or not isinstance(msg, dict) or "type" not in msg:
        return _closes(4400)
    message_type = msg["type"]
    junk_payload = (
        frozenset({4400}) if msg.get("payload") is not None and not isinstance(msg["payload"], dict) else frozenset()
    )
    if message_type == "connection_init":
        payload = msg.get("payload", {})
        if payload is None:
            return _closes(4400, 4403)  # null is a legal payload without a token: either refusal is right
        if not isinstance(payload, dict):
            return _closes(4400)
        if acked:
            return _closes(4429)
        return GqlExpect(ack=True) if init_token(payload) in valid_tokens else _closes(4403)
    if message_type == "ping":
        return GqlExpect(pong=True, may_close=junk_payload)
    if message_type == "pong":
        return GqlExpect(may_close=junk_payload)
    if message_type in ("subscribe", "complete"):
        # The server refuses a message that is not protocol-shaped (websocket_guard.is_protocol_message) with
        # 4400 before the protocol handler would answer 4401 (not acknowledged) or 4409 (duplicate id).
        shapeless = frozenset({4400}) if _shapeless(msg) else frozenset()
        if message_type == "subscribe" and not acked:
            return _closes(4401, *shapeless)
        if "id" not in msg or not _hashable(msg["id"]):
            return _closes(4400)
        # The protocol's ids are strings; a server may refuse others (4400) or echo them back.
        odd_id = frozenset() if isinstance(msg["id"], str) else frozenset({4400})
        if message_type == "complete":
            return GqlExpect(may_close=odd_id)
        if live_id is not None and msg["id"] == live_id and isinstance(msg["id"], str):
            return _closes(4409, *shapeless)
        payload = msg.get("payload")
        if not isinstance(payload, dict) or "query" not in payload:
            return _closes(4400)
        # A document the server cannot run may be refused with 4400 (Strawberry's answer to syntax errors).
        return GqlExpect(op_id=msg["id"], may_close=frozenset({4400}))
    return _closes(4400)


def _shapeless(msg: dict[str, Any]) -> bool:
    """Not shaped like a subscribe/complete message: a non-string id, or a payload that is not a request."""
    if "id" in msg and not isinstance(msg["id"], str):
        return True
    payload = msg.get("payload")
    if payload is not None and not isinstance(payload, dict):
        return True
    if msg["type"] != "subscribe":
        return False
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str) or not payload["query"].strip():
        return True
    return any(
        payload.get(name) is not None and not isinstance(payload[name], dict) for name in ("variables", "extensions")
    ) or (payload.get("operationName") is not None and not isinstance(payload["operationName"], str))


def same_id(a: Any, b: Any) -> bool:
    return a is not NO_OP and b is not NO_OP and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def coded_errors(errors: Any) -> list[str]:
    if not isinstance(errors, list) or not errors:
        return ["errors that are not a non-empty list"]
    problems = []
    for error in errors:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        code = extensions.get("code") if isinstance(extensions, dict) else None
        if code is None:
            problems.append("a GraphQL error without extensions.code")
        elif code not in CODES:
            problems.append(f"a GraphQL error with code {code!r}")
        elif code == "INTERNAL":
            problems.append("INTERNAL error (the server failed on client input)")
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            problems.append("a GraphQL error without a message")
    return problems


def check_gql_message(msg: Any, *, ids: list[Any], victim_values: tuple[str, ...]) -> list[str]:
    if not isinstance(msg, dict) or msg.get("type") not in GQL_SERVER_TYPES:
        return [
            f"not a graphql-transport-ws server message: type {msg.get('type') if isinstance(msg, dict) else msg!r}"
        ]
    kind = msg["type"]
    problems: list[str] = []
    if kind in ("next", "error", "complete") and not any(same_id(msg.get("id"), i) for i in ids):
        problems.append(f"{kind} for an id the client never used")
    payload = msg.get("payload")
    if kind == "next":
        if not isinstance(payload, dict) or "data" not in payload:
            problems.append("next without payload.data")
        else:
            if "errors" in payload:
                problems += coded_errors(payload["errors"])
            if any(s in victim_values for s in strings_in(payload["data"])):
                problems.append("victim data (chat id, user id, name, content or email) in a result")
    elif kind == "error":
        problems += coded_errors(payload)
    return problems


def runs_a_query(wire: Wire) -> bool:
    """Whether a subscribe message asks for a query or a mutation, which must end in a result or an error."""
    kind, message = server_view(wire)
    payload = message.get("payload") if kind == "json" and isinstance(message, dict) else None
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return False
    try:
        document = parse(payload["query"])
    except (GraphQLError, RecursionError):
        return False
    name = payload.get("operationName")
    operation = get_operation_ast(document, name if isinstance(name, str) else None)
    return operation is not None and operation.operation != OperationType.SUBSCRIPTION
