"""runners: the long-running loops that move work along.

Owns: the spool worker (claim, process, finish in one transaction, quarantine
after N attempts), the outbox drainer (claim due rows, send through ``relay``,
retry with backoff), the APScheduler jobs (SLA scan, reports, housekeeping)
and the test-only gates that hold a runner at a named point for crash tests.
May import: ``processing``, ``reports``, ``escalation``, ``outbound``,
``relay``, ``tickets``, ``store``, ``metrics`` and the pure core.
"""
