"""tickets: the ticket application service on an open SQLAlchemy session.

Owns: finding a ticket by thread keys, opening it, appending articles, the
audit trail, applying routes, and stamping the ticket's SLA fields from the
clock in ``sla``. Returns what changed; sends nothing.
May import: ``store``, ``policy``, ``config``, ``sla``, ``mail``, ``model``,
``errors``, ``log``.
"""
