"""Schema migrations (Alembic, `migrations/`): applied at start-up and by `python cli.py db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect, text

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The first revision: the schema as `create_all` made it before migrations existed.
FIRST_REVISION = "0001"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    """Bring the database to the newest revision, inside the caller's transaction (a sync connection: call it
    through `AsyncConnection.run_sync`). Processes starting at once take turns: on PostgreSQL an advisory lock,
    on SQLite the write transaction itself."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(7310001)"))
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "chats" in tables:
        # Made by an earlier build with create_all: that is the first revision's schema.
        command.stamp(alembic_config(connection), FIRST_REVISION)
    command.upgrade(alembic_config(connection), "head")
