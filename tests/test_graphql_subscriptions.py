"""chatEvents over both WebSocket subprotocols, through a real server and the gql client."""

from __future__ import annotations

import pytest

from tests.support import LEGACY_GRAPHQL_WS, TRANSPORT_WS, Api, subscribed


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_GRAPHQL_WS])
async def test_subscriber_receives_message_another_member_sends_over_http(api: Api, protocol: str) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with subscribed(api, alice, protocol) as sub:
        sent = await api.send(bob, chat_id, "hello over the wire")
        event = await sub.next("NewMessage")
    message = event["message"]
    assert event["chatId"] == chat_id
    assert message["content"] == "hello over the wire"
    assert message["chatId"] == chat_id
    assert message["seq"] == sent["seq"] == 1
    assert message["sender"]["email"] == bob.email
