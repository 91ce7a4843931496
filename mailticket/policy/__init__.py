"""policy: the rules that decide, without touching a database or a socket.

Owns: who a sender is and on what evidence (``auth``), the thread keys of a
mail, engineer command parsing, routing rules, monitoring-alert recognition,
the knowledge base and the on-call rota. Everything here is a pure function of
the config and the mail, so it is tested in milliseconds.
May import: ``config``, ``mail``, ``sla``, ``model``, ``errors``, ``log``.
Part of the pure core.
"""
