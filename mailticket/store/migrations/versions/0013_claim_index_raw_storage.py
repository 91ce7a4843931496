"""spool, outbox: the due index ends in ``id`` (a claim is a seek that stops at its first row);
spool.raw is stored uncompressed on PostgreSQL (the SMTP accept path)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 02:40:00

Written by hand (issue 17, point 4). A claim now picks its row with two
statements (the oldest due ``queued`` row, the oldest ``claimed`` row whose
lease ran out), each ``ORDER BY next_attempt_at, id LIMIT 1``. With ``id`` as
the index's last column both backends read the index in that order and stop at
the first row. Before, one ``OR`` query read every due row of the queue and
sorted them for each claim (SQLite: MULTI-INDEX OR and a temporary B-tree;
PostgreSQL: BitmapOr and a Sort), so draining a backlog of n mails cost n²
row reads. Over 500,000 finished spool rows, median of five: SQLite 0.7 ms
with 500 mails queued and 5.7 ms with 10,000, against 0.3–0.4 ms for the two
seeks at either size; PostgreSQL 49.4 ms with 10,000 queued, against 5.6 ms. SQLite keeps the rowid in every index entry anyway, so there the
change costs nothing; PostgreSQL needs the column to break ties without a sort
(a burst spooled in one group commit can share ``next_attempt_at``).

On PostgreSQL, ``spool.raw`` gets ``STORAGE EXTERNAL``: still out of line
(TOAST), but not compressed. The listener's group commit inserts every waiting
mail in one statement before the ``250``s, and pglz compressing those bodies in
the server was about half of that statement's time (50 mails of the bench
corpus, 840 KB: 21 ms → 12 ms), the largest part of the accept latency at 100
clients on PostgreSQL. Mail is mostly base64 and already-compressed
attachments, so little disk is given up. Rows written before keep their
compressed form; SQLite has no such setting.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table, name in (("spool", "ix_spool_due"), ("outbox", "ix_outbox_due")):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
            batch_op.create_index(name, ["state", "next_attempt_at", "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE spool ALTER COLUMN raw SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE spool ALTER COLUMN raw SET STORAGE EXTENDED")
    for table, name in (("spool", "ix_spool_due"), ("outbox", "ix_outbox_due")):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
            batch_op.create_index(name, ["state", "next_attempt_at"], unique=False)
