"""consent: blocks between users, and departures from groups

`user_blocks` holds one row per (blocker, blocked): the blocked user's messages and typing do not reach the
blocker, and they cannot start a 1:1 chat with the blocker or add them to a group. `blocked_id` has no foreign key:
an id nobody has can be blocked like any other, so blocking reveals nothing about it. `chat_departures` holds the
groups a user left of their own accord: nobody else may add them back (they may re-join themselves).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00
"""

import sqlalchemy as sa
from alembic import op

import models.tables

revision: str = "0005"
down_revision: str | None = "0004"


def upgrade() -> None:
    op.create_table(
        "user_blocks",
        sa.Column("blocker_id", sa.Uuid(), nullable=False),
        sa.Column("blocked_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", models.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["blocker_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("blocker_id", "blocked_id"),
    )
    op.create_table(
        "chat_departures",
        sa.Column("chat_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", models.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["chat_id"], ["chats.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("chat_id", "user_id"),
    )


def downgrade() -> None:
    op.drop_table("chat_departures")
    op.drop_table("user_blocks")
