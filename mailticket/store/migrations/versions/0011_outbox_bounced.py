"""outbox: a row whose DSN came back is ``bounced``, with the DSN's status and diagnostic

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 22:00:00

Written by hand (issue 15, point 3). The relay's 250 only says the next hop
took the mail; a delivery report that comes back later is the truth about it.
``dsn_status`` (``5.1.1``) and ``dsn_diagnostic`` (``smtp; 550 5.1.1 user
unknown``) keep what the report said, so ``outbox list --state bounced`` shows
why without opening the bounce. The state column is a plain string, so the new
state needs no change there. Existing rows keep NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dsn_status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("dsn_diagnostic", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("dsn_diagnostic")
        batch_op.drop_column("dsn_status")
