"""runners: the long-running loops that move work along.

Owns: the spool worker (claim, process, finish in one transaction, quarantine
after N attempts), the outbox drainer (claim due rows, send through ``relay``,
retry with backoff) and the APScheduler jobs (SLA scan, reports, housekeeping).
May import: ``processing``, ``reports``, ``escalation``, ``outbound``,
``relay``, ``tickets``, ``store``, ``metrics`` and the pure core.
"""
