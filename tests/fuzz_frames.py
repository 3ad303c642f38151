"""Hypothesis strategies for the fuzz tests: hostile frames for both WebSocket protocols.

Each strategy yields a `Wire`: the exact bytes that go on the socket, how they go (text or binary opcode) and the
generator family it came from (for the report). What the server should answer is not decided here: the tests
parse the wire exactly as the server will (`server_view`) and judge the answer from that, so a frame counts
for what it is, not for what its generator meant it to be.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

from hypothesis import strategies as st

from legacy_ws.frames import CommandType

# The documented default inbound frame limit (server/config.py, docs/configuration.md): larger frames close the socket with 1009.
MAX_FRAME_BYTES = 64 * 1024
MAX_CONTENT = 10_000

# Every command of the protocol, from its one definition (frames.CommandType, checked against the handlers in
# tests/test_authorization_matrix.py).
LEGACY_COMMANDS: tuple[str, ...] = get_args(CommandType)

HUGE_INTS = [2**70, -(2**70), 2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**31, -(2**31) - 1, 2**53 + 1]

# Unicode and parser edge cases. Surrogates are Python strings here and go out as JSON escapes ("\ud800"):
# a lone one decodes on the server to a string that UTF-8 cannot encode, a pair decodes to one emoji.
EDGE_TEXT = [
    "",
    " ",
    "\t\r\n",
    "\u00a0",
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\u200e\u200f",  # LRM, RLM
    "\u202e",  # right-to-left override
    "\u2066\u2069",
    "\ufeff",
    "\u2028\u2029",
    "\u0000",
    "a\u0000b",
    "\x1b[31mred",
    "\ud800",
    "\udfff",
    "x\udc80y",
    "\ud83d\ude00",
    "مرحبا بالعالم",
    "\u202etxt.exe",
    "שלום",
    "😀",
    "👩\u200d👩\u200d👧\u200d👦",
    "🏳️\u200d🌈",
    "\U0010ffff",
    "\U000e0001",
    "Z̴̡̗̈́a̸l̷g̵o̶",
    "NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "null",
    "undefined",
    "true",
    "1e309",
    "-0",
    "0x1F",
    "__proto__",
    "constructor",
    "' OR 1=1 --",
    '"; DROP TABLE messages; --',
    "{{7*7}}",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "%s%s%n",
    "../../etc/passwd",
]

# Characters to repeat into long contents: 1, 2, 3 and 4 bytes of UTF-8, whitespace, invisible, NUL, lone surrogate.
FILL_CHARS = ["x", "é", "\u20ac", "😀", " ", "\u200b", "\u0000", "\ud800"]
# Content lengths around the limits: empty, one, the limit and one past it.
EDGE_LENGTHS = [0, 1, 2, MAX_CONTENT - 1, MAX_CONTENT, MAX_CONTENT + 1]


@dataclass(frozen=True)
class Wire:
    """One WebSocket frame as sent: `payload` bytes go out with the text opcode unless `binary`."""

    family: str
    payload: str | bytes
    binary: bool = False

    @property
    def size(self) -> int:
        raw = self.payload if isinstance(self.payload, bytes) else self.payload.encode("utf-8")
        return len(raw)

    @property
    def text(self) -> str:
        """The frame as text, for reports and for 'was this in the request' checks."""
        if isinstance(self.payload, bytes):
            return self.payload.decode("utf-8", "replace")
        return self.payload

    def short(self, limit: int = 400) -> str:
        kind = "binary" if self.binary else "text"
        text = repr(self.payload)
        if len(text) > limit:
            text = text[: limit // 2] + f" …[{len(text) - limit} more]… " + text[-limit // 2 :]
        return f"[{self.family}, {kind}, {self.size} bytes] {text}"


MISSING = object()


def encode(value: Any, ascii_only: bool) -> str:
    """JSON text as a client would send it; strings UTF-8 cannot carry (lone surrogates) always go escaped."""
    if not ascii_only:
        text = json.dumps(value, ensure_ascii=False)
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:
            pass
    return json.dumps(value, ensure_ascii=True)


# -- JSON values ------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_INTS),
    st.floats(),  # NaN and ±Infinity go out as the non-standard literals Python's json reads back
    st.text(max_size=20),
    st.sampled_from(EDGE_TEXT),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


def repeated(chars: list[str], lengths: list[int]) -> st.SearchStrategy[str]:
    return st.builds(lambda c, n: c * n, st.sampled_from(chars), st.sampled_from(lengths))


contents = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(min_size=1, max_size=40),
    st.sampled_from(EDGE_TEXT),
    repeated(FILL_CHARS, EDGE_LENGTHS),
    json_values,
)
client_ids = st.one_of(
    st.just(MISSING),
    st.none(),
    st.text(min_size=1, max_size=12),
    st.sampled_from(["", "k" * 100, "k" * 101, "\ud800", "\u0000", "😀" * 100]),
    json_values,
)
seq_values = st.one_of(
    st.just(MISSING),
    st.just(MISSING),
    st.none(),
    st.integers(-5, 250),
    st.sampled_from([*HUGE_INTS, 0, 1, 200, 201, -1]),
    st.booleans(),
    st.floats(),
    st.text(max_size=4),
)


@dataclass(frozen=True)
class Ids:
    """Chat and user ids the generators aim at: the attacker's own chats and the victim's."""

    own_chats: tuple[str, ...]
    victim_chat: str
    users: tuple[str, ...]  # ids it is harmless to name (the attacker and their friend)
    victims: tuple[str, ...]  # ids of the victim chat's members


def uuid_variants(value: str) -> st.SearchStrategy[str]:
    """Spellings of one UUID a lenient parser may accept, and near misses it must not."""
    plain = value.replace("-", "")
    return st.sampled_from(
        [
            value,
            value.upper(),
            "{" + value + "}",
            "urn:uuid:" + value,
            plain,
            value[:-1],
            value + "0",
            " " + value,
            value.replace("-", "_"),
        ]
    )


# A message id: a UUID nobody here can know, a malformed one, or not a string at all.
message_ids = st.one_of(st.uuids().map(str), st.text(max_size=40), json_values)
# An emoji: a real one, text of every kind (letters, spaces, control characters, too long) or not a string.
emojis = st.one_of(st.sampled_from(["👍", "🎉", "❤️", "+1"]), st.text(max_size=24), json_values)


def chat_values(ids: Ids) -> st.SearchStrategy[Any]:
    own = st.sampled_from(ids.own_chats)
    return st.one_of(
        own,
        own,
        own,
        own.flatmap(uuid_variants),
        st.just(ids.victim_chat),
        st.just(ids.victim_chat).flatmap(uuid_variants),
        st.uuids().map(str),
        st.sampled_from(["", "chat-1", "00000000-0000-0000-0000-000000000000", str(uuid.UUID(int=2**128 - 1))]),
        json_values,
        st.just(MISSING),
    )


def foreign_chat_values(ids: Ids) -> st.SearchStrategy[Any]:
    """Chat ids that are not the attacker's own, however spelt: where a command would change her chats for good
    (exit_chat), the fuzz keeps them as they are."""
    return st.one_of(
        st.just(ids.victim_chat),
        st.just(ids.victim_chat).flatmap(uuid_variants),
        st.uuids().map(str),
        st.sampled_from(["", "chat-1", "00000000-0000-0000-0000-000000000000"]),
        json_values,
        st.just(MISSING),
    )


def user_values(ids: Ids, *, with_victims: bool) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(ids.users + (ids.victims if with_victims else ())),
        st.uuids().map(str),
        json_values,
    )


def _drop_and_add(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with the given fields (values may be MISSING), now and then missing some, now and then with extras."""

    def build(values: dict[str, Any], drop: frozenset[str], extra: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in values.items() if v is not MISSING and k not in drop}
        for key, value in extra.items():
            data.setdefault(key, value)
        return data

    keys = sorted(fields)
    drops = st.one_of(st.just(frozenset()), st.just(frozenset()), st.frozensets(st.sampled_from(keys or [""])))
    extras = st.one_of(st.just({}), st.just({}), st.dictionaries(st.text(max_size=12), json_values, max_size=3))
    return st.builds(build, st.fixed_dictionaries(fields), drops, extras)


# -- legacy frames ----------------------------------------------------------------------------------

# Token-shaped strings for `refresh_token`: empty, garbage, three dot-separated parts, an unsigned JWT.
tokens = st.one_of(
    st.text(max_size=40),
    st.lists(st.text(alphabet="abcXYZ012-_", max_size=12), min_size=3, max_size=3).map(".".join),
    st.just("eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoieCJ9."),
)


def legacy_data(ids: Ids, command: str) -> st.SearchStrategy[dict[str, Any]]:
    chat = chat_values(ids)
    fields: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "get_my_chats": {},
        "get_chat_status": {},
        "send_message": {"chat_id": chat, "content": contents, "client_id": client_ids},
        "typing": {"chat_id": chat, "is_typing": st.one_of(st.booleans(), st.booleans(), json_values)},
        "mark_read": {"chat_id": chat},
        "join_chat": {"chat_id": chat},
        "leave_chat": {"chat_id": chat},
        "get_messages": {"chat_id": chat, "before": seq_values, "after": seq_values, "limit": seq_values},
        "refresh_token": {"token": st.one_of(tokens, json_values)},
        "exit_chat": {"chat_id": foreign_chat_values(ids)},
        # Not the victims: a reply lists every id blocked so far, and the victims' ids are secrets.
        "block_user": {"user_id": user_values(ids, with_victims=False)},
        "unblock_user": {"user_id": user_values(ids, with_victims=False)},
        "get_blocked_users": {},
        # Message ids the attacker cannot know (the victims' messages' ids are never handed out) or garbage.
        "edit_message": {"message_id": message_ids, "content": contents, "client_id": client_ids},
        "delete_message": {"message_id": message_ids},
        "add_reaction": {"message_id": message_ids, "emoji": emojis},
        "remove_reaction": {"message_id": message_ids, "emoji": emojis},
    }
    return _drop_and_add(fields[command])


def valid_legacy_data(ids: Ids, command: str) -> st.SearchStrategy[dict[str, Any]]:
    """Data a command accepts, so the fuzz also drives real state: messages, reads, paused chats, history."""
    chat = st.sampled_from(ids.own_chats)
    content = st.one_of(
        st.text(min_size=1, max_size=60).filter(str.strip),
        st.sampled_from(
            [t for t in EDGE_TEXT if t.strip() and "\x00" not in t and not any(0xD800 <= ord(c) <= 0xDFFF for c in t)]
        ),
        repeated(["x", "é", "😀"], [1, MAX_CONTENT - 1, MAX_CONTENT]),
    )
    page = st.one_of(st.just(MISSING), st.integers(1, 200))
    fields: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "get_my_chats": {},
        "get_chat_status": {},
        "send_message": {"chat_id": chat, "content": content, "client_id": st.just(MISSING) | st.uuids().map(str)},
        "typing": {"chat_id": chat, "is_typing": st.booleans()},
        "mark_read": {"chat_id": chat},
        "join_chat": {"chat_id": chat},
        "leave_chat": {"chat_id": chat},
        "get_messages": {"chat_id": chat, "before": page, "limit": page},
        "refresh_token": {"token": tokens},  # never a valid one: the socket keeps its expiry
        "exit_chat": {"chat_id": st.just(ids.victim_chat) | st.uuids().map(str)},  # never her own: FORBIDDEN
        "block_user": {"user_id": st.sampled_from(ids.users) | st.uuids().map(str)},
        "unblock_user": {"user_id": st.sampled_from(ids.users) | st.uuids().map(str)},
        "get_blocked_users": {},
        "edit_message": {"message_id": st.uuids().map(str), "content": content, "client_id": st.just(MISSING)},
        "delete_message": {"message_id": st.uuids().map(str)},
        "add_reaction": {"message_id": st.uuids().map(str), "emoji": st.sampled_from(["👍", "🎉", "+1"])},
        "remove_reaction": {"message_id": st.uuids().map(str), "emoji": st.sampled_from(["👍", "🎉", "+1"])},
    }
    return st.fixed_dictionaries(fields[command]).map(lambda d: {k: v for k, v in d.items() if v is not MISSING})


def legacy_commands(ids: Ids) -> st.SearchStrategy[Wire]:
    """Well-formed envelopes of every command type: valid data, or right, wrong, missing and extra fields."""

    def command(name: str) -> st.SearchStrategy[Wire]:
        data = st.sampled_from([True, False, False]).flatmap(
            lambda valid: valid_legacy_data(ids, name) if valid else legacy_data(ids, name)
        )
        return st.builds(
            lambda d, ascii_only: Wire(f"command:{name}", encode({"type": name, "data": d}, ascii_only)),
            data,
            st.booleans(),
        )

    return st.sampled_from(LEGACY_COMMANDS).flatmap(command)


NEAR_MISS_TYPES = ["SEND_MESSAGE", "send_message ", "sendMessage", "send-message", "send_message\u0000", "", "type"]


def legacy_envelopes(ids: Ids) -> st.SearchStrategy[Wire]:
    """Wrong envelopes: odd `type`, `data` that is not an object or is missing, extra top-level keys."""

    def build(kind: Any, data: Any, extra: dict[str, Any], ascii_only: bool) -> Wire:
        frame: dict[str, Any] = {}
        if kind is not MISSING:
            frame["type"] = kind
        if data is not MISSING:
            frame["data"] = data
        for key, value in extra.items():
            frame.setdefault(key, value)
        return Wire("envelope", encode(frame, ascii_only))

    kinds = st.one_of(st.sampled_from(LEGACY_COMMANDS), st.sampled_from(NEAR_MISS_TYPES), json_values, st.just(MISSING))
    datas = st.one_of(json_values, st.just(MISSING), st.just({}))
    extras = st.dictionaries(
        st.sampled_from(["id", "cursor", "token", "user_id", "__proto__"]), json_values, max_size=2
    )
    return st.builds(build, kinds, datas, extras, st.booleans())


# Depths around CPython's default recursion limit, and far past it (a 64 KiB frame holds ~32,000 brackets).
DEPTHS = [2, 50, 500, 900, 990, 1000, 1010, 1100, 5000, 13_000, 32_000]


def deep_nesting(ids: Ids) -> st.SearchStrategy[Wire]:
    """Deeply nested arrays and objects, bare or where a command expects a string: invalid however deep."""

    def build(depth: int, shape: str, where: str, chat: str) -> Wire:
        if shape == "array":
            nested = "[" * depth + "]" * depth
        else:
            depth = min(depth, 13_000)
            nested = '{"a":' * depth + "1" + "}" * depth
        templates = {
            "bare": "NESTED",
            "content": '{"type":"send_message","data":{"chat_id":"CHAT","content":NESTED}}',
            "chat_id": '{"type":"mark_read","data":{"chat_id":NESTED}}',
            "data": '{"type":"get_my_chats","data":[NESTED]}',
        }
        return Wire(f"deep:{shape}:{where}", templates[where].replace("CHAT", chat).replace("NESTED", nested))

    return st.builds(
        build,
        st.one_of(st.sampled_from(DEPTHS), st.integers(1, 32_000)),
        st.sampled_from(["array", "object"]),
        st.sampled_from(["bare", "content", "chat_id", "data"]),
        st.sampled_from(ids.own_chats),
    )


def odd_literals(ids: Ids) -> st.SearchStrategy[Wire]:
    """JSON Python reads but a strict parser would not, and numbers past every limit, in typed fields."""
    literals = ["NaN", "Infinity", "-Infinity", "1e999", "-0", "1.0", "1e2", "9" * 5000, "-" + "9" * 400, "0.1"]

    templates = {
        "limit": '{"type":"get_messages","data":{"chat_id":"CHAT","limit":LITERAL}}',
        "before": '{"type":"get_messages","data":{"chat_id":"CHAT","before":LITERAL}}',
        "after": '{"type":"get_messages","data":{"chat_id":"CHAT","after":LITERAL}}',
        "chat_id": '{"type":"join_chat","data":{"chat_id":LITERAL}}',
        "is_typing": '{"type":"typing","data":{"chat_id":"CHAT","is_typing":LITERAL}}',
        "content": '{"type":"send_message","data":{"chat_id":"CHAT","content":LITERAL}}',
        # Python's json keeps the last of duplicate keys; a strict parser might keep the first or refuse.
        "duplicate keys": '{"type":"get_my_chats","data":{},"type":"get_messages","data":{"chat_id":"CHAT","limit":LITERAL}}',
    }

    def build(literal: str, field: str, chat: str) -> Wire:
        return Wire(f"literal:{field}", templates[field].replace("CHAT", chat).replace("LITERAL", literal))

    return st.builds(
        build, st.sampled_from(literals), st.sampled_from(sorted(templates)), st.sampled_from(ids.own_chats)
    )


def oversized(ids: Ids, command: str) -> st.SearchStrategy[Wire]:
    """Frames at the 64 KiB limit, one byte past it and well past it, in 1- and 2-byte characters, text and binary."""

    def build(excess: int, pad: str, binary: bool) -> Wire:
        head, tail = '{"type":"' + command + '","data":{"pad":"', '"}}'
        room = MAX_FRAME_BYTES + excess - len(head) - len(tail)
        body = pad * (room // len(pad.encode()))
        body += "x" * (room - len(body.encode()))
        text = head + body + tail
        return Wire(f"size:{excess:+d}", text.encode() if binary else text, binary=binary)

    return st.builds(
        build,
        st.one_of(st.sampled_from([0, 1, 2, 1000]), st.integers(-10, 200_000)),
        st.sampled_from(["x", "é", "😀"]),
        st.sampled_from([False, False, True]),
    )


def invalid_utf8() -> st.SearchStrategy[Wire]:
    """Bytes sent with the text opcode that are not UTF-8 (RFC 6455 requires closing with 1007)."""

    def is_invalid(raw: bytes) -> bool:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    edge = st.sampled_from(
        [b"\xff", b"\xc3\x28", b'{"type":"get_my_chats","data":{"x":"\xed\xa0\x80"}}', b"\xf4\x90\x80\x80"]
    )
    return st.one_of(edge, st.binary(min_size=1, max_size=40).filter(is_invalid)).map(
        lambda raw: Wire("invalid-utf8", raw)
    )


def junk(family_prefix: str = "") -> list[st.SearchStrategy[Wire]]:
    """Frames that are not a protocol message at all."""
    return [
        st.text(max_size=200).map(lambda t: Wire(f"{family_prefix}text", t)),
        st.binary(max_size=200).map(lambda b: Wire(f"{family_prefix}binary", b, binary=True)),
        st.builds(lambda v, a: Wire(f"{family_prefix}json", encode(v, a)), json_values, st.booleans()),
        invalid_utf8(),
    ]


def weighted(*choices: tuple[int, st.SearchStrategy[Wire]]) -> st.SearchStrategy[Wire]:
    """Pick a strategy by weight (st.one_of leans on its first branches), then draw from it."""
    slots = [n for n, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(slots).flatmap(lambda n: choices[n][1])


def legacy_frames(ids: Ids, *, closing: bool = True) -> st.SearchStrategy[Wire]:
    """Every legacy family; without `closing`, none whose answer is a close (oversized, not UTF-8)."""
    text, binary, json_junk, not_utf8 = junk()
    return weighted(
        (12, legacy_commands(ids)),
        (2, legacy_envelopes(ids)),
        (1, deep_nesting(ids)),
        (1, odd_literals(ids)),
        (1, text),
        (1, binary),
        (1, json_junk),
        *([(1, oversized(ids, "get_my_chats")), (1, not_utf8)] if closing else []),
    )


# -- graphql-transport-ws messages ------------------------------------------------------------------

MY_CHATS = "{ myChats { id name isGroup unreadCount participants { id email isOnline } lastMessage { content sender { email } } } }"
SUBSCRIPTIONS = [
    "subscription { chatEvents { __typename } }",
    "subscription S { chatEvents { __typename ... on GlobalNotification { payload } "
    "... on NewMessage { chatId message { content sender { email } } } ... on UserTyping { chatId userId } } }",
    'subscription { chatEvents(after: "not-a-cursor") { __typename ... on ResyncRequired { reason } } }',
    "subscription($a: String) { chatEvents(after: $a) { __typename } }",
]


@dataclass(frozen=True)
class Operation:
    """A GraphQL document and how to fill its variables."""

    name: str
    document: str
    variables: Callable[[Ids], dict[str, st.SearchStrategy[Any]]]


def _no_vars(ids: Ids) -> dict[str, st.SearchStrategy[Any]]:
    return {}


def _long(chars: list[str]) -> st.SearchStrategy[str]:
    return repeated(chars, [0, 1, MAX_CONTENT, MAX_CONTENT + 1])


OPERATIONS = [
    Operation("me", "{ me { id email imageUrl isOnline lastSeen } }", _no_vars),
    Operation("myChats", MY_CHATS, _no_vars),
    Operation(
        "chatStatus",
        "{ chatStatus { totalOnlineUsers chats { chatId onlineUserIds typingUserIds usersCount } } }",
        _no_vars,
    ),
    Operation(
        "chat",
        "query($c: ID!) { chat(id: $c) { id name participants { id email } lastMessage { content } unreadCount } }",
        lambda ids: {"c": chat_values(ids)},
    ),
    Operation(
        "messages",
        "query($c: ID!, $b: Int, $a: Int, $l: Int) { messages(chatId: $c, before: $b, after: $a, limit: $l) "
        "{ seq content chatId sender { email } } }",
        lambda ids: {"c": chat_values(ids), "b": seq_values, "a": seq_values, "l": seq_values},
    ),
    Operation("onlineUsers", "{ onlineUsers }", _no_vars),
    Operation(
        "isUserOnline",
        "query($u: ID!) { isUserOnline(userId: $u) }",
        lambda ids: {"u": user_values(ids, with_victims=True)},
    ),
    Operation(
        "sendMessage",
        "mutation($c: ID!, $t: String!, $k: String) { sendMessage(chatId: $c, content: $t, clientId: $k) "
        "{ id seq chatId content clientId } }",
        lambda ids: {"c": chat_values(ids), "t": st.one_of(contents, _long(FILL_CHARS)), "k": client_ids},
    ),
    Operation(
        "markRead",
        "mutation($c: ID!) { markRead(chatId: $c) { chatId userId lastReadSeq } }",
        lambda ids: {"c": chat_values(ids)},
    ),
    Operation(
        "setTyping",
        "mutation($c: ID!, $t: Boolean!) { setTyping(chatId: $c, isTyping: $t) }",
        lambda ids: {"c": chat_values(ids), "t": st.one_of(st.booleans(), json_values)},
    ),
    Operation(
        "createChat",
        "mutation($m: [ID!]!, $n: String, $g: Boolean) { createChat(memberIds: $m, name: $n, isGroup: $g) "
        "{ id name participants { email } } }",
        lambda ids: {
            "m": st.lists(user_values(ids, with_victims=False), max_size=3) | json_values,
            "n": st.one_of(st.none(), st.text(max_size=10), repeated(["n", "😀"], [200, 201])),
            "g": st.one_of(st.none(), st.booleans(), json_values),
        },
    ),
    Operation(
        "addChatMember",
        "mutation($c: ID!, $u: ID!) { addChatMember(chatId: $c, userId: $u) { id name participants { email } } }",
        lambda ids: {"c": chat_values(ids), "u": user_values(ids, with_victims=False)},
    ),
    Operation(
        "removeChatMember",
        "mutation($c: ID!, $u: ID!) { removeChatMember(chatId: $c, userId: $u) }",
        lambda ids: {"c": st.just(ids.victim_chat) | chat_values(ids), "u": user_values(ids, with_victims=True)},
    ),
    Operation(
        "upsertUser",
        "mutation($id: ID, $e: String!) { upsertUser(id: $id, email: $e) { id email } }",
        lambda ids: {"id": user_values(ids, with_victims=True), "e": st.text(max_size=10)},
    ),
    Operation(
        "notifyChatParticipants",
        "mutation($c: ID!, $n: JSON!) { notifyChatParticipants(chatId: $c, notification: $n) }",
        lambda ids: {"c": chat_values(ids), "n": json_values},
    ),
    Operation(
        "sendGlobalNotification",
        "mutation($u: ID!, $n: JSON!) { sendGlobalNotification(userId: $u, notification: $n) }",
        lambda ids: {"u": user_values(ids, with_victims=True), "n": json_values},
    ),
    *(Operation(f"chatEvents#{n}", doc, lambda ids: {"a": json_values}) for n, doc in enumerate(SUBSCRIPTIONS)),
]


def _invalid_documents() -> st.SearchStrategy[str]:
    valid = [op.document for op in OPERATIONS]
    return st.one_of(
        st.text(max_size=80),
        st.builds(lambda doc, cut: doc[: max(1, int(len(doc) * cut))], st.sampled_from(valid), st.floats(0, 0.99)),
        st.integers(11, 300).map(lambda d: "{" + "me { " * d + "id" + " }" * d + " }"),
        st.integers(11, 300).map(
            lambda d: "{ myChats { " + "lastMessage { sender { " * (d // 2) + "id" + " } }" * (d // 2) + " } }"
        ),
        st.integers(16, 400).map(lambda n: "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(n)) + " }"),
        st.integers(1001, 3000).map(lambda n: "{ " + "__typename " * n + "}"),
        st.sampled_from(
            [
                "fragment A on Query { ...B } fragment B on Query { ...A } query { ...A }",
                "query { ...Missing }",
                "{ me { id } } { me { id } }",
                "query A { me { id } } query A { me { id } }",
                "{ me @skip(if: 1) { id } }",
                "{ me @defer { id } }",
                "{ me { nope } }",
                "{ nope }",
                '{ chat(id: "x", extra: 1) { id } }',
                "query($c: ID!) { chat(id: $c) { id } }",
                "subscription { chatEvents { __typename } other: chatEvents { __typename } }",
                "subscription { __typename }",
                "{ __schema { types { name fields { name args { name } } } } }",
                '{ __type(name: "Chat") { name fields { name } } }',
                "query { me { id } } subscription S { chatEvents { __typename } }",
                "mutation { __typename }",
                "{ " + "\u200b" * 10 + " }",
                "\ufeff{ me { id } }",
                "{ me { id } } # " + "c" * 50_000,
                '{ me(id: "\\ud800") { id } }',
                "{ me { id } ",
            ]
        ),
    )


def _subscribe_payloads(ids: Ids) -> st.SearchStrategy[tuple[str, Any]]:
    def valid(op: Operation) -> st.SearchStrategy[tuple[str, Any]]:
        def build(variables: dict[str, Any], op_name: Any, extensions: Any) -> tuple[str, Any]:
            payload: dict[str, Any] = {"query": op.document, "variables": variables}
            if op_name is not MISSING:
                payload["operationName"] = op_name
            if extensions is not MISSING:
                payload["extensions"] = extensions
            return op.name, payload

        op_names = st.one_of(
            st.just(MISSING), st.just(MISSING), st.none(), st.sampled_from(["S", "nope", ""]), json_values
        )
        extensions = st.one_of(st.just(MISSING), st.just(MISSING), json_values)
        return st.builds(build, _drop_and_add(op.variables(ids)), op_names, extensions)

    def junk_variables(pair: tuple[str, Any], variables: Any) -> tuple[str, Any]:
        name, payload = pair
        return name, {**payload, "variables": variables}

    operations = st.sampled_from(OPERATIONS).flatmap(valid)
    choices: list[tuple[int, st.SearchStrategy[tuple[str, Any]]]] = [
        (12, operations),
        (1, st.builds(junk_variables, operations, json_values)),
        (4, st.builds(lambda doc: ("invalid", {"query": doc}), _invalid_documents())),
        (1, json_values.map(lambda q: ("query-not-a-string", {"query": q}))),
        (
            1,
            st.dictionaries(st.sampled_from(["variables", "operationName", "extensions", "qu3ry"]), json_values).map(
                lambda p: ("no-query", p)
            ),
        ),
        (1, json_values.map(lambda p: ("payload-junk", p))),
    ]
    slots = [n for n, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(slots).flatmap(lambda n: choices[n][1])


operation_ids = st.one_of(
    st.text(min_size=1, max_size=8),
    st.text(min_size=1, max_size=8),
    st.just("live"),  # the id of the subscription the 'live' context opened first
    st.sampled_from(["", "1", "i" * 1000, "i" * 30_000, "\ud800", "\u0000", "😀"]),
    st.integers(),
    st.sampled_from([None, True, 1.5, 2**70]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(MISSING),
)


def gql_subscribes(ids: Ids) -> st.SearchStrategy[Wire]:
    def build(op_id: Any, pair: tuple[str, Any], ascii_only: bool, drop_payload: bool) -> Wire:
        family, payload = pair
        message: dict[str, Any] = {"type": "subscribe"}
        if op_id is not MISSING:
            message["id"] = op_id
        if not drop_payload:
            message["payload"] = payload
        return Wire(f"subscribe:{family}", encode(message, ascii_only))

    drops = st.sampled_from([False, False, False, False, True])
    return st.builds(build, operation_ids, _subscribe_payloads(ids), st.booleans(), drops)


def gql_control(tokens: dict[str, str]) -> st.SearchStrategy[Wire]:
    """connection_init (with good, bad and odd tokens), ping, pong, complete, unknown and server-only types."""
    token_payloads = st.one_of(
        st.sampled_from(sorted(tokens)).map(lambda k: {"token": tokens[k]}),
        st.sampled_from(sorted(tokens)).map(lambda k: {"Authorization": f"Bearer {tokens[k]}"}),
        st.sampled_from(sorted(tokens)).map(lambda k: {"authorization": f"bearer {tokens[k]}"}),
        st.dictionaries(st.sampled_from(["token", "Authorization", "x"]), json_values, max_size=2),
        json_values,
        st.just(MISSING),
    )

    def message(kind: Any, payload: Any, op_id: Any, ascii_only: bool) -> Wire:
        msg: dict[str, Any] = {}
        if kind is not MISSING:
            msg["type"] = kind
        if payload is not MISSING:
            msg["payload"] = payload
        if op_id is not MISSING:
            msg["id"] = op_id
        return Wire(f"control:{kind if isinstance(kind, str) else type(kind).__name__}", encode(msg, ascii_only))

    return st.one_of(
        st.builds(message, st.just("connection_init"), token_payloads, st.just(MISSING), st.booleans()),
        st.builds(
            message,
            st.sampled_from(["ping", "pong"]),
            st.one_of(st.just(MISSING), json_values),
            st.just(MISSING),
            st.booleans(),
        ),
        st.builds(message, st.just("complete"), st.just(MISSING), operation_ids, st.booleans()),
        st.builds(
            message,
            st.one_of(
                st.sampled_from(
                    ["connection_ack", "next", "error", "start", "stop", "ka", "connection_terminate", "PING"]
                ),
                json_values,
                st.just(MISSING),
            ),
            st.one_of(st.just(MISSING), json_values),
            st.one_of(st.just(MISSING), operation_ids),
            st.booleans(),
        ),
    )


def gql_messages(ids: Ids, tokens: dict[str, str]) -> st.SearchStrategy[Wire]:
    text, binary, json_junk, not_utf8 = junk("gql-")
    return weighted(
        (12, gql_subscribes(ids)),
        (5, gql_control(tokens)),
        (1, deep_nesting(ids)),
        (1, oversized(ids, "ping")),
        (1, text),
        (1, binary),
        (1, json_junk),
        (1, not_utf8),
    )
