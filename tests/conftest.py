"""Fixtures: the database backends, a real server per backend, and API helpers.

Tests that need PostgreSQL or Redis skip on a laptop without them, and fail when CI=true.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from server.config import Settings
from services.runtime import Runtime
from tests.support import Api, Server

PG_ADMIN_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is unreachable and CI=true: this test must run in CI")
    pytest.skip(f"{what} is unreachable")


def _pg_admin(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


async def pg_admin(sql: str) -> None:
    """`_pg_admin` for async tests (their event loop is already running)."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"tailtrail_test_{uuid.uuid4().hex[:12]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, Exception) as exc:
        unavailable(f"PostgreSQL ({exc.__class__.__name__})")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    try:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:
        pass


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'tailtrail.db'}"
    return str(request.getfixturevalue("postgres_url"))


# The suite's server expires typing after 1 s so the expiry test is quick, and says a user went offline 1 s after
# their last connection closed (PRESENCE_GRACE). Its command and typing limits are lifted: tests fire commands
# faster than people do; the limits have tests of their own, on servers with defaults.
SUITE_TYPING_TTL = "1"
SUITE_PRESENCE_GRACE = "1"
SUITE_LIMITS = {
    "RATE_LIMIT_PER_SECOND": "10000",
    "RATE_LIMIT_BURST": "10000",
    "TYPING_PER_SECOND": "10000",
    "TYPING_BURST": "10000",
    "TYPING_BROADCAST_INTERVAL": "0",
}


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {"DATABASE_URL": database_url, "TYPING_TTL": SUITE_TYPING_TTL, "PRESENCE_GRACE": SUITE_PRESENCE_GRACE}
    srv = Server({**env, **SUITE_LIMITS}, log).start()
    yield srv
    srv.stop()


@pytest.fixture
async def backend(database_url: str) -> AsyncIterator[Runtime]:
    """A runtime on each database (the session's test databases)."""
    runtime = Runtime(Settings(database_url=database_url, secret_key="s" * 32))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
def api(server: Server) -> Api:
    return Api(server)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    """Start extra servers with their own settings; each is stopped after the test."""
    started: list[Server] = []

    def start(env: dict[str, str]) -> Server:
        srv = Server(env, tmp_path / f"server{len(started)}.log").start()
        started.append(srv)
        return srv

    yield start
    # Every server is stopped even when one of them fails to stop in time; the first failure is raised after.
    failures: list[BaseException] = []
    for srv in started:
        try:
            srv.stop()
        except Exception as error:
            failures.append(error)
    if failures:
        raise failures[0]


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    """An in-process runtime on a fresh SQLite file, for unit tests of the services."""
    runtime = Runtime(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unit.db'}", secret_key="unit"))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
