"""Alembic environment: migrations run on a connection handed over by `models.migrate` (start-up, `cli.py db upgrade`)."""

from alembic import context

from models.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through models.migrate: `python cli.py db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
