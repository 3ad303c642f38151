"""event_log: the target and subject indexes only for the events that have one

Most events (every message) have no target user and no subject user; their NULL entries in `ix_event_log_target`
and `ix_event_log_subject` cost every send two B-tree pages written for nothing. Both become partial indexes (`WHERE
... IS NOT NULL`), which both databases still use for `target_user_id = ?` / `subject_user_id = ?`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"

_INDEXES = (("ix_event_log_target", "target_user_id"), ("ix_event_log_subject", "subject_user_id"))


def upgrade() -> None:
    for name, column in _INDEXES:
        op.drop_index(name, table_name="event_log")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            name, "event_log", [column, "writer", "n"], unique=False, sqlite_where=where, postgresql_where=where
        )


def downgrade() -> None:
    for name, column in _INDEXES:
        op.drop_index(name, table_name="event_log")
        op.create_index(name, "event_log", [column, "writer", "n"], unique=False)
