"""Subscriptions whose document was seen before skip Strawberry's per-operation machinery (resolvers.direct):
every answer stays what Strawberry's path gives — errors for bad documents and bad variables every time, each
subscription's own variables, refusals — through a real server; and what is remembered, as pure functions."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
import websockets
from graphql import FieldNode, FragmentDefinitionNode, OperationDefinitionNode, parse
from websockets.typing import Subprotocol

from resolvers import build_schema, direct
from tests.support import EVENT_TIMEOUT, TRANSPORT_WS, Api, User

# A text of this module alone, so that the first subscription in a test is the one that remembers it.
EVENTS = (
    "subscription DirectProbe($after: String) { chatEvents(after: $after) { __typename "
    "... on NewMessage { cursor message { content } } } }"
)


class Socket:
    """A graphql-transport-ws socket spoken by hand: the frames exactly as the server sends them."""

    def __init__(self, api: Api, token: str) -> None:
        self.api, self.token = api, token

    async def __aenter__(self) -> Socket:
        self.ws = await websockets.connect(
            f"{self.api.server.ws_url}/graphql", subprotocols=[Subprotocol(TRANSPORT_WS)]
        )
        await self.ws.send(json.dumps({"type": "connection_init", "payload": {"token": self.token}}))
        assert json.loads(await self.ws.recv()) == {"type": "connection_ack"}
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def subscribe(self, op_id: str, query: str = EVENTS, variables: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"query": query, "operationName": "DirectProbe" if query is EVENTS else None}
        if variables is not None:
            payload["variables"] = variables
        await self.ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))

    async def frame(self, *, skip: tuple[str, ...] = ("UserOnline", "UserOffline")) -> dict[str, Any]:
        """The next frame that is not a presence event."""
        while True:
            text = await asyncio.wait_for(self.ws.recv(), EVENT_TIMEOUT)
            if not any(f'"{name}"' in str(text) for name in skip):
                frame: dict[str, Any] = json.loads(text)
                return frame

    async def message(self, content: str) -> dict[str, Any]:
        """The next NewMessage with `content` (replayed or live)."""
        while True:
            frame = await self.frame()
            assert frame["type"] == "next", frame
            event: dict[str, Any] = frame["payload"]["data"]["chatEvents"]
            if event["__typename"] == "NewMessage" and event["message"]["content"] == content:
                return event


async def live(api: Api, sender: User, chat_id: str, socket: Socket, content: str) -> dict[str, Any]:
    """Send `content` and wait for it on `socket`: proves the socket's subscription is streaming."""
    await api.send(sender, chat_id, content)
    return await socket.message(content)


async def test_a_remembered_document_streams_with_each_subscriptions_own_variables(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with Socket(api, alice.token) as first:
        await first.subscribe("1")  # Strawberry's path: the document is remembered
        seen = await live(api, bob, chat_id, first, "one")
        await api.send(bob, chat_id, "two")
        await first.message("two")
        # The same text again, resuming after "one": its own `after`, so "two" is replayed, then live ones.
        async with Socket(api, alice.token) as second:
            await second.subscribe("r", variables={"after": seen["cursor"]})
            assert (await second.message("two"))["message"] == {"content": "two"}
            await live(api, bob, chat_id, second, "three")
            # Two subscriptions of it on one socket, and `complete` from the client ends only the one.
            await second.subscribe("s")
            await api.send(bob, chat_id, "four")
            fours = {(await second.frame())["id"] for _ in range(2)}
            assert fours == {"r", "s"}
            await second.ws.send(json.dumps({"id": "r", "type": "complete"}))
            for content in ("five", "six"):
                await api.send(bob, chat_id, content)
                frame = await second.frame()
                assert frame["id"] == "s", "only `s` streams after `r` was completed"
                assert frame["payload"]["data"]["chatEvents"]["message"] == {"content": content}


async def test_bad_variables_and_bad_documents_get_their_errors_every_time(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with Socket(api, alice.token) as socket:
        await socket.subscribe("ok")
        await live(api, bob, chat_id, socket, "remembered")
        answers = []
        for attempt in range(3):
            await socket.subscribe(f"bad-{attempt}", variables={"after": 5})
            answers.append(await socket.frame())
        assert [a["id"] for a in answers] == ["bad-0", "bad-1", "bad-2"]
        assert all(a["type"] == "error" for a in answers)
        assert len({json.dumps(a["payload"]) for a in answers}) == 1
        assert answers[0]["payload"][0]["extensions"]["code"] == "BAD_REQUEST"
        assert "$after" in answers[0]["payload"][0]["message"]

        invalid = "subscription { chatEvents { noSuchField } }"
        errors = []
        for attempt in range(2):
            await socket.subscribe(f"invalid-{attempt}", invalid)
            errors.append(await socket.frame())
        assert [e["type"] for e in errors] == ["error", "error"]
        assert errors[0]["payload"] == errors[1]["payload"]
        assert "noSuchField" in errors[0]["payload"][0]["message"]
        # The socket's remembered subscription still streams.
        await live(api, bob, chat_id, socket, "still streaming")


async def test_a_service_token_on_a_remembered_document_is_refused_as_before(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with Socket(api, alice.token) as user_socket:
        await user_socket.subscribe("1")
        await live(api, bob, chat_id, user_socket, "remembered")
    async with Socket(api, api.service_token) as service:
        await service.subscribe("svc")
        refused = await service.frame()
        assert refused == {
            "id": "svc",
            "type": "next",
            "payload": {
                "data": None,
                "errors": [{"message": "a user token is required", "extensions": {"code": "FORBIDDEN"}}],
            },
        }
        assert await service.frame() == {"id": "svc", "type": "complete"}


async def test_duplicate_ids_and_the_limit_hold_for_remembered_documents(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with Socket(api, alice.token) as socket:
        await socket.subscribe("1")
        await live(api, bob, chat_id, socket, "remembered")
        await socket.subscribe("1")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.frame()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409


# -- what is remembered ------------------------------------------------------------------------------


def raw_info(query: str, operation_name: str | None = None) -> Any:
    """What a resolver's `info._raw_info` gives `direct.remember`, for `query` on the product's schema."""
    schema = build_schema()._schema
    document = parse(query)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    operation = next(o for o in operations if operation_name is None or (o.name and o.name.value == operation_name))
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return SimpleNamespace(
        schema=schema, operation=operation, fragments=fragments, parent_type=schema.subscription_type
    )


async def start(*_: object) -> None:
    raise AssertionError("not run by these tests")


def test_a_remembered_operation_coerces_each_subscriptions_variables() -> None:
    info = raw_info(EVENTS)
    direct.remember(info, EVENTS, "DirectProbe", start)
    prepared = direct.find(info.schema, EVENTS, "DirectProbe")
    assert prepared is not None and prepared.start is start
    assert isinstance(prepared.node, FieldNode) and prepared.node.name.value == "chatEvents"
    assert prepared.arguments({"after": "a cursor"}) == {"after": "a cursor"}
    assert prepared.arguments({"after": None}) == {"after": None}
    assert (prepared.arguments(None) or {"after": "missing"}).get("after") is None  # as graphql-core gives it
    assert prepared.arguments({"after": 5}) is None  # Strawberry's path reports it
    # The text and the operation name are the key.
    assert direct.find(info.schema, EVENTS, None) is None
    assert direct.find(info.schema, EVENTS + " ", "DirectProbe") is None


def test_a_required_variable_left_out_is_not_coerced() -> None:
    query = "subscription Required($a: String!) { chatEvents(after: $a) { __typename } }"
    info = raw_info(query)
    direct.remember(info, query, "Required", start)
    prepared = direct.find(info.schema, query, "Required")
    assert prepared is not None
    assert prepared.arguments({}) is None
    assert prepared.arguments({"a": "x"}) == {"after": "x"}


@pytest.mark.parametrize(
    "query",
    [
        "subscription($s: Boolean!) { chatEvents @include(if: $s) { __typename } }",
        "subscription { ...Root } fragment Root on Subscription { chatEvents { __typename } }",
        "subscription { ... on Subscription { chatEvents { __typename } } }",
    ],
)
def test_root_selections_other_than_one_plain_field_are_not_remembered(query: str) -> None:
    info = raw_info(query)
    direct.remember(info, query, None, start)
    assert direct.find(info.schema, query, None) is None
