"""sla: calendar and deadline arithmetic, pure functions of their arguments.

Owns: business hours and national production calendars, "add N working
minutes", the SLA clock (deadlines, warnings, breaches due at ``now``) and
the explanation of how a deadline was reached. Takes ``now`` as an argument.
May import: ``model``, ``errors``. Part of the pure core.
"""
