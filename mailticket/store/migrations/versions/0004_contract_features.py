"""contract features: alert tickets, contract type, customer ratings

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-23 13:00:00

Written by hand (issue 8). The counters get a server default, so tickets that
exist before the upgrade read as "no alerts, never flapped".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailticket.store.schema

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contract_type", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("alert_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("alert_state", sa.String(length=8), nullable=True))
        batch_op.add_column(
            sa.Column("alert_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("alert_flaps", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("rating", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rating_comment", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("rating_requested_at", mailticket.store.schema.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("rated_at", mailticket.store.schema.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_tickets_alert_key"), ["alert_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_alert_key"))
        for column in (
            "rated_at",
            "rating_requested_at",
            "rating_comment",
            "rating",
            "alert_flaps",
            "alert_count",
            "alert_state",
            "alert_key",
            "contract_type",
        ):
            batch_op.drop_column(column)
