"""outbound: everything we mail, turned into durable outbox rows.

Owns: rendering templates (Jinja2, ru/en), who gets which notice, the caps on
automatic mail and the trace of each one they stop (``stopped``), the
suppression list of dead addresses, and writing outbox rows
in the caller's transaction (the transactional outbox). Sends nothing itself.
May import: ``tickets``, ``store``, ``relay`` (never), ``policy``, ``config``,
``sla``, ``mail``, ``model``, ``errors``, ``log``.
"""
