"""Operations endpoints: /readyz follows the database (the broker half is in test_scale_out.py), /metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.conftest import PG_ADMIN_DSN, pg_admin, unavailable
from tests.scale_support import fresh_pg_name
from tests.support import EVENT_TIMEOUT, METRICS_AUTH, Api, Server, subscribed


async def readiness(url: str) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{url}/readyz")
    return response.status_code, response.json()


async def until_status(url: str, status: int) -> dict[str, object]:
    deadline = time.monotonic() + EVENT_TIMEOUT
    while True:
        code, body = await readiness(url)
        if code == status:
            return body
        assert time.monotonic() < deadline, f"/readyz stayed {code} ({body}), expected {status}"
        await asyncio.sleep(0.2)


async def test_readyz_is_503_while_the_database_refuses_connections_and_200_after(tmp_path: Path) -> None:
    name = fresh_pg_name()
    try:
        await pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        unavailable(f"PostgreSQL ({exc.__class__.__name__})")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    server = Server({"DATABASE_URL": f"{base}/{name}"}, tmp_path / "server.log").start()
    try:
        assert (await until_status(server.url, 200)) == {"ready": True, "database": True, "broker": True}
        # The database goes away: no new connections, and the server's open ones are cut.
        await pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await pg_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        assert (await until_status(server.url, 503)) == {"ready": False, "database": False, "broker": True}
        await pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await until_status(server.url, 200)
    finally:
        server.stop()
        await pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, from the Prometheus text format."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


async def test_metrics_show_every_series_and_move_with_traffic(api: Api) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        before = samples((await client.get(f"{api.server.url}/metrics", headers=METRICS_AUTH)).text)
        alice, bob = await api.new_user("alice"), await api.new_user("bob")
        chat_id = await api.new_chat(alice, bob)
        async with subscribed(api, bob) as sub:
            await api.send(alice, chat_id, "counted")
            await sub.next("NewMessage")
            during = samples((await client.get(f"{api.server.url}/metrics", headers=METRICS_AUTH)).text)
        response = await client.get(f"{api.server.url}/metrics", headers=METRICS_AUTH)
    assert response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)

    for name in (
        'tailtrail_connections{protocol="legacy"}',
        "tailtrail_outbox_overflows_total",
        "tailtrail_broker_reconnects_total",
        "tailtrail_events_dropped_total",
        'tailtrail_send_to_deliver_seconds_bucket{le="+Inf"}',
    ):
        assert name in after, name
    assert during['tailtrail_connections{protocol="graphql"}'] >= 1
    for counter in ("tailtrail_events_published_total", "tailtrail_events_delivered_total"):
        assert after[counter] > before[counter], counter
    # One process on `memory://`: its own events reach its connections directly, never round the bus (test_scale_out
    # sees the counter move on Redis).
    assert after["tailtrail_events_received_total"] == before["tailtrail_events_received_total"]
    assert after["tailtrail_send_to_deliver_seconds_count"] > before["tailtrail_send_to_deliver_seconds_count"]
    assert after["tailtrail_send_to_deliver_seconds_sum"] >= before["tailtrail_send_to_deliver_seconds_sum"]
