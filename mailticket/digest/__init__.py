"""digest: where things stand, by mail — queues on request, morning digests, handover mail,
and the admins' failure digest.

Owns: which open tickets an engineer, a duty pair or a contact sees, the rows
that describe them (due time, time left, last customer message, a reply link
with the reader's own token), who a routed list goes to (``[digest] handover.to``,
``weekly.to``), what needs an admin (``attention``: failures and conditions, also
listed by ``status``), and queueing those lists as mail. Reads tickets;
changes nothing but the outbox and the per-engineer digest settings.
May import: ``outbound``, ``tickets``, ``store``, ``policy``, ``config``,
``sla``, ``mail``, ``model``, ``errors``, ``log``.
"""
