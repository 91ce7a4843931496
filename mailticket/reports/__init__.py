"""reports: documents for customers and managers built from the record.

Owns: the monthly report (figures, HTML/text/CSV, the PNG chart), usage
figures, the incident report after a critical ticket, and queueing them as
mail. Reads tickets and SLA events; changes nothing but the outbox.
May import: ``outbound``, ``tickets``, ``store``, ``policy``, ``config``,
``sla``, ``mail``, ``model``, ``errors``, ``log``.
"""
