"""processing: what happens to one inbound mail, from spool row to outcome.

Owns: the dispatch table (every exit of a message in one place), the customer
path, the engineer path (commands), bounces, monitoring alerts and ratings.
Runs inside the one transaction the worker gives it, so the ticket, its
articles, the outbox rows and the spool row commit together.
May import: ``reports``, ``escalation``, ``outbound``, ``tickets``, ``store``,
``policy``, ``config``, ``sla``, ``mail``, ``model``, ``errors``, ``log``.
"""
