"""delivery failures and the address suppression list (issue 7: bounces)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:31:09.396085
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailticket.store.schema

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('address_suppressions',
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('permanent_failures', sa.Integer(), nullable=False),
    sa.Column('suppressed_at', mailticket.store.schema.UTCDateTime(), nullable=True),
    sa.Column('cleared_at', mailticket.store.schema.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('address')
    )
    op.create_table('delivery_failures',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('permanent', sa.Boolean(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('at', mailticket.store.schema.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('delivery_failures', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_failures_address', ['address', 'at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('delivery_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_failures_address')

    op.drop_table('delivery_failures')
    op.drop_table('address_suppressions')
