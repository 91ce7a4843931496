"""tickets: ``sla_facts``, what the SLA restamp needs from a ticket's history

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 03:00:00

Written by hand (issue 17, point 2). A customer's reply restamped the SLA
clock by reading the ticket's status history, its articles and its SLA record
back; the column keeps the few facts those reads produced (status changes,
the last reply, the first unanswered mail after it, the record's keys), kept
up to date by the code that writes that history, so a reply reads nothing
extra. Existing rows keep NULL: their facts are read in full at the next
change and stored then.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_facts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("sla_facts")
