"""Migrations: `db upgrade` on an empty database produces exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from models.migrate import FIRST_REVISION, alembic_config
from models.tables import Base
from tests.conftest import PG_ADMIN_DSN, pg_admin, unavailable
from tests.scale_support import fresh_pg_name
from tests.support import ROOT


def db_upgrade(url: str) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "cli.py", "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "database schema up to date" in done.stdout


def _compare(connection: Connection) -> list[object]:
    assert "alembic_version" in inspect(connection).get_table_names()
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def schema_differences(url: str) -> list[object]:
    """What autogenerate would still change for the database at `url` to match the models."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_compare)
    finally:
        await engine.dispose()


# The event log's indexes of the few events addressed to one user (migration 0006): only their rows have an entry,
# and a lookup by that user still uses them. (Autogenerate does not compare an index's WHERE clause.)
PARTIAL_LOG_INDEXES = {"ix_event_log_target": "target_user_id", "ix_event_log_subject": "subject_user_id"}


async def assert_partial_log_indexes(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            for name, column in PARTIAL_LOG_INDEXES.items():
                lookup = f"SELECT writer, n FROM event_log WHERE {column} = '00000000000040008000000000000001'"
                if connection.dialect.name == "sqlite":
                    sql = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
                    await connection.execute(text("ANALYZE"))
                    plan = str((await connection.execute(text(f"EXPLAIN QUERY PLAN {lookup}"))).all())
                else:
                    sql = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
                    await connection.execute(text("SET enable_seqscan = off"))
                    lookup = lookup.replace(
                        "'00000000000040008000000000000001'", "'00000000-0000-4000-8000-000000000001'"
                    )
                    plan = str((await connection.execute(text(f"EXPLAIN {lookup}"))).all())
                definition = (await connection.execute(text(sql), {"name": name})).scalar_one()
                assert f"WHERE {column} IS NOT NULL" in definition.replace("(", "").replace(")", ""), definition
                assert name in plan, plan
    finally:
        await engine.dispose()


async def test_db_upgrade_on_empty_sqlite_gives_the_models_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    db_upgrade(url)
    assert await schema_differences(url) == []
    await assert_partial_log_indexes(url)
    db_upgrade(url)  # again: nothing to do, no error


async def test_db_upgrade_on_empty_postgresql_gives_the_models_schema() -> None:
    name = fresh_pg_name()
    try:
        await pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        unavailable(f"PostgreSQL ({exc.__class__.__name__})")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        url = f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
        db_upgrade(url)
        assert await schema_differences(url) == []
        await assert_partial_log_indexes(url)
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_database_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    """Earlier builds made the first revision's schema with create_all, without an alembic_version table."""
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), FIRST_REVISION)
        connection.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    db_upgrade(f"sqlite+aiosqlite:///{path}")
    assert await schema_differences(f"sqlite+aiosqlite:///{path}") == []
