"""The GraphQL API over HTTP (docs/configuration.md "Tokens", docs/protocols.md): tokens, provisioning, chats, unread counts, history, and
authentication of subscriptions, against the real server on each database."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from services.auth import issue_user_token
from tests.support import EVENT_TIMEOUT, LEGACY_GRAPHQL_WS, TRANSPORT_WS, Api, Subscriber, User

ME = "{ me { id email } }"
MY_CHATS = """{ myChats { id name isGroup unreadCount participants { id email }
                          lastMessage { id content seq sender { id email } } } }"""


async def my_chat(api: Api, user: User, chat_id: str) -> dict[str, Any]:
    chats = (await api.data(MY_CHATS, token=user.token))["myChats"]
    matching = [c for c in chats if c["id"] == chat_id]
    assert len(matching) == 1, f"{user} should see chat {chat_id} once in myChats, got {chats}"
    return matching[0]


async def unread(api: Api, user: User, chat_id: str) -> int:
    count: int = (await my_chat(api, user, chat_id))["unreadCount"]
    return count


async def mark_read(api: Api, user: User, chat_id: str) -> dict[str, Any]:
    data = await api.data(
        "mutation($c: ID!) { markRead(chatId: $c) { chatId userId lastReadSeq } }", {"c": chat_id}, token=user.token
    )
    marker: dict[str, Any] = data["markRead"]
    return marker


# -- service token and provisioning ----------------------------------------------------------------


async def test_service_token_provisions_users_and_updates_them_in_place(api: Api) -> None:
    user_id = str(uuid.uuid4())
    upsert = "mutation($id: ID, $e: String!, $i: String) { upsertUser(id: $id, email: $e, imageUrl: $i) { id email imageUrl } }"
    created = await api.data(upsert, {"id": user_id, "e": "first@example.test", "i": None}, token=api.service_token)
    assert created["upsertUser"] == {"id": user_id, "email": "first@example.test", "imageUrl": None}

    updated = await api.data(
        upsert, {"id": user_id, "e": "second@example.test", "i": "https://img.test/a.png"}, token=api.service_token
    )
    assert updated["upsertUser"] == {
        "id": user_id,
        "email": "second@example.test",
        "imageUrl": "https://img.test/a.png",
    }

    me = await api.data(ME, token=api.token(user_id))
    assert me["me"] == {"id": user_id, "email": "second@example.test"}


async def test_service_token_creates_a_group_chat_its_members_see(api: Api) -> None:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    data = await api.data(
        'mutation($m: [ID!]!) { createChat(memberIds: $m, name: "from the main app", isGroup: true) '
        "{ id name isGroup participants { id } } }",
        {"m": [alice.id, bob.id, carol.id]},
        token=api.service_token,
    )
    chat = data["createChat"]
    assert chat["name"] == "from the main app"
    assert chat["isGroup"] is True
    assert {p["id"] for p in chat["participants"]} == {alice.id, bob.id, carol.id}
    for user in (alice, bob, carol):
        seen = await my_chat(api, user, chat["id"])
        assert seen["name"] == "from the main app"


@pytest.mark.parametrize(
    ("operation", "variables"),
    [
        pytest.param(
            "mutation($id: ID, $e: String!) { upsertUser(id: $id, email: $e) { id } }",
            lambda target, chat_id: {"id": str(uuid.uuid4()), "e": "intruder@example.test"},
            id="upsertUser",
        ),
        pytest.param(
            "mutation($u: ID!, $n: JSON!) { sendGlobalNotification(userId: $u, notification: $n) }",
            lambda target, chat_id: {"u": target.id, "n": {"type": "spoof"}},
            id="sendGlobalNotification",
        ),
        pytest.param(
            "mutation($c: ID!, $n: JSON!) { notifyChatParticipants(chatId: $c, notification: $n) }",
            lambda target, chat_id: {"c": chat_id, "n": {"type": "spoof"}},
            id="notifyChatParticipants",
        ),
        pytest.param("{ onlineUsers }", lambda target, chat_id: {}, id="onlineUsers"),
        pytest.param(
            "query($u: ID!) { isUserOnline(userId: $u) }", lambda target, chat_id: {"u": target.id}, id="isUserOnline"
        ),
    ],
)
async def test_user_token_is_forbidden_from_service_operations(api: Api, operation: str, variables: Any) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    body = await api.post(operation, variables(bob, chat_id), token=alice.token)
    assert body.get("errors"), body
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert not body.get("data")


# -- createChat ------------------------------------------------------------------------------------


async def test_create_chat_with_a_user_token_adds_the_creator(api: Api) -> None:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    data = await api.data(
        'mutation($m: [ID!]!) { createChat(memberIds: $m, name: "pack") { id isGroup participants { id } } }',
        {"m": [bob.id, carol.id]},
        token=alice.token,
    )
    chat = data["createChat"]
    assert {p["id"] for p in chat["participants"]} == {alice.id, bob.id, carol.id}
    assert chat["isGroup"] is True
    await my_chat(api, alice, chat["id"])  # the creator sees it in their list


async def test_direct_chat_between_the_same_two_users_is_returned_not_duplicated(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    first = await api.new_chat(alice, bob)
    again = await api.new_chat(alice, bob)
    reverse = await api.new_chat(bob, alice)
    assert first == again == reverse

    # Naming oneself among the members changes nothing.
    data = await api.data(
        "mutation($m: [ID!]!) { createChat(memberIds: $m) { id } }", {"m": [alice.id, bob.id]}, token=alice.token
    )
    assert data["createChat"]["id"] == first

    for user in (alice, bob):
        chats = (await api.data(MY_CHATS, token=user.token))["myChats"]
        assert [c["id"] for c in chats] == [first]
        assert chats[0]["isGroup"] is False


async def test_concurrent_creations_of_one_direct_chat_return_one_chat(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    ids = await asyncio.gather(*(api.new_chat(*((alice, bob) if n % 2 else (bob, alice))) for n in range(8)))
    assert len(set(ids)) == 1, ids
    chats = (await api.data(MY_CHATS, token=alice.token))["myChats"]
    assert [c["id"] for c in chats] == [ids[0]]


# -- myChats: unread counts and last message -------------------------------------------------------


async def test_unread_counts_are_per_member_and_exclude_own_messages(api: Api) -> None:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    chat_id = await api.new_chat(alice, bob, carol, name="trail crew", is_group=True)
    await api.send(alice, chat_id, "a1")
    await api.send(alice, chat_id, "a2")
    await api.send(bob, chat_id, "b1")
    last = await api.send(carol, chat_id, "c1")
    assert last["seq"] == 4

    # Messages from the others count; one's own never do.
    assert await unread(api, alice, chat_id) == 2
    assert await unread(api, bob, chat_id) == 3
    assert await unread(api, carol, chat_id) == 3

    for user in (alice, bob, carol):
        last_message = (await my_chat(api, user, chat_id))["lastMessage"]
        assert last_message == {
            "id": last["id"],
            "content": "c1",
            "seq": 4,
            "sender": {"id": carol.id, "email": carol.email},
        }

    # Carol's read marker is hers alone.
    marker = await mark_read(api, carol, chat_id)
    assert marker == {"chatId": chat_id, "userId": carol.id, "lastReadSeq": 4}
    assert await unread(api, carol, chat_id) == 0
    assert await unread(api, alice, chat_id) == 2
    assert await unread(api, bob, chat_id) == 3

    # A new message counts for the others, not for its sender.
    await api.send(bob, chat_id, "b2")
    assert await unread(api, carol, chat_id) == 1
    assert await unread(api, alice, chat_id) == 3
    assert await unread(api, bob, chat_id) == 3
    assert (await my_chat(api, alice, chat_id))["lastMessage"]["content"] == "b2"


async def test_read_markers_show_every_members_last_read_seq_to_each_member(api: Api) -> None:
    """Read receipts after a reload: `Chat.readMarkers` holds what MessagesRead events said live."""
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    chat_id = await api.new_chat(alice, bob, carol, name="receipts", is_group=True)
    await api.send(alice, chat_id, "one")
    two = await api.send(alice, chat_id, "two")
    await mark_read(api, bob, chat_id)
    three = await api.send(alice, chat_id, "three")
    await mark_read(api, carol, chat_id)

    query = "query($c: ID!) { chat(id: $c) { readMarkers { chatId userId lastReadSeq } } }"
    expected = {(alice.id, 0), (bob.id, two["seq"]), (carol.id, three["seq"])}
    for viewer in (alice, bob, carol):
        markers = (await api.data(query, {"c": chat_id}, token=viewer.token))["chat"]["readMarkers"]
        assert {(m["userId"], m["lastReadSeq"]) for m in markers} == expected
        assert {m["chatId"] for m in markers} == {chat_id}
    mine = (await api.data("{ myChats { id readMarkers { userId lastReadSeq } } }", token=bob.token))["myChats"]
    assert {(m["userId"], m["lastReadSeq"]) for m in mine[0]["readMarkers"]} == expected


# -- a chat the user is not in ---------------------------------------------------------------------

NON_PARTICIPANT_OPERATIONS = {
    "sendMessage": 'mutation($c: ID!) { sendMessage(chatId: $c, content: "let me in") { id } }',
    "markRead": "mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }",
    "setTyping": "mutation($c: ID!) { setTyping(chatId: $c, isTyping: true) }",
    "chat": "query($c: ID!) { chat(id: $c) { id name participants { email } } }",
    "messages": "query($c: ID!) { messages(chatId: $c) { id content } }",
}


@pytest.mark.parametrize("operation", NON_PARTICIPANT_OPERATIONS)
async def test_non_participant_is_forbidden_and_learns_nothing_about_the_chat(api: Api, operation: str) -> None:
    alice, bob, eve = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("eve")
    chat_id = await api.new_chat(alice, bob, name="secret plans", is_group=True)
    await api.send(alice, chat_id, "top secret")
    query = NON_PARTICIPANT_OPERATIONS[operation]

    existing = await api.post(query, {"c": chat_id}, token=eve.token)
    missing = await api.post(query, {"c": str(uuid.uuid4())}, token=eve.token)

    for body in (existing, missing):
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
        assert not any((body.get("data") or {}).values()), body  # null data, or the nullable field null
    # The same refusal whether the chat exists or not.
    assert existing["errors"][0]["message"] == missing["errors"][0]["message"]
    assert existing["errors"][0]["extensions"] == missing["errors"][0]["extensions"]
    text = json.dumps(existing)
    for secret in ("secret plans", "top secret", alice.email, bob.email, "Traceback"):
        assert secret not in text

    # Nothing changed for the members.
    history = await api.data(
        "query($c: ID!) { messages(chatId: $c) { content sender { id } } }", {"c": chat_id}, token=bob.token
    )
    assert history["messages"] == [{"content": "top secret", "sender": {"id": alice.id}}]
    assert await unread(api, bob, chat_id) == 1


# -- authentication --------------------------------------------------------------------------------

BAD_TOKENS = {
    "missing": lambda api, user_id: None,
    "expired": lambda api, user_id: api.token(user_id, ttl=timedelta(seconds=-300)),
    "forged": lambda api, user_id: issue_user_token(user_id, key="other-key-the-server-never-saw-0123456789"),
    "garbage": lambda api, user_id: "not-a-jwt",
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_bad_token_over_http_is_unauthenticated(api: Api, kind: str) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    token = BAD_TOKENS[kind](api, alice.id)

    assert await api.error_code(ME, token=token) == "UNAUTHENTICATED"
    assert await api.error_code(MY_CHATS, token=token) == "UNAUTHENTICATED"
    code = await api.error_code(
        'mutation($c: ID!) { sendMessage(chatId: $c, content: "hi") { id } }', {"c": chat_id}, token=token
    )
    assert code == "UNAUTHENTICATED"
    history = await api.data("query($c: ID!) { messages(chatId: $c) { id } }", {"c": chat_id}, token=bob.token)
    assert history["messages"] == []


async def _recv_json(ws: ClientConnection, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def _closed_code(ws: ClientConnection, timeout: float = EVENT_TIMEOUT) -> tuple[int | None, list[dict[str, Any]]]:
    """Read until the server closes; the close code and the messages that came before it."""
    received = []
    try:
        while True:
            received.append(await _recv_json(ws, timeout))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), received


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_bad_token_on_graphql_transport_ws_is_refused_with_4403(api: Api, kind: str) -> None:
    alice = await api.new_user("alice")
    token = BAD_TOKENS[kind](api, alice.id)
    payload = {} if token is None else {"token": token}
    async with connect(f"{api.server.ws_url}/graphql", subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        code, received = await _closed_code(ws)
    assert code == 4403
    assert not any(m.get("type") == "connection_ack" for m in received), received


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_bad_token_on_legacy_graphql_ws_gets_connection_error_and_close(api: Api, kind: str) -> None:
    alice = await api.new_user("alice")
    token = BAD_TOKENS[kind](api, alice.id)
    payload = {} if token is None else {"token": token}
    async with connect(f"{api.server.ws_url}/graphql", subprotocols=[Subprotocol(LEGACY_GRAPHQL_WS)]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        code, received = await _closed_code(ws)
    assert [m["type"] for m in received] == ["connection_error"], received
    assert received[0]["payload"]["code"] == "UNAUTHENTICATED"
    assert "Traceback" not in json.dumps(received)
    assert code is not None  # the server closed the socket


async def test_valid_token_on_raw_graphql_transport_ws_is_acknowledged(api: Api) -> None:
    """The control for the refusals above: the same raw client with a good token is accepted."""
    alice = await api.new_user("alice")
    async with connect(f"{api.server.ws_url}/graphql", subprotocols=[Subprotocol(TRANSPORT_WS)]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": alice.token}}))
        assert (await _recv_json(ws))["type"] == "connection_ack"


# -- history ---------------------------------------------------------------------------------------

HISTORY = "query($c: ID!, $b: Int, $a: Int, $l: Int) { messages(chatId: $c, before: $b, after: $a, limit: $l) { seq content } }"


async def test_messages_pages_through_history_by_seq_ascending(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    for n in range(1, 8):
        await api.send(alice if n % 2 else bob, chat_id, f"m{n}")

    async def page(**args: int) -> list[int]:
        variables = {"c": chat_id, "b": args.get("before"), "a": args.get("after"), "l": args.get("limit")}
        if variables["l"] is None:
            del variables["l"]  # the schema default
        data = await api.data(HISTORY, variables, token=bob.token)
        messages = data["messages"]
        assert all(m["content"] == f"m{m['seq']}" for m in messages)
        return [m["seq"] for m in messages]

    assert await page() == [1, 2, 3, 4, 5, 6, 7]
    assert await page(limit=3) == [5, 6, 7]  # the newest, still ascending
    assert await page(before=5, limit=2) == [3, 4]  # the `limit` just before it
    assert await page(before=3, limit=10) == [1, 2]
    assert await page(before=1) == []
    assert await page(after=2, limit=3) == [3, 4, 5]
    assert await page(after=5) == [6, 7]
    assert await page(after=7) == []


# -- where a subscription's token travels ----------------------------------------------------------


async def test_subscription_accepts_bearer_authorization_in_connection_init(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    sub = Subscriber(api, alice, init_payload={"Authorization": f"Bearer {alice.token}"})
    await sub.start()  # ready(): a notification to alice arrives on it
    try:
        await api.send(bob, chat_id, "via connection_init Authorization")
        event = await sub.next("NewMessage")
        assert event["message"]["content"] == "via connection_init Authorization"
    finally:
        await sub.close()


SUBSCRIBE = {
    "id": "1",
    "type": "subscribe",
    "payload": {
        "query": "subscription { chatEvents { __typename ... on NewMessage { message { content } } "
        "... on GlobalNotification { payload } } }"
    },
}


async def _next_payload(ws: ClientConnection, deadline: float) -> dict[str, Any]:
    while True:
        message = await _recv_json(ws, max(0.01, deadline - time.monotonic()))
        if message["type"] == "next":
            event: dict[str, Any] = message["payload"]["data"]["chatEvents"]
            return event
        assert message["type"] in ("ping", "pong"), message


@pytest.mark.parametrize("where", ["query parameter", "upgrade header"])
async def test_subscription_accepts_token_on_the_websocket_upgrade(api: Api, where: str) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    url = f"{api.server.ws_url}/graphql"
    headers = {}
    if where == "query parameter":
        url += f"?token={alice.token}"
    else:
        headers["Authorization"] = f"Bearer {alice.token}"
    async with connect(url, subprotocols=[Subprotocol(TRANSPORT_WS)], additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert (await _recv_json(ws))["type"] == "connection_ack"
        await ws.send(json.dumps(SUBSCRIBE))
        # The subscription is live once a notification sent to alice arrives on it.
        deadline = time.monotonic() + EVENT_TIMEOUT
        while True:
            assert time.monotonic() < deadline, "the subscription never became live"
            await api.notify_user(alice.id, {"probe": where})
            try:
                event = await _next_payload(ws, min(deadline, time.monotonic() + 0.3))
            except TimeoutError:
                continue
            assert event == {"__typename": "GlobalNotification", "payload": {"probe": where}}
            break
        await api.send(bob, chat_id, f"token via {where}")
        deadline = time.monotonic() + EVENT_TIMEOUT
        event = await _next_payload(ws, deadline)
        while event["__typename"] == "GlobalNotification":  # a late probe
            event = await _next_payload(ws, deadline)
        assert event == {"__typename": "NewMessage", "message": {"content": f"token via {where}"}}


async def test_upsert_without_image_url_keeps_the_stored_image_and_null_clears_it(api: Api) -> None:
    user_id = str(uuid.uuid4())
    upsert = "mutation($id: ID, $e: String!, $i: String) { upsertUser(id: $id, email: $e, imageUrl: $i) { imageUrl } }"
    keep = "mutation($id: ID, $e: String!) { upsertUser(id: $id, email: $e) { email imageUrl } }"
    first = await api.data(
        upsert, {"id": user_id, "e": "img@example.test", "i": "https://img.test/a.png"}, token=api.service_token
    )
    assert first["upsertUser"]["imageUrl"] == "https://img.test/a.png"
    kept = await api.data(keep, {"id": user_id, "e": "new@example.test"}, token=api.service_token)
    assert kept["upsertUser"] == {"email": "new@example.test", "imageUrl": "https://img.test/a.png"}
    cleared = await api.data(upsert, {"id": user_id, "e": "new@example.test", "i": None}, token=api.service_token)
    assert cleared["upsertUser"]["imageUrl"] is None
