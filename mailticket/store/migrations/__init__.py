"""Alembic environment and versions for the mailticket schema."""
