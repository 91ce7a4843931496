"""relay: the SMTP client that hands one outgoing mail to the relay.

Owns: connecting (TLS, AUTH), sending, and translating smtplib's errors into
temporary or permanent ``DeliveryError`` per recipient, and the one-session probe
behind ``check-config --connect``. Knows nothing of the
outbox; the drainer in ``runners`` decides retries.
May import: ``config``, ``model``, ``errors``, ``log``. Never ``processing``,
``tickets`` or ``outbound``.
"""
