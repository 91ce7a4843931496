"""imap poll state: the last poll of each IMAP account, for mailticket status

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-23 13:30:00

Written by hand (issue 9). A new table only; nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailticket.store.schema

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imap_poll_state",
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("polled_at", mailticket.store.schema.UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("fetched", sa.Integer(), nullable=False),
        sa.Column("spooled", sa.Integer(), nullable=False),
        sa.Column("last_ok_at", mailticket.store.schema.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("account"),
    )


def downgrade() -> None:
    op.drop_table("imap_poll_state")
