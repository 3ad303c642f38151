"""subscriptions-transport-ws (npm), the client of the older `graphql-ws` subprotocol, against a live server: a
query, a mutation and a subscription on one socket; a bad token ends with `connection_error` and close 4403
(docs/protocols.md), never 1011 ("internal error")."""

from __future__ import annotations

import time

from tests.support import EVENT_TIMEOUT, Api
from tests.test_graphql_http import NodeScript


def _client(api: Api, token: str, chat_id: str | None = None) -> NodeScript:
    env = {"TAILTRAIL_URL": f"{api.server.ws_url}/graphql", "TAILTRAIL_TOKEN": token}
    if chat_id is not None:
        env["CHAT_ID"] = chat_id
    return NodeScript("transport_ws_client.js", env)


async def test_a_query_a_mutation_and_a_subscription_share_one_socket(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with _client(api, bob.token, chat_id) as client:
        assert await client.next() == {"connected": True}
        assert await client.next() == {"query": {"data": {"me": {"email": bob.email}}}}
        assert await client.next() == {
            "mutation": {"data": {"sendMessage": {"content": "from subscriptions-transport-ws"}}}
        }
        assert await client.next() == {"subscribed": True}
        # Subscribed is not yet live: Alice sends until one of hers comes through.
        deadline = time.monotonic() + EVENT_TIMEOUT
        while True:
            assert time.monotonic() < deadline, f"no event arrived; printed {client.printed}"
            await api.send(alice, chat_id, "to the old protocol")
            try:
                line = await client.next(timeout=0.5)
            except TimeoutError:
                continue
            event = line["event"]["data"]["chatEvents"]
            assert event == {"__typename": "NewMessage", "message": {"content": "to the old protocol"}}
            break
        assert [line for line in client.printed if "closed" in line or "error" in line] == []


async def test_a_bad_token_gets_connection_error_and_close_4403(api: Api) -> None:
    async with _client(api, "not-a-token") as client:
        refused = await client.next()
        assert refused == {"connection_error": {"message": "invalid token", "code": "UNAUTHENTICATED"}}
        assert await client.next() == {"closed": 4403}
