"""message edits, deletions (tombstones) and reactions

`messages` gains `edited_at` (the last edit, NULL if never edited), `deleted_at` (a tombstone: the row stays, its
content is emptied) and `edit_client_id` (the client id of the last edit, so a retried edit changes nothing
twice). `reactions` holds one row per (message, user, emoji).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import models.tables

revision: str = "0004"
down_revision: str | None = "0003"


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edited_at", models.tables.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", models.tables.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("edit_client_id", sa.String(length=100), nullable=True))
    op.create_table(
        "reactions",
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("emoji", sa.String(length=16), nullable=False),
        sa.Column("created_at", models.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_id", "user_id", "emoji"),
    )


def downgrade() -> None:
    op.drop_table("reactions")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("edit_client_id")
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("edited_at")
