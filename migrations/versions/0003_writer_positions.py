"""event positions per writer: event_log (writer, n), the writers table; log_state goes

Every process writes through one writer holding a slot; a durable event's position is (slot, n), n being that
writer's own gap-free counter (`writers.last_n`), so no row is shared by two writers. The positions of the one
global counter before this revision become writer 0's, and its retention floor slot 0's.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 07:00:00
"""

import sqlalchemy as sa
from alembic import op

import models.tables

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    op.create_table(
        "writers",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_n", sa.BigInteger(), nullable=False),
        sa.Column("floor_n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("slot"),
    )
    op.execute(
        "INSERT INTO writers (slot, last_n, floor_n) "
        "SELECT 0, coalesce(max(last_pos), 0), coalesce(max(floor_pos), 0) FROM log_state"
    )
    op.drop_table("log_state")
    op.create_table(
        "event_log_new",
        sa.Column("writer", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_id", sa.Uuid(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("target_user_id", sa.Uuid(), nullable=True),
        sa.Column("subject_user_id", sa.Uuid(), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", models.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("writer", "n"),
    )
    # The stored payloads keep their old `"pos": N`; readers take the position from the columns.
    op.execute(
        "INSERT INTO event_log_new (writer, n, chat_id, seq, target_user_id, subject_user_id, type, payload, "
        "created_at) SELECT 0, pos, chat_id, seq, target_user_id, subject_user_id, type, payload, created_at "
        "FROM event_log"
    )
    op.drop_table("event_log")
    op.rename_table("event_log_new", "event_log")
    with op.batch_alter_table("event_log", schema=None) as batch_op:
        batch_op.create_index("ix_event_log_chat_seq", ["chat_id", "seq"], unique=False)
        batch_op.create_index("ix_event_log_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_event_log_subject", ["subject_user_id", "writer", "n"], unique=False)
        batch_op.create_index("ix_event_log_target", ["target_user_id", "writer", "n"], unique=False)


def downgrade() -> None:
    raise NotImplementedError("positions per writer cannot be folded back into one global counter")
