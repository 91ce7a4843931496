"""spool, outbox: the due index ends in ``id``, so a claim is a seek that stops at its first row

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-03 02:40:00

Written by hand (issue 17, point 4). A claim now picks its row with two
statements (the oldest due ``queued`` row, the oldest ``claimed`` row whose
lease ran out), each ``ORDER BY next_attempt_at, id LIMIT 1``. With ``id`` as
the index's last column both backends read the index in that order and stop at
the first row; before, SQLite ran the old ``OR`` query as a full scan of the
spool (every finished row too) and PostgreSQL sorted the whole backlog for
each claim. SQLite keeps the rowid in every index entry anyway, so there the
change costs nothing; PostgreSQL needs the column to break ties without a sort
(a burst spooled in one group commit can share ``next_attempt_at``).
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table, name in (("spool", "ix_spool_due"), ("outbox", "ix_outbox_due")):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
            batch_op.create_index(name, ["state", "next_attempt_at", "id"], unique=False)


def downgrade() -> None:
    for table, name in (("spool", "ix_spool_due"), ("outbox", "ix_outbox_due")):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
            batch_op.create_index(name, ["state", "next_attempt_at"], unique=False)
