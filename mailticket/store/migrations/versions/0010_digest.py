"""digest: per-engineer digest settings, and one row per digest sent

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 20:30:00

Written by hand (issue 16). ``digest_settings`` holds what an engineer set by
mail (``#digest off``, ``#digest 09:00``); ``digest_sent`` is the unique key
``(recipient, kind, day)`` that makes each digest go out once per day however
many scheduler runs or instances look at it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailticket.store.schema

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digest_settings",
        sa.Column("engineer", sa.String(length=320), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("at", sa.String(length=5), nullable=True),
        sa.Column("updated_at", mailticket.store.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("engineer"),
    )
    op.create_table(
        "digest_sent",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("created_at", mailticket.store.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("recipient", "kind", "day"),
    )


def downgrade() -> None:
    op.drop_table("digest_sent")
    op.drop_table("digest_settings")
