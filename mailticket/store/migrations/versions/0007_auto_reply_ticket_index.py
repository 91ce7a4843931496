"""auto reply log: index on ticket_id for the per-ticket hourly cap

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 14:10:00

Written by hand (issue 9). ``auto_mail.auto_mail_allowed`` counts a ticket's
automatic mail of the last hour; without this index that count scans the whole
log, which only grows. ``(ticket_id, sent_at)`` answers it from the index.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auto_reply_log", schema=None) as batch_op:
        batch_op.create_index("ix_auto_reply_ticket", ["ticket_id", "sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auto_reply_log", schema=None) as batch_op:
        batch_op.drop_index("ix_auto_reply_ticket")
