"""Tokens an attacker would try, against a live server: a user token that also claims to be a service, claims of
the wrong type, tokens from the future or for year 9999, a `user_id` and `sub` that disagree; and a server
started with a short `SECRET_KEY`. Each is refused on HTTP, on the legacy endpoint and on GraphQL WebSockets."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import jwt
import pytest
import websockets

from tests.support import EVENT_TIMEOUT, ROOT, SECRET, Api, User, free_port

DAY = 86400
UPSERT = "mutation($id: ID, $e: String!) { upsertUser(id: $id, email: $e) { id email } }"


def sign(**claims: Any) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def user_claims(user: User, **more: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"user_id": user.id, "iat": now, "exp": now + 3600, **more}


async def refused_everywhere(api: Api, user: User, token: str, reason: str) -> None:
    """HTTP: UNAUTHENTICATED with `reason` in the message; legacy: close 1008; graphql-transport-ws: 4403."""
    body = await api.post("{ me { id } }", token=token)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
    assert reason in body["errors"][0]["message"], body
    async with websockets.connect(f"{api.server.ws_url}/websocket/ws/{user.id}?token={token}") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT)
        assert ws.close_code == 1008
        assert reason in (ws.close_reason or "")
    async with websockets.connect(f"{api.server.ws_url}/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT)
        assert ws.close_code == 4403


async def accepted(api: Api, user: User, token: str) -> None:
    assert (await api.data("{ me { id } }", token=token))["me"]["id"] == user.id


async def test_a_user_token_claiming_the_service_role_is_refused(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    confused = sign(**user_claims(alice, role="service"))
    await refused_everywhere(api, alice, confused, "service token carries no user")
    # above all, it cannot rewrite another user's email
    body = await api.post(UPSERT, {"id": bob.id, "e": "mallory@example.test"}, token=confused)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    also_sub = sign(role="service", sub=alice.id, exp=int(time.time()) + 3600)
    body = await api.post(UPSERT, {"id": bob.id, "e": "mallory@example.test"}, token=also_sub)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    me = await api.data("{ me { email } }", token=bob.token)
    assert me["me"]["email"] == bob.email
    # a real service token still provisions
    assert (await api.data(UPSERT, {"id": bob.id, "e": bob.email}, token=api.service_token))["upsertUser"]


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
async def test_time_claims_must_be_numbers(api: Api, claim: str) -> None:
    alice = await api.new_user("alice")
    claims = user_claims(alice)
    claims[claim] = str(claims.get(claim, int(time.time())))  # "1764000000": PyJWT alone would take it
    await refused_everywhere(api, alice, sign(**claims), "invalid token")


@pytest.mark.parametrize("claim", ["iat", "nbf"])
async def test_a_token_from_the_future_is_refused_beyond_the_leeway(api: Api, claim: str) -> None:
    alice = await api.new_user("alice")
    now = int(time.time())
    await refused_everywhere(api, alice, sign(**user_claims(alice, **{claim: now + 600})), "not yet valid")
    await accepted(api, alice, sign(**user_claims(alice, **{claim: now + 5})))  # a clock a little ahead


async def test_token_lifetime_is_capped(api: Api) -> None:
    alice = await api.new_user("alice")
    now = int(time.time())
    year_9999 = sign(user_id=alice.id, exp=253402300799)
    await refused_everywhere(api, alice, year_9999, "TOKEN_MAX_LIFETIME")
    eight_days = sign(user_id=alice.id, iat=now, exp=now + 8 * DAY)
    await refused_everywhere(api, alice, eight_days, "TOKEN_MAX_LIFETIME")
    # an old token whose remaining life is short, but whose whole life was too long: refused too
    old = sign(user_id=alice.id, iat=now - 30 * DAY, exp=now + 3600)
    await refused_everywhere(api, alice, old, "TOKEN_MAX_LIFETIME")
    await accepted(api, alice, sign(user_id=alice.id, iat=now, exp=now + 7 * DAY))
    await accepted(api, alice, sign(user_id=alice.id, exp=now + 6 * DAY))  # no iat: counted from now


async def test_user_id_and_sub_must_agree(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    await refused_everywhere(api, alice, sign(**user_claims(alice, sub=bob.id)), "user_id and sub disagree")
    await accepted(api, alice, sign(**user_claims(alice, sub=alice.id.upper())))
    now = int(time.time())
    await accepted(api, alice, sign(sub=alice.id, exp=now + 3600))


async def test_a_token_in_the_url_is_not_taken_over_http(api: Api) -> None:
    alice = await api.new_user("alice")
    import httpx

    async with httpx.AsyncClient(timeout=EVENT_TIMEOUT) as client:
        response = await client.post(f"{api.server.url}/graphql?token={alice.token}", json={"query": "{ me { id } }"})
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def _start(command: list[str], secret: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SECRET_KEY": secret, "DATABASE_URL": "sqlite+aiosqlite:///:memory:"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("how", ["cli", "uvicorn"])
def test_a_short_secret_key_stops_start_up_with_a_clear_message(how: str) -> None:
    port = str(free_port())
    command = {
        "cli": [sys.executable, "cli.py", "serve", "--port", port],
        "uvicorn": [sys.executable, "-m", "uvicorn", "app:app", "--port", port],
    }[how]
    done = _start(command, "fifteen-bytes!!")
    assert done.returncode != 0
    assert "SECRET_KEY: expected at least 32 bytes" in done.stderr, done.stderr
    assert "got 15" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_tokens_are_issued_within_the_maximum_lifetime() -> None:
    done = _start([sys.executable, "cli.py", "token", str(uuid.uuid4()), "--days", "30"], SECRET)
    assert done.returncode == 2 and "TOKEN_MAX_LIFETIME" in done.stderr, done.stderr
    done = _start([sys.executable, "cli.py", "service-token", "--days", "8"], SECRET)
    assert done.returncode == 2 and "TOKEN_MAX_LIFETIME" in done.stderr, done.stderr
