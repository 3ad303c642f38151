"""An acknowledged message is never lost, even when the server is SIGKILLed right after (SQLite WAL and
PostgreSQL): the acknowledgement is sent only after the commit."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import websockets

from tests.legacy_client import LegacyClient
from tests.support import Api, Server

BURST_LIMITS = {"RATE_LIMIT_PER_SECOND": "100000", "RATE_LIMIT_BURST": "100000"}


async def test_sigkill_during_a_burst_loses_no_acknowledged_message(database_url: str, tmp_path: Path) -> None:
    server = Server({"DATABASE_URL": database_url, **BURST_LIMITS}, tmp_path / "before.log").start()
    api = Api(server)
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    acked: set[str] = set()
    mid_burst = asyncio.Event()

    def ack(content: str) -> None:
        acked.add(content)
        if len(acked) >= 200:
            mid_burst.set()

    async def legacy_sender() -> None:
        """Acknowledged = the sender's own new_message came back (it is published after the commit)."""
        client = await LegacyClient(api, alice).connect()
        await client.ready()
        try:
            for i in range(10_000):
                await client.send("send_message", {"chat_id": chat_id, "content": f"ws{i}", "client_id": f"ws{i}"})
            while True:
                frame = await client.next("new_message", timeout=30)
                ack(frame["data"]["content"])
        except (AssertionError, websockets.ConnectionClosed):
            return  # the server is gone

    async def http_sender() -> None:
        """Acknowledged = the mutation's result arrived."""
        async with httpx.AsyncClient(timeout=30) as http:
            for i in range(10_000):
                try:
                    response = await http.post(
                        f"{server.url}/graphql",
                        json={
                            "query": "mutation($c: ID!, $t: String!) { sendMessage(chatId: $c, content: $t) { content } }",
                            "variables": {"c": chat_id, "t": f"http{i}"},
                        },
                        headers={"Authorization": f"Bearer {bob.token}"},
                    )
                except httpx.HTTPError:
                    return
                body: dict[str, Any] = response.json()
                ack(body["data"]["sendMessage"]["content"])

    senders = [asyncio.create_task(legacy_sender()), asyncio.create_task(http_sender())]
    await asyncio.wait_for(mid_burst.wait(), 60)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    await asyncio.wait_for(asyncio.gather(*senders), 60)
    assert len(acked) >= 200

    restarted = Server({"DATABASE_URL": database_url}, tmp_path / "after.log").start()
    try:
        api = Api(restarted)
        stored: set[str] = set()
        after = 0
        while page := (
            await api.data(
                "query($c: ID!, $a: Int) { messages(chatId: $c, after: $a, limit: 200) { seq content } }",
                {"c": chat_id, "a": after},
                token=alice.token,
            )
        )["messages"]:
            stored.update(m["content"] for m in page)
            after = page[-1]["seq"]
        lost = acked - stored
        assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {sorted(lost)[:5]}"
    finally:
        restarted.stop()
