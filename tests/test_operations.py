"""Operations endpoints: /readyz follows the database (the broker half is in test_scale_out.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.conftest import PG_ADMIN_DSN, unavailable
from tests.scale_support import fresh_pg_name
from tests.support import EVENT_TIMEOUT, Server


async def admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


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
        await admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        unavailable(f"PostgreSQL ({exc.__class__.__name__})")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    server = Server({"DATABASE_URL": f"{base}/{name}"}, tmp_path / "server.log").start()
    try:
        assert (await until_status(server.url, 200)) == {"ready": True, "database": True, "broker": True}
        # The database goes away: no new connections, and the server's open ones are cut.
        await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        assert (await until_status(server.url, 503)) == {"ready": False, "database": False, "broker": True}
        await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await until_status(server.url, 200)
    finally:
        server.stop()
        await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
