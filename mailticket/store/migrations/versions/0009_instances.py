"""instances: who holds a claim, and a heartbeat per daemon process

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 20:00:00

Written by hand (issue 18). ``spool`` and ``outbox`` gain ``claimed_by``, the
daemon process that took the current claim, and the new ``instances`` table
holds one heartbeat row per running process. Together they let a restarted
daemon (or, on PostgreSQL, any live one) take back the rows of a dead process
at once instead of waiting out their lease. Existing rows keep NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailticket.store.schema

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

QUEUES = ("spool", "outbox")


def upgrade() -> None:
    for table in QUEUES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("claimed_by", sa.String(length=160), nullable=True))
    op.create_table(
        "instances",
        sa.Column("holder", sa.String(length=160), nullable=False),
        sa.Column("instance_id", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", mailticket.store.schema.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", mailticket.store.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("holder"),
    )


def downgrade() -> None:
    op.drop_table("instances")
    for table in QUEUES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("claimed_by")
