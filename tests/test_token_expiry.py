"""A socket lives no longer than its token: closed with 4401 "token expired" when the token expires (plus the
leeway, TOKEN_LEEWAY), on the legacy endpoint and on both GraphQL subprotocols — unless the client hands over a
fresh token for the same user on the open socket (legacy `refresh_token`, GraphQL `refreshToken`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import websockets

from services.auth import issue_user_token
from tests.legacy_client import LegacyClient
from tests.support import EVENT_TIMEOUT, SECRET, Api, Server, User, sqlite_server

LEEWAY = 0.5
LIFETIME = 2.0  # seconds a short-lived token lasts
REFRESH = "mutation($t: String!) { refreshToken(token: $t) }"


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with sqlite_server(tmp_path_factory.mktemp("expiry"), {"TOKEN_LEEWAY": str(LEEWAY)}) as server:
        yield server


def short_token(user: User, seconds: float = LIFETIME) -> str:
    return issue_user_token(user.id, key=SECRET, ttl=timedelta(seconds=seconds))


async def _closed(ws: Any, timeout: float = LIFETIME + LEEWAY + EVENT_TIMEOUT) -> tuple[int | None, str | None]:
    await asyncio.wait_for(ws.wait_closed(), timeout)
    return ws.close_code, ws.close_reason


# -- legacy ------------------------------------------------------------------------------------------------


async def test_legacy_socket_closes_when_its_token_expires(short: Server) -> None:
    api = Api(short)
    alice = await api.new_user("alice")
    opened = time.monotonic()
    client = await LegacyClient(api, alice, token=short_token(alice)).connect()
    await client.ready()
    assert await client.wait_closed(LIFETIME + LEEWAY + EVENT_TIMEOUT) == 4401
    assert client.close_reason == "token expired"
    assert LIFETIME - 0.5 < time.monotonic() - opened < LIFETIME + LEEWAY + 2


async def test_legacy_refresh_token_keeps_the_socket_open(short: Server) -> None:
    api = Api(short)
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    opened = time.monotonic()
    client = await LegacyClient(api, alice, token=short_token(alice)).connect()
    await client.ready()
    # not valid, or another user's: refused, and the socket keeps its old expiry for now
    await client.send("refresh_token", {"token": "not-a-token"})
    assert (await client.next("error"))["data"]["code"] == "UNAUTHENTICATED"
    await client.send("refresh_token", {"token": bob.token})
    assert (await client.next("error"))["data"]["code"] == "FORBIDDEN"
    await client.send("refresh_token", {"token": api.token(alice.id, ttl=timedelta(minutes=5))})
    refreshed = await client.next("token_refreshed")
    expires_at = datetime.fromisoformat(refreshed["data"]["expires_at"])
    assert timedelta(minutes=4) < expires_at - datetime.now(expires_at.tzinfo) <= timedelta(minutes=5)
    # past the first token's expiry (and the leeway) the socket still serves and streams
    while time.monotonic() - opened < LIFETIME + LEEWAY + 1:
        await client.request("get_chat_status", reply="chat_status")
        await asyncio.sleep(0.2)
    await api.send(bob, chat_id, "still here")
    assert (await client.next("new_message"))["data"]["content"] == "still here"
    assert client.close_code is None
    await client.close()


async def test_legacy_refusals_do_not_extend_the_socket(short: Server) -> None:
    api = Api(short)
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    client = await LegacyClient(api, alice, token=short_token(alice)).connect()
    await client.ready()
    await client.send("refresh_token", {"token": short_token(bob, 300)})
    assert (await client.next("error"))["data"]["code"] == "FORBIDDEN"
    assert await client.wait_closed(LIFETIME + LEEWAY + EVENT_TIMEOUT) == 4401


# -- GraphQL -----------------------------------------------------------------------------------------------


async def _graphql(api: Api, token: str, subprotocol: str) -> Any:
    ws = await websockets.connect(f"{api.server.ws_url}/graphql", subprotocols=[subprotocol])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))["type"] == "connection_ack"
    return ws


def _operation(subprotocol: str, op_id: str, query: str, variables: dict[str, Any] | None = None) -> str:
    kind = "subscribe" if subprotocol == "graphql-transport-ws" else "start"
    return json.dumps({"id": op_id, "type": kind, "payload": {"query": query, "variables": variables or {}}})


async def _result(ws: Any, op_id: str) -> dict[str, Any]:
    """The payload of the next result (`next` / `data`) or error of operation `op_id`."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))
        if message.get("id") == op_id and message["type"] in ("next", "data", "error"):
            return message


SUBPROTOCOLS = ["graphql-transport-ws", "graphql-ws"]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_graphql_socket_closes_when_its_token_expires(short: Server, subprotocol: str) -> None:
    api = Api(short)
    alice = await api.new_user("alice")
    opened = time.monotonic()
    ws = await _graphql(api, short_token(alice), subprotocol)
    await ws.send(_operation(subprotocol, "events", "subscription { chatEvents { __typename } }"))
    code, reason = await _closed(ws)
    assert (code, reason) == (4401, "token expired")
    assert LIFETIME - 0.5 < time.monotonic() - opened < LIFETIME + LEEWAY + 2


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_graphql_refresh_token_keeps_the_socket_and_its_subscription(short: Server, subprotocol: str) -> None:
    api = Api(short)
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    opened = time.monotonic()
    ws = await _graphql(api, short_token(alice), subprotocol)
    await ws.send(_operation(subprotocol, "events", "subscription { chatEvents { __typename } }"))
    # another user's token is refused
    await ws.send(_operation(subprotocol, "r1", REFRESH, {"t": bob.token}))
    refused = await _result(ws, "r1")
    errors = refused["payload"]["errors"] if refused["type"] in ("next", "data") else refused["payload"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN", refused
    await ws.send(_operation(subprotocol, "r2", REFRESH, {"t": api.token(alice.id, ttl=timedelta(minutes=5))}))
    answer = await _result(ws, "r2")
    expires_at = datetime.fromisoformat(answer["payload"]["data"]["refreshToken"])
    assert timedelta(minutes=4) < expires_at - datetime.now(expires_at.tzinfo) <= timedelta(minutes=5)
    # past the first token's expiry, the subscription still delivers
    await asyncio.sleep(max(0.0, opened + LIFETIME + LEEWAY + 1 - time.monotonic()))
    await api.notify_user(alice.id, {"after": "expiry"})
    event = await _result(ws, "events")
    assert event["payload"]["data"]["chatEvents"]["__typename"] == "GlobalNotification"
    await ws.close()


async def test_refresh_token_over_http_is_a_bad_request(short: Server) -> None:
    api = Api(short)
    alice = await api.new_user("alice")
    assert await api.error_code(REFRESH, {"t": alice.token}, token=alice.token) == "BAD_REQUEST"
