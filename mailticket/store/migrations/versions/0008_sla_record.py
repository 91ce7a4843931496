"""sla record: the SLA events become an append-only record with frozen facts; month closes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 19:00:00

Written by hand (issue 13). ``sla_events`` gains the columns that freeze what
was true when an entry was written (priority, period, due time, target,
minutes used and overdue, calendar, rule, reason, whether and whom it was mailed),
and new kinds (met, stopped, pause, resume) join warning and breach. A new
``sla_month_close`` table holds each reported month's frozen inputs.

Both tables are append-only: triggers refuse UPDATE and DELETE, so no code
path, admin shell or later bug can rewrite the record a provider shows its
customers. Rows written before this revision keep NULL in the new columns.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailticket.store.schema

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APPEND_ONLY = ("sla_events", "sla_month_close")


def upgrade() -> None:
    with op.batch_alter_table("sla_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("period", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("due_at", mailticket.store.schema.UTCDateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column("target_minutes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("used_minutes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("overdue_minutes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("calendar", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rule", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("notified", sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.add_column(sa.Column("recipients", sa.JSON(), nullable=True))
    op.create_table(
        "sla_month_close",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("contract_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("closed_at", mailticket.store.schema.UTCDateTime(), nullable=False),
        sa.Column("last_event_id", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contract_id", "month"),
    )
    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table("sla_month_close")
    with op.batch_alter_table("sla_events", schema=None) as batch_op:
        for column in ("recipients", "notified", "reason", "rule", "calendar", "overdue_minutes",
                       "used_minutes", "target_minutes", "due_at", "period", "priority"):
            batch_op.drop_column(column)


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        return
    op.execute(
        "CREATE FUNCTION mailticket_append_only() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$ LANGUAGE plpgsql"
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION mailticket_append_only()"
        )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
        return
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    op.execute("DROP FUNCTION IF EXISTS mailticket_append_only()")
