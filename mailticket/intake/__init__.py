"""intake: how mail gets in — SMTP/LMTP listeners, the submission port, IMAP.

Owns: the aiosmtpd listeners and their limits, SMTP AUTH for engineers, the
IMAP pollers, and the spool writer that commits a mail durably before we say
250 or mark it seen. Parses nothing beyond size and recipients.
May import: ``store``, ``metrics``, ``config``, ``mail`` (addresses only),
``model``, ``errors``, ``log``. Never ``processing``, ``tickets`` or
``outbound``: the only hand-off is the spool.
"""
