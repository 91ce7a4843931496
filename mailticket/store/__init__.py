"""store: persistence — the engine, the tables, the durable work queues, migrations.

Owns: the SQLAlchemy engine and session factory (SQLite pragmas, PostgreSQL
for several instances), the ORM tables, the leased ``spool``/``outbox`` work
queue, Alembic migrations and online backup. Holds no business rule.
May import: ``model``, ``errors``, ``log``.
"""
