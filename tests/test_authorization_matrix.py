"""Authorization matrix (docs/configuration.md "Tokens", docs/protocols.md): every GraphQL field and every legacy command, for each kind of caller.

The tables below are the specification under test: one row per operation, one exact outcome per caller. A new
operation without a row fails `test_*_matrix_covers_*` (the rows are compared with the schema's fields and the
legacy endpoint's handlers), so nothing is added without deciding who may call it.

The world of each cell: a group chat V ("the victim chat") of alice (its creator) and carol, with one message;
a direct chat W of alice and bob; mallory, in no chat; dave, in no chat (someone to add). Callers:

- participant: alice, acting on V.
- non_participant: mallory, acting on V.
- someone_elses_token: legacy — bob's valid token on alice's URL `/websocket/ws/{alice}`; GraphQL has no
  identity besides the token, so the request runs as bob: a user who shares another chat (W) with alice yet is
  not in V, and must see nothing of it.
- expired_token: alice's token, expired. no_token: none. service_token: a service token (no user).

Besides its outcome, every cell checks that nothing of V reaches a caller who is not in it — not its id, name,
messages, members' emails, typing or presence — in the answer or as an event (observers on alice's, carol's and
the caller's own streams, checked with `marker()`), and that a refused operation changed nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from legacy_ws.endpoint import LegacySession
from realtime.positions import Vector
from resolvers import build_schema
from tests.legacy_client import LegacyClient
from tests.support import CHAT_EVENTS, EVENT_TIMEOUT, TRANSPORT_WS, Api, Subscriber, User

ROLES = ("participant", "non_participant", "someone_elses_token", "expired_token", "no_token", "service_token")

# Outcomes. OK: the operation succeeds and its row's check holds. A code: that GraphQL error (or legacy `error`
# frame), nothing else. REFUSED_*: the WebSocket is closed with that code before anything is served.
OK = "ok"
FORBIDDEN = "FORBIDDEN"
UNAUTHENTICATED = "UNAUTHENTICATED"
BAD_REQUEST = "BAD_REQUEST"
REFUSED_1008 = "refused:1008"
REFUSED_4403 = "refused:4403"
SUBSCRIBE_FORBIDDEN = "accepted, subscribe FORBIDDEN"


def row(participant: str, non_participant: str, someone: str, expired: str, none: str, service: str) -> dict[str, str]:
    return dict(zip(ROLES, (participant, non_participant, someone, expired, none, service), strict=True))


USER_ONLY = row(OK, FORBIDDEN, FORBIDDEN, UNAUTHENTICATED, UNAUTHENTICATED, FORBIDDEN)  # a member's chat operation
SERVICE_ONLY = row(FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTHENTICATED, UNAUTHENTICATED, OK)
ANY_USER = row(OK, OK, OK, UNAUTHENTICATED, UNAUTHENTICATED, FORBIDDEN)  # about the caller only

GRAPHQL_MATRIX: dict[str, dict[str, str]] = {
    "Query.me": ANY_USER,
    "Query.myChats": ANY_USER,
    "Query.chatStatus": ANY_USER,
    "Query.eventCursor": ANY_USER,
    "Query.chat": USER_ONLY,
    "Query.messages": USER_ONLY,
    "Query.onlineUsers": SERVICE_ONLY,
    "Query.isUserOnline": SERVICE_ONLY,
    # One's own block list (alice blocks dave first).
    "Query.blockedUsers": ANY_USER,
    "Mutation.sendMessage": USER_ONLY,
    "Mutation.markRead": USER_ONLY,
    "Mutation.setTyping": USER_ONLY,
    # A fresh token for the caller's own WebSocket: over HTTP (these cells) there is no socket to refresh. On a
    # socket, another user's token is FORBIDDEN (tests/test_token_expiry.py).
    "Mutation.refreshToken": row(BAD_REQUEST, BAD_REQUEST, BAD_REQUEST, UNAUTHENTICATED, UNAUTHENTICATED, BAD_REQUEST),
    # Anyone may start a chat with anyone (a service names all members): the new chat is not V.
    "Mutation.createChat": row(OK, OK, OK, UNAUTHENTICATED, UNAUTHENTICATED, OK),
    # Members may add people; a service may too. Outsiders may not add themselves.
    "Mutation.addChatMember": row(OK, FORBIDDEN, FORBIDDEN, UNAUTHENTICATED, UNAUTHENTICATED, OK),
    # The creator (alice) may remove carol; a service may; outsiders may not.
    "Mutation.removeChatMember": row(OK, FORBIDDEN, FORBIDDEN, UNAUTHENTICATED, UNAUTHENTICATED, OK),
    # Alice leaves V; only a member may, and a service has no membership to leave.
    "Mutation.leaveChat": USER_ONLY,
    # Anyone blocks (dave) for themselves; a service for the user it names (alice).
    "Mutation.blockUser": row(OK, OK, OK, UNAUTHENTICATED, UNAUTHENTICATED, OK),
    "Mutation.unblockUser": row(OK, OK, OK, UNAUTHENTICATED, UNAUTHENTICATED, OK),
    "Mutation.upsertUser": SERVICE_ONLY,
    "Mutation.notifyChatParticipants": SERVICE_ONLY,
    "Mutation.sendGlobalNotification": SERVICE_ONLY,
    # V's first message is alice's: she may edit it; only its sender may (a service neither).
    "Mutation.editMessage": USER_ONLY,
    # Its sender may delete it, and a service may.
    "Mutation.deleteMessage": row(OK, FORBIDDEN, FORBIDDEN, UNAUTHENTICATED, UNAUTHENTICATED, OK),
    "Mutation.addReaction": USER_ONLY,
    "Mutation.removeReaction": USER_ONLY,
    # Over graphql-transport-ws: a bad or missing token is refused at connection_init; a service token is
    # accepted (services call the server-side operations over the same socket) but has no stream of its own.
    "Subscription.chatEvents": row(OK, OK, OK, REFUSED_4403, REFUSED_4403, SUBSCRIBE_FORBIDDEN),
}

# The legacy socket is authenticated at the upgrade: a token that is not the URL's user's is refused with 1008.
LEGACY_MEMBER_COMMAND = row(OK, FORBIDDEN, REFUSED_1008, REFUSED_1008, REFUSED_1008, REFUSED_1008)
LEGACY_OWN_VIEW = row(OK, OK, REFUSED_1008, REFUSED_1008, REFUSED_1008, REFUSED_1008)

LEGACY_MATRIX: dict[str, dict[str, str]] = {
    "get_my_chats": LEGACY_OWN_VIEW,
    "get_chat_status": LEGACY_OWN_VIEW,
    "send_message": LEGACY_MEMBER_COMMAND,
    "typing": LEGACY_MEMBER_COMMAND,
    "mark_read": LEGACY_MEMBER_COMMAND,
    "join_chat": LEGACY_MEMBER_COMMAND,
    "leave_chat": LEGACY_MEMBER_COMMAND,
    "get_messages": LEGACY_MEMBER_COMMAND,
    # alice's fresh token: taken on alice's socket, FORBIDDEN on mallory's (another user's token).
    "refresh_token": LEGACY_MEMBER_COMMAND,
    # Alice leaves V for good (leave_chat only pauses the socket's stream of it).
    "exit_chat": LEGACY_MEMBER_COMMAND,
    # One's own block list: anyone blocks (dave) for themselves.
    "block_user": LEGACY_OWN_VIEW,
    "unblock_user": LEGACY_OWN_VIEW,
    "get_blocked_users": LEGACY_OWN_VIEW,
    # On V's first message, alice's.
    "edit_message": LEGACY_MEMBER_COMMAND,
    "delete_message": LEGACY_MEMBER_COMMAND,
    "add_reaction": LEGACY_MEMBER_COMMAND,
    "remove_reaction": LEGACY_MEMBER_COMMAND,
}


# -- completeness -------------------------------------------------------------------------------------


def test_graphql_matrix_covers_every_schema_field() -> None:
    schema = build_schema()._schema
    fields = {
        f"{kind.name}.{name}"
        for kind in (schema.query_type, schema.mutation_type, schema.subscription_type)
        if kind is not None
        for name in kind.fields
    }
    assert set(GRAPHQL_MATRIX) == fields, (
        f"rows without a field: {sorted(set(GRAPHQL_MATRIX) - fields)}; fields without a row: "
        f"{sorted(fields - set(GRAPHQL_MATRIX))} — decide who may call them and add them to GRAPHQL_MATRIX"
    )
    assert set(GRAPHQL_OPERATIONS) == fields
    for name, cells in GRAPHQL_MATRIX.items():
        assert tuple(cells) == ROLES, f"{name}: one outcome per caller"


def test_legacy_matrix_covers_every_command() -> None:
    commands = set(LegacySession.HANDLERS)
    assert set(LEGACY_MATRIX) == commands, (
        f"rows without a handler: {sorted(set(LEGACY_MATRIX) - commands)}; handlers without a row: "
        f"{sorted(commands - set(LEGACY_MATRIX))} — decide who may call them and add them to LEGACY_MATRIX"
    )
    assert set(LEGACY_COMMANDS) == commands
    for name, cells in LEGACY_MATRIX.items():
        assert tuple(cells) == ROLES, f"{name}: one outcome per caller"


# -- the world of one cell ----------------------------------------------------------------------------


class PooledApi(Api):
    """`Api` over one kept-alive HTTP client: a new httpx client per request (as `Api.post` makes) costs ~40 ms
    of loading CA certificates, and a cell makes a dozen requests."""

    def __init__(self, api: Api) -> None:
        super().__init__(api.server)
        self.client = httpx.AsyncClient(timeout=30)

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            f"{self.server.url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def pooled(api: Api) -> AsyncIterator[PooledApi]:
    pooled = PooledApi(api)
    try:
        yield pooled
    finally:
        await pooled.client.aclose()


class World:
    """Fresh users and chats for one cell, and observers on alice's and carol's streams."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.tag = uuid.uuid4().hex[:8]
        self.observers: list[LegacyClient] = []

    async def build(self) -> World:
        api = self.api
        self.alice, self.carol = await api.new_user("alice"), await api.new_user("carol")
        self.bob, self.mallory, self.dave = (
            await api.new_user("bob"),
            await api.new_user("mallory"),
            await api.new_user("dave"),
        )
        self.name = f"secret plans {self.tag}"
        self.content = f"top secret {self.tag}"
        self.v = await api.new_chat(self.alice, self.carol, name=self.name, is_group=True)
        self.w = await api.new_chat(self.bob, self.alice)
        self.first = await api.send(self.alice, self.v, self.content)
        self.alice_sees = await self.observe(self.alice)
        self.carol_sees = await self.observe(self.carol)
        return self

    async def observe(self, user: User) -> LegacyClient:
        client = await LegacyClient(self.api, user).connect()
        await client.ready()
        self.observers.append(client)
        return client

    async def close(self) -> None:
        for client in self.observers:
            await client.close()

    def caller(self, role: str) -> User | None:
        """The user a role acts as (None: no user)."""
        return {"participant": self.alice, "non_participant": self.mallory, "someone_elses_token": self.bob}.get(role)

    def token(self, role: str) -> str | None:
        return {
            "participant": self.alice.token,
            "non_participant": self.mallory.token,
            "someone_elses_token": self.bob.token,
            "expired_token": self.api.token(self.alice.id, ttl=timedelta(seconds=-300)),
            "no_token": None,
            "service_token": self.api.service_token,
        }[role]

    def secrets(self, role: str, request: str = "") -> tuple[str, ...]:
        """What a caller outside V must never see: V's id, name and content always; its members' ids and emails
        unless the caller named them (a chat created with carol shows carol) or shares another chat with them (bob
        shares W with alice)."""
        people = (self.carol.email, self.carol.id)
        if role != "someone_elses_token":
            people += (self.alice.email, self.alice.id)
        return (self.v, self.name, self.content, *(p for p in people if p not in request))

    async def assert_unchanged(self) -> None:
        """V as its members know it: the one message, the two members, alice's email."""
        data = await self.api.data(
            "query($c: ID!) { chat(id: $c) { name participants { id email } } messages(chatId: $c) { content } }",
            {"c": self.v},
            token=self.carol.token,
        )
        assert data["chat"]["name"] == self.name
        members = {(p["id"], p["email"]) for p in data["chat"]["participants"]}
        assert members == {(self.alice.id, self.alice.email), (self.carol.id, self.carol.email)}, members
        assert data["messages"] == [{"content": self.content}]


def assert_no_secret(text: str, secrets: tuple[str, ...], where: str) -> None:
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"{where} reveals {leaked}: {text[:500]}"


async def assert_quiet(world: World, *observers: LegacyClient) -> None:
    """Nothing reached these streams (frames are in publish order: a marker sent now comes after all of them)."""
    for observer in observers:
        heard = await observer.marker(f"quiet-{uuid.uuid4()}")
        # The caller's connection coming and going is presence (user_online / user_offline), not the operation's.
        heard = [frame for frame in heard if frame["type"] not in ("user_online", "user_offline")]
        assert heard == [], f"{observer.user} received {heard}"


# -- GraphQL operations -------------------------------------------------------------------------------

Check = Callable[[World, str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class GqlOperation:
    document: str
    variables: Callable[[World, str], dict[str, Any]]  # (world, role) -> variables
    ok: Check  # what success must look like (for the cells whose outcome is OK)
    stage: Callable[[World], Awaitable[None]] | None = None  # what happens in V first (in cells expected OK)


def no_vars(world: World, role: str) -> dict[str, Any]:
    return {}


def on_v(world: World, role: str) -> dict[str, Any]:
    return {"c": world.v}


async def check_me(world: World, role: str, data: dict[str, Any]) -> None:
    me = world.caller(role)
    assert me is not None
    assert data["me"] == {"id": me.id, "email": me.email}


async def check_my_chats(world: World, role: str, data: dict[str, Any]) -> None:
    chats = {c["id"]: c for c in data["myChats"]}
    expected = {"participant": {world.v, world.w}, "non_participant": set(), "someone_elses_token": {world.w}}[role]
    assert set(chats) == expected
    if role == "participant":
        v = chats[world.v]
        assert v["name"] == world.name and v["lastMessage"] == {"content": world.content}
        assert {p["email"] for p in v["participants"]} == {world.alice.email, world.carol.email}
    if world.w in chats:
        assert chats[world.w]["lastMessage"] is None, "W shows V's message"
        assert {p["email"] for p in chats[world.w]["participants"]} == {world.alice.email, world.bob.email}


async def both_type_in_v(world: World) -> None:
    for user in (world.carol, world.alice):
        await world.api.data(
            "mutation($c: ID!) { setTyping(chatId: $c, isTyping: true) }", {"c": world.v}, token=user.token
        )


async def check_chat_status(world: World, role: str, data: dict[str, Any]) -> None:
    """Carol and alice are typing in V: only V's own members see it, and only in V (bob shares W with alice)."""
    chats = {c["chatId"]: c for c in data["chatStatus"]["chats"]}
    expected = {"participant": {world.v, world.w}, "non_participant": set(), "someone_elses_token": {world.w}}[role]
    assert set(chats) == expected
    if role == "participant":
        assert chats[world.v] == {
            "chatId": world.v,
            "onlineUserIds": [world.carol.id],  # carol's observer is connected; alice is the caller
            "typingUserIds": [world.carol.id],
            "usersCount": 2,
        }
    if world.w in chats:
        assert chats[world.w]["typingUserIds"] == [], "typing in V shows in W"
    if role == "non_participant":
        assert data["chatStatus"]["totalOnlineUsers"] == 0


async def check_chat(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["chat"]["id"] == world.v and data["chat"]["name"] == world.name
    assert {p["email"] for p in data["chat"]["participants"]} == {world.alice.email, world.carol.email}


async def check_event_cursor(world: World, role: str, data: dict[str, Any]) -> None:
    assert Vector.from_cursor(data["eventCursor"]) is not None


async def check_messages(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["messages"] == [{"content": world.content, "sender": {"id": world.alice.id}}]


async def check_online_users(world: World, role: str, data: dict[str, Any]) -> None:
    assert {world.alice.id, world.carol.id} <= set(data["onlineUsers"])  # both have an observer connected
    assert world.mallory.id not in data["onlineUsers"]


async def check_is_user_online(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["isUserOnline"] is True


async def check_send_message(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["sendMessage"]["chatId"] == world.v and data["sendMessage"]["content"] == "from the matrix"
    event = await world.carol_sees.next("new_message")
    assert event["data"]["chat_id"] == world.v and event["data"]["content"] == "from the matrix"


async def check_mark_read(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["markRead"] == {"chatId": world.v, "userId": world.alice.id, "lastReadSeq": world.first["seq"]}
    event = await world.carol_sees.next("messages_read")
    assert event["data"] == {"chat_id": world.v, "user_id": world.alice.id, "last_read_seq": world.first["seq"]}


async def check_set_typing(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["setTyping"] is True
    event = await world.carol_sees.next("user_typing")
    assert event["data"] == {"chat_id": world.v, "user_id": world.alice.id}


async def check_create_chat(world: World, role: str, data: dict[str, Any]) -> None:
    chat = data["createChat"]
    creator = world.caller(role)
    members = {world.carol.id} | ({creator.id} if creator else set())
    assert chat["id"] not in (world.v, world.w), "createChat returned an existing chat"
    assert {p["id"] for p in chat["participants"]} == members and chat["name"] == "fresh"
    created = await world.carol_sees.next("chat_created")
    assert created["data"]["chat_id"] == chat["id"]


async def check_add_member(world: World, role: str, data: dict[str, Any]) -> None:
    chat = data["addChatMember"]
    assert chat["id"] == world.v
    assert {p["id"] for p in chat["participants"]} == {world.alice.id, world.carol.id, world.dave.id}
    event = await world.carol_sees.next("member_added")
    assert event["data"]["chat_id"] == world.v and event["data"]["user_id"] == world.dave.id


async def check_remove_member(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["removeChatMember"] is True
    event = await world.carol_sees.next("member_removed")
    assert event["data"]["chat_id"] == world.v and event["data"]["user_id"] == world.carol.id


async def check_upsert_user(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["upsertUser"] == {"id": world.alice.id, "email": f"renamed-{world.tag}@example.test"}


async def check_notify_chat(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["notifyChatParticipants"] is True
    expected = {"type": "chat_notification", "chat_id": world.v, "notification": {"from": "matrix"}}
    for observer in (world.alice_sees, world.carol_sees):
        assert (await observer.next("global_notification"))["data"] == expected


async def check_global_notification(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["sendGlobalNotification"] is True
    assert (await world.alice_sees.next("global_notification"))["data"] == {"from": "matrix"}


def on_first(world: World, role: str) -> dict[str, Any]:
    """V's first message (alice's)."""
    return {"m": world.first["id"]}


async def check_edit_message(world: World, role: str, data: dict[str, Any]) -> None:
    edited = data["editMessage"]
    assert edited["id"] == world.first["id"] and edited["content"] == "edited by the matrix" and edited["editedAt"]
    event = await world.carol_sees.next("message_edited")
    assert event["data"]["message_id"] == world.first["id"] and event["data"]["content"] == "edited by the matrix"


async def check_delete_message(world: World, role: str, data: dict[str, Any]) -> None:
    deleted = data["deleteMessage"]
    assert deleted["id"] == world.first["id"] and deleted["content"] == "" and deleted["deletedAt"]
    event = await world.carol_sees.next("message_deleted")
    by = None if role == "service_token" else world.alice.id
    assert event["data"]["message_id"] == world.first["id"] and event["data"]["deleted_by"] == by


async def check_add_reaction(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["addReaction"]["reactions"] == [{"emoji": "👍", "count": 1, "reactedByMe": True}]
    event = await world.carol_sees.next("reaction_changed")
    assert event["data"]["added"] is True and event["data"]["counts"] == [{"emoji": "👍", "count": 1}]


async def alice_reacts(world: World) -> None:
    await world.api.data(ADD_REACTION, {"m": world.first["id"]}, token=world.alice.token)


async def check_remove_reaction(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["removeReaction"]["reactions"] == []
    added, removed = await world.carol_sees.next("reaction_changed"), await world.carol_sees.next("reaction_changed")
    assert added["data"]["added"] is True
    assert removed["data"]["added"] is False and removed["data"]["counts"] == []


ADD_REACTION = (
    'mutation($m: ID!) { addReaction(messageId: $m, emoji: "👍") { id reactions { emoji count reactedByMe } } }'
)


async def check_leave_chat(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["leaveChat"] is True
    event = await world.carol_sees.next("member_removed")
    assert event["data"] == {"chat_id": world.v, "user_id": world.alice.id, "removed_by": world.alice.id}


def block_target(world: World, role: str) -> dict[str, Any]:
    """Dave, by the caller for themselves; a service names alice's block list."""
    return {"u": world.dave.id, **({"b": world.alice.id} if role == "service_token" else {})}


async def alice_blocks_dave(world: World) -> None:
    await world.api.data(BLOCK_USER, {"u": world.dave.id}, token=world.alice.token)


async def blocked_by(world: World, role: str) -> list[str]:
    """The block list of the role's blocker (alice for a service)."""
    user = world.caller(role) or world.alice
    blocked: list[str] = (await world.api.data("{ blockedUsers }", token=user.token))["blockedUsers"]
    return blocked


async def check_block_user(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["blockUser"] is True
    assert await blocked_by(world, role) == [world.dave.id]
    if world.caller(role) in (None, world.alice):
        change = await world.alice_sees.next("block_changed")  # alice's own other connection hears of it
        assert change["data"] == {"user_id": world.alice.id, "blocked_user_id": world.dave.id, "blocked": True}


async def check_unblock_user(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["unblockUser"] is True
    if world.caller(role) in (None, world.alice):
        assert await blocked_by(world, role) == []
        states = [(await world.alice_sees.next("block_changed"))["data"]["blocked"] for _ in range(2)]
        assert states == [True, False]  # the stage's block, then this unblock


async def check_blocked_users(world: World, role: str, data: dict[str, Any]) -> None:
    assert data["blockedUsers"] == ([world.dave.id] if role == "participant" else [])


BLOCK_USER = "mutation($u: ID!, $b: ID) { blockUser(userId: $u, blockerId: $b) }"


def add_target(world: World, role: str) -> dict[str, Any]:
    """Members and services add dave; an outsider tries to add themselves."""
    outsider = {"non_participant": world.mallory, "someone_elses_token": world.bob}.get(role)
    return {"c": world.v, "u": (outsider or world.dave).id}


GRAPHQL_OPERATIONS: dict[str, GqlOperation] = {
    "Query.me": GqlOperation("{ me { id email } }", no_vars, check_me),
    "Query.myChats": GqlOperation(
        "{ myChats { id name participants { email } lastMessage { content } } }", no_vars, check_my_chats
    ),
    "Query.chatStatus": GqlOperation(
        "{ chatStatus { totalOnlineUsers chats { chatId onlineUserIds typingUserIds usersCount } } }",
        no_vars,
        check_chat_status,
        stage=both_type_in_v,
    ),
    "Query.chat": GqlOperation(
        "query($c: ID!) { chat(id: $c) { id name participants { email } lastMessage { content } } }", on_v, check_chat
    ),
    "Query.messages": GqlOperation(
        "query($c: ID!) { messages(chatId: $c) { content sender { id } } }", on_v, check_messages
    ),
    "Query.eventCursor": GqlOperation("{ eventCursor }", no_vars, check_event_cursor),
    "Query.onlineUsers": GqlOperation("{ onlineUsers }", no_vars, check_online_users),
    "Query.isUserOnline": GqlOperation(
        "query($u: ID!) { isUserOnline(userId: $u) }", lambda w, r: {"u": w.alice.id}, check_is_user_online
    ),
    "Mutation.sendMessage": GqlOperation(
        'mutation($c: ID!) { sendMessage(chatId: $c, content: "from the matrix") { chatId content } }',
        on_v,
        check_send_message,
    ),
    "Mutation.markRead": GqlOperation(
        "mutation($c: ID!) { markRead(chatId: $c) { chatId userId lastReadSeq } }", on_v, check_mark_read
    ),
    "Mutation.setTyping": GqlOperation(
        "mutation($c: ID!) { setTyping(chatId: $c, isTyping: true) }", on_v, check_set_typing
    ),
    "Mutation.refreshToken": GqlOperation(
        "mutation($t: String!) { refreshToken(token: $t) }", lambda w, r: {"t": w.alice.token}, check_me
    ),
    "Mutation.createChat": GqlOperation(
        'mutation($m: [ID!]!) { createChat(memberIds: $m, name: "fresh", isGroup: true) { id name participants { id } } }',
        lambda w, r: {"m": [w.carol.id]},
        check_create_chat,
    ),
    "Mutation.addChatMember": GqlOperation(
        "mutation($c: ID!, $u: ID!) { addChatMember(chatId: $c, userId: $u) { id participants { id } } }",
        add_target,
        check_add_member,
    ),
    "Mutation.removeChatMember": GqlOperation(
        "mutation($c: ID!, $u: ID!) { removeChatMember(chatId: $c, userId: $u) }",
        lambda w, r: {"c": w.v, "u": w.carol.id},
        check_remove_member,
    ),
    "Mutation.leaveChat": GqlOperation("mutation($c: ID!) { leaveChat(chatId: $c) }", on_v, check_leave_chat),
    "Mutation.blockUser": GqlOperation(BLOCK_USER, block_target, check_block_user),
    "Mutation.unblockUser": GqlOperation(
        "mutation($u: ID!, $b: ID) { unblockUser(userId: $u, blockerId: $b) }",
        block_target,
        check_unblock_user,
        stage=alice_blocks_dave,
    ),
    "Query.blockedUsers": GqlOperation("{ blockedUsers }", no_vars, check_blocked_users, stage=alice_blocks_dave),
    "Mutation.upsertUser": GqlOperation(
        "mutation($id: ID, $e: String!) { upsertUser(id: $id, email: $e) { id email } }",
        lambda w, r: {"id": w.alice.id, "e": f"renamed-{w.tag}@example.test"},
        check_upsert_user,
    ),
    "Mutation.notifyChatParticipants": GqlOperation(
        "mutation($c: ID!, $n: JSON!) { notifyChatParticipants(chatId: $c, notification: $n) }",
        lambda w, r: {"c": w.v, "n": {"from": "matrix"}},
        check_notify_chat,
    ),
    "Mutation.sendGlobalNotification": GqlOperation(
        "mutation($u: ID!, $n: JSON!) { sendGlobalNotification(userId: $u, notification: $n) }",
        lambda w, r: {"u": w.alice.id, "n": {"from": "matrix"}},
        check_global_notification,
    ),
    "Mutation.editMessage": GqlOperation(
        'mutation($m: ID!) { editMessage(id: $m, content: "edited by the matrix") { id content editedAt } }',
        on_first,
        check_edit_message,
    ),
    "Mutation.deleteMessage": GqlOperation(
        "mutation($m: ID!) { deleteMessage(id: $m) { id content deletedAt } }", on_first, check_delete_message
    ),
    "Mutation.addReaction": GqlOperation(ADD_REACTION, on_first, check_add_reaction),
    "Mutation.removeReaction": GqlOperation(
        'mutation($m: ID!) { removeReaction(messageId: $m, emoji: "👍") { id reactions { emoji count reactedByMe } } }',
        on_first,
        check_remove_reaction,
        stage=alice_reacts,
    ),
    "Subscription.chatEvents": GqlOperation(CHAT_EVENTS, no_vars, check_me),  # run by chat_events_cell
}


GRAPHQL_CELLS = [pytest.param(op, role, id=f"{op}-{role}") for op, cells in GRAPHQL_MATRIX.items() for role in cells]


@pytest.mark.parametrize(("operation", "role"), GRAPHQL_CELLS)
async def test_graphql_operation_for_caller(pooled: PooledApi, operation: str, role: str) -> None:
    expected = GRAPHQL_MATRIX[operation][role]
    world = await World(pooled).build()
    caller = world.caller(role)
    # The caller's own stream, to see what reaches them besides the answer.
    own = await world.observe(caller) if role in ("non_participant", "someone_elses_token") and caller else None
    try:
        if operation == "Subscription.chatEvents":
            await chat_events_cell(world, role, expected)
        else:
            await http_cell(world, operation, role, expected)
        if own is not None:
            heard = await own.marker(f"own-{uuid.uuid4()}")
            request = json.dumps(GRAPHQL_OPERATIONS[operation].variables(world, role))
            assert_no_secret(json.dumps(heard), world.secrets(role, request), f"{role}'s own stream")
        if expected != OK:
            await assert_quiet(world, world.alice_sees, world.carol_sees, *([own] if own else []))
            await world.assert_unchanged()
    finally:
        await world.close()


async def http_cell(world: World, operation: str, role: str, expected: str) -> None:
    op = GRAPHQL_OPERATIONS[operation]
    variables = op.variables(world, role)
    if op.stage is not None and expected == OK:
        await op.stage(world)
    body = await world.api.post(op.document, variables, token=world.token(role))
    if role not in ("participant", "service_token"):
        assert_no_secret(
            json.dumps(body), world.secrets(role, json.dumps(variables)), f"{operation} answered to {role}"
        )
    if expected == OK:
        assert not body.get("errors"), body
        await op.ok(world, role, body["data"])
        return
    assert body.get("errors"), f"{operation} by {role}: expected {expected}, got {body}"
    assert [e["extensions"]["code"] for e in body["errors"]] == [expected], body["errors"]
    assert not any((body.get("data") or {}).values()), body  # no data, or the nullable field null


async def chat_events_cell(world: World, role: str, expected: str) -> None:
    """chatEvents over graphql-transport-ws: refused at init, a stream of V's events, or none of them."""
    if expected == REFUSED_4403 or expected == SUBSCRIBE_FORBIDDEN:
        token = world.token(role)
        async with connect(f"{world.api.server.ws_url}/graphql", subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token} if token else {}}))
            received, code = await read_until_closed_or(ws, "connection_ack")
            if expected == REFUSED_4403:
                assert code == 4403 and received == [], (code, received)
                return
            assert [m["type"] for m in received] == ["connection_ack"], received
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": CHAT_EVENTS}}))
            received, code = await read_until_closed_or(ws, "error", "complete")
        assert code is None, f"the socket was closed ({code}) instead of refusing the subscription"
        # Refused either with an `error` message, or with one `next` carrying the error and no data, then `complete`.
        assert all(m["id"] == "1" for m in received), received
        if received[0]["type"] == "error":
            errors = received[0]["payload"]
        else:
            assert [m["type"] for m in received] == ["next", "complete"], received
            assert received[0]["payload"]["data"] is None, received
            errors = received[0]["payload"]["errors"]
        assert [e["extensions"]["code"] for e in errors] == [FORBIDDEN], received
        return

    caller = world.caller(role)
    assert caller is not None and expected == OK
    sub = await Subscriber(world.api, caller).start()
    try:
        # Everything that can happen in V, by its members.
        await world.api.send(world.carol, world.v, "while you listen")
        await world.api.data(
            "mutation($c: ID!) { setTyping(chatId: $c, isTyping: true) }", {"c": world.v}, token=world.carol.token
        )
        await world.api.data(
            "mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }", {"c": world.v}, token=world.carol.token
        )
        if role == "participant":
            seen = await sub.collect_until(lambda e: e["__typename"] == "MessagesRead")
            assert [e["__typename"] for e in seen if e.get("chatId") == world.v] == [
                "NewMessage",
                "UserTyping",
                "MessagesRead",
            ]
            assert seen[0]["message"]["content"] == "while you listen"
        else:
            heard = await sub.marker(f"outsider-{uuid.uuid4()}")
            assert heard == [], f"{role} received events of a chat they are not in: {heard}"
    finally:
        await sub.close()


async def read_until_closed_or(ws: Any, *message_types: str) -> tuple[list[dict[str, Any]], int | None]:
    """Messages up to the first of `message_types` (close code None), or up to the server's close (its code)."""
    received: list[dict[str, Any]] = []
    try:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))
            received.append(message)
            if message["type"] in message_types:
                return received, None
    except ConnectionClosed as closed:
        return received, closed.rcvd.code if closed.rcvd else None


# -- legacy commands ----------------------------------------------------------------------------------

LegacyCheck = Callable[[World, LegacyClient], Awaitable[None]]


async def legacy_get_my_chats(world: World, client: LegacyClient) -> None:
    chats = {c["id"]: c for c in (await client.next("my_chats"))["data"]["chats"]}
    assert set(chats) == {world.v, world.w}
    assert chats[world.v]["name"] == world.name and chats[world.v]["last_message"] == world.content
    assert {p["email"] for p in chats[world.v]["participants"]} == {world.alice.email, world.carol.email}


async def legacy_get_chat_status(world: World, client: LegacyClient) -> None:
    chats = {c["chat_id"]: c for c in (await client.next("chat_status"))["data"]["chats"]}
    assert set(chats) == {world.v, world.w}
    assert chats[world.v] == {
        "chat_id": world.v,
        "online_users": [world.carol.id],
        "typing_users": [],
        "users_count": 2,
    }


async def legacy_send_message(world: World, client: LegacyClient) -> None:
    for observer in (client, world.carol_sees):
        frame = await observer.next("new_message")
        assert frame["data"]["chat_id"] == world.v and frame["data"]["content"] == "from the matrix"


async def legacy_typing(world: World, client: LegacyClient) -> None:
    assert (await world.carol_sees.next("user_typing"))["data"] == {"chat_id": world.v, "user_id": world.alice.id}


async def legacy_mark_read(world: World, client: LegacyClient) -> None:
    frame = await world.carol_sees.next("messages_read")
    assert frame["data"] == {"chat_id": world.v, "user_id": world.alice.id, "last_read_seq": world.first["seq"]}


async def legacy_join_chat(world: World, client: LegacyClient) -> None:
    assert (await world.carol_sees.next("user_joined"))["data"] == {"chat_id": world.v, "user_id": world.alice.id}


async def legacy_leave_chat(world: World, client: LegacyClient) -> None:
    assert (await world.carol_sees.next("user_left"))["data"] == {"chat_id": world.v, "user_id": world.alice.id}


async def legacy_get_messages(world: World, client: LegacyClient) -> None:
    data = (await client.next("messages"))["data"]
    assert data["chat_id"] == world.v
    assert [(m["content"], m["sender"]["email"]) for m in data["messages"]] == [(world.content, world.alice.email)]


async def legacy_refresh_token(world: World, client: LegacyClient) -> None:
    assert (await client.next("token_refreshed"))["data"]["expires_at"]


async def legacy_edit_message(world: World, client: LegacyClient) -> None:
    for observer in (client, world.carol_sees):
        frame = await observer.next("message_edited")
        assert frame["data"]["message_id"] == world.first["id"] and frame["data"]["content"] == "edited by the matrix"


async def legacy_delete_message(world: World, client: LegacyClient) -> None:
    for observer in (client, world.carol_sees):
        frame = await observer.next("message_deleted")
        assert frame["data"]["message_id"] == world.first["id"] and frame["data"]["deleted_by"] == world.alice.id


async def legacy_add_reaction(world: World, client: LegacyClient) -> None:
    for observer in (client, world.carol_sees):
        frame = await observer.next("reaction_changed")
        assert frame["data"]["counts"] == [{"emoji": "👍", "count": 1}] and frame["data"]["user_id"] == world.alice.id


async def legacy_remove_reaction(world: World, client: LegacyClient) -> None:
    """Alice had no reaction: nothing changed, nothing is heard; once she has one, removing it is heard."""
    assert await client.marker(f"no-op-{uuid.uuid4()}") == []
    await alice_reacts(world)
    await client.send("remove_reaction", {"message_id": world.first["id"], "emoji": "👍"})
    changes = [await world.carol_sees.next("reaction_changed") for _ in range(2)]
    assert [(f["data"]["added"], f["data"]["counts"]) for f in changes] == [
        (True, [{"emoji": "👍", "count": 1}]),
        (False, []),
    ]


async def legacy_exit_chat(world: World, client: LegacyClient) -> None:
    for observer in (client, world.carol_sees):
        frame = await observer.next("member_removed")
        assert frame["data"] == {"chat_id": world.v, "user_id": world.alice.id, "removed_by": world.alice.id}


async def legacy_block_user(world: World, client: LegacyClient) -> None:
    assert (await client.next("blocked_users"))["data"] == {"user_ids": [world.dave.id]}
    change = await world.alice_sees.next("block_changed")  # alice's other connection
    assert change["data"] == {"user_id": world.alice.id, "blocked_user_id": world.dave.id, "blocked": True}


def legacy_blocked_users(expected: list[str]) -> LegacyCheck:
    async def check(world: World, client: LegacyClient) -> None:
        assert (await client.next("blocked_users"))["data"] == {"user_ids": expected}

    return check


# The replies of the commands an outsider may send (about themselves only).
OWN_REPLIES = {
    "get_my_chats": "my_chats",
    "get_chat_status": "chat_status",
    "block_user": "blocked_users",
    "unblock_user": "blocked_users",
    "get_blocked_users": "blocked_users",
}


# command -> (its data, aimed at V; what the participant must then see)
LEGACY_COMMANDS: dict[str, tuple[Callable[[World], dict[str, Any]], LegacyCheck]] = {
    "get_my_chats": (lambda w: {}, legacy_get_my_chats),
    "get_chat_status": (lambda w: {}, legacy_get_chat_status),
    "send_message": (lambda w: {"chat_id": w.v, "content": "from the matrix"}, legacy_send_message),
    "typing": (lambda w: {"chat_id": w.v, "is_typing": True}, legacy_typing),
    "mark_read": (lambda w: {"chat_id": w.v}, legacy_mark_read),
    "join_chat": (lambda w: {"chat_id": w.v}, legacy_join_chat),
    "leave_chat": (lambda w: {"chat_id": w.v}, legacy_leave_chat),
    "get_messages": (lambda w: {"chat_id": w.v}, legacy_get_messages),
    "refresh_token": (lambda w: {"token": w.alice.token}, legacy_refresh_token),
    "exit_chat": (lambda w: {"chat_id": w.v}, legacy_exit_chat),
    "block_user": (lambda w: {"user_id": w.dave.id}, legacy_block_user),
    "unblock_user": (lambda w: {"user_id": w.dave.id}, legacy_blocked_users([])),
    "get_blocked_users": (lambda w: {}, legacy_blocked_users([])),
    "edit_message": (lambda w: {"message_id": w.first["id"], "content": "edited by the matrix"}, legacy_edit_message),
    "delete_message": (lambda w: {"message_id": w.first["id"]}, legacy_delete_message),
    "add_reaction": (lambda w: {"message_id": w.first["id"], "emoji": "👍"}, legacy_add_reaction),
    "remove_reaction": (lambda w: {"message_id": w.first["id"], "emoji": "👍"}, legacy_remove_reaction),
}

LEGACY_CELLS = [pytest.param(cmd, role, id=f"{cmd}-{role}") for cmd, cells in LEGACY_MATRIX.items() for role in cells]


@pytest.mark.parametrize(("command", "role"), LEGACY_CELLS)
async def test_legacy_command_for_caller(pooled: PooledApi, command: str, role: str) -> None:
    expected = LEGACY_MATRIX[command][role]
    world = await World(pooled).build()
    data, participant_sees = LEGACY_COMMANDS[command]
    try:
        if expected == REFUSED_1008:
            await refused_legacy_cell(world, role, command, data(world))
        else:
            caller = world.caller(role)
            assert caller is not None
            client = await world.observe(caller)
            await client.send(command, data(world))
            if role == "participant":
                assert expected == OK
                await participant_sees(world, client)
            else:
                await outsider_legacy_answer(world, client, command, expected)
        if expected != OK or role != "participant":
            await assert_quiet(world, world.alice_sees, world.carol_sees)
            await world.assert_unchanged()
    finally:
        await world.close()


async def outsider_legacy_answer(world: World, client: LegacyClient, command: str, expected: str) -> None:
    """Mallory's own connection: the exact answer, and nothing else of V before a marker."""
    # Her own block list changing is announced to her connections before the reply.
    answer = await client.next(OWN_REPLIES[command] if expected == OK else None)
    if expected == OK:
        assert answer["type"] == OWN_REPLIES[command], answer
        if answer["type"] == "blocked_users":
            assert answer["data"] == {"user_ids": [world.dave.id] if command == "block_user" else []}, answer
        else:
            assert answer["data"]["chats"] == [], answer  # mallory is in no chat
    else:
        assert answer["type"] == "error" and answer["data"]["code"] == expected, answer
    heard = await client.marker(f"outsider-{uuid.uuid4()}")
    assert heard == [], heard
    assert_no_secret(json.dumps(answer), world.secrets("non_participant"), f"{command} answered to mallory")


async def refused_legacy_cell(world: World, role: str, command: str, data: dict[str, Any]) -> None:
    """A socket on alice's URL with another user's, an expired, no, or a service token: closed with 1008 before
    anything is served, even if the client sends its command at once."""
    token = world.token(role)
    url = f"{world.api.server.ws_url}/websocket/ws/{world.alice.id}" + (f"?token={token}" if token else "")
    received: list[str] = []
    async with connect(url) as ws:
        try:
            await ws.send(json.dumps({"type": command, "data": data}))
            while True:
                received.append(str(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT)))
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
    assert code == 1008 and received == [], (code, received)
