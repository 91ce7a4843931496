"""escalation: the SLA scan and the escalation ladder.

Owns: finding tickets whose next SLA checkpoint is due, writing each warning
or breach once, and turning it into notices up the support lines and to the
on-call pair. Runs from the scheduler; idempotent across instances.
May import: ``outbound``, ``tickets``, ``store``, ``policy``, ``config``,
``sla``, ``mail``, ``model``, ``errors``, ``log``.
"""
