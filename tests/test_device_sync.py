"""Every device of a user in step: reading on one device reaches the user's other devices live, so the unread
count agrees everywhere without a reload — on both protocols, across protocols, on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.legacy_client import legacy
from tests.support import Api, subscribed


async def test_reading_on_one_graphql_device_reaches_the_other_device(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    await api.send(alice, chat_id, "one")
    await api.send(alice, chat_id, "two")
    async with subscribed(api, bob) as phone, subscribed(api, bob) as laptop:
        # On the phone: read (over the phone's own socket's API; any of Bob's requests would do).
        await api.data("mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }", {"c": chat_id}, token=bob.token)
        for device in (laptop, phone):
            read = await device.next("MessagesRead")
            assert read == {**read, "chatId": chat_id, "userId": bob.id, "lastReadSeq": 2}
    chats = await api.data("{ myChats { id unreadCount } }", token=bob.token)
    assert {c["id"]: c["unreadCount"] for c in chats["myChats"]} == {chat_id: 0}


async def test_reading_on_one_legacy_device_reaches_the_other_device_and_a_graphql_one(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    await api.send(alice, chat_id, "one")
    async with legacy(api, bob) as phone, legacy(api, bob) as laptop, subscribed(api, bob) as tablet:
        await phone.send("mark_read", {"chat_id": chat_id})
        frame = await laptop.next("messages_read")
        assert frame["data"] == {"chat_id": chat_id, "user_id": bob.id, "last_read_seq": 1}
        assert (await tablet.next("MessagesRead"))["userId"] == bob.id
        # And what the laptop would reload agrees with what the event said.
        chats = (await laptop.request("get_my_chats", reply="my_chats"))["data"]["chats"]
        assert [(c["id"], c["unread_count"]) for c in chats] == [(chat_id, 0)]


async def test_a_read_receipt_still_reaches_the_other_members(api: Api) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    await api.send(alice, chat_id, "one")
    async with subscribed(api, alice) as alice_sub, legacy(api, alice) as alice_legacy:
        await api.data("mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }", {"c": chat_id}, token=bob.token)
        assert (await alice_sub.next("MessagesRead"))["userId"] == bob.id
        assert (await alice_legacy.next("messages_read"))["data"]["user_id"] == bob.id
