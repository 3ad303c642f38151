"""event_log: no index on created_at

Retention used `ix_event_log_created_at` to find the entries older than its cutoff; it now finds the cut by a binary
search over each writer's `n` (entries are stamped as they take their position, so `created_at` grows with `n`).
The index cost every send one more B-tree page written per commit.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:30:00
"""

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"


def upgrade() -> None:
    op.drop_index("ix_event_log_created_at", table_name="event_log")


def downgrade() -> None:
    op.create_index("ix_event_log_created_at", "event_log", ["created_at"], unique=False)
