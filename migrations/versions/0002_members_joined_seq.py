"""members.joined_seq instead of members.joined_pos

A member sees a chat's events from the chat's seq at which they joined (0 for the members a chat was created
with), rather than from a global log position: membership no longer depends on how log positions are given.
The creation of a chat is its seq 0 in the event log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 06:30:00
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    op.execute("UPDATE event_log SET seq = 0 WHERE type = 'chat_created' AND seq IS NULL")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("joined_seq", sa.BigInteger(), nullable=False, server_default="0"))
    # The seq of the event that made each member one, where the log still has it (else 0: the log before it is
    # purged too, so nothing older can be replayed anyway).
    op.execute(
        "UPDATE members SET joined_seq = coalesce("
        "(SELECT e.seq FROM event_log e WHERE e.pos = members.joined_pos AND e.seq IS NOT NULL), 0)"
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.alter_column("joined_seq", server_default=None)
        batch_op.drop_column("joined_pos")


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("joined_pos", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.drop_column("joined_seq")
