"""One exception tree for mailticket, so callers catch by meaning, not by library.

Library errors (smtplib, imapclient, SQLAlchemy) are translated into these at
the edge where they happen; nothing above the transport/store layers ever sees
a library exception. The CLI maps every ``MailticketError`` to a message and an
exit code; a traceback is shown only for bugs.

    MailticketError (exit 1)
    ├── ConfigError(problems)            exit 2; each problem has file, line, key, reason
    ├── SchemaError                      exit 3; database schema missing or not current
    ├── NotFound                         exit 4; a ticket, spool row or outbox row
    ├── MessageRejected(smtp_code, text) an SMTP/LMTP refusal with its reply code
    ├── UnparseableMessage               the raw bytes cannot be turned into a mail
    ├── CommandError(line, reason)       one engineer command line was refused
    ├── StoreError                       the database could not be written (maps to 451)
    └── DeliveryError                    sending through the relay failed
        ├── TemporaryDeliveryError       4xx or network: retry with backoff
        └── PermanentDeliveryError(recipients)  5xx: record on the ticket, stop
"""

from __future__ import annotations

from dataclasses import dataclass


class MailticketError(Exception):
    """Base of every error mailticket raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a config file, located as precisely as we can."""

    file: str
    line: int
    key: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.reason}" if self.key else f"{where}: {self.reason}"


class ConfigError(MailticketError):
    """The configuration is invalid; carries *every* problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SchemaError(MailticketError):
    """The database schema is missing or older than this code expects."""

    exit_code = 3


class NotFound(MailticketError):
    """A ticket, spool row or outbox row named on the command line does not exist."""

    exit_code = 4


class MessageRejected(MailticketError):
    """A mail is refused inside the SMTP dialogue with a specific reply code."""

    def __init__(self, smtp_code: int, text: str) -> None:
        self.smtp_code = smtp_code
        self.text = text
        super().__init__(f"{smtp_code} {text}")


class UnparseableMessage(MailticketError):
    """The raw bytes cannot be understood as a mail at all (not mere defects)."""


class CommandError(MailticketError):
    """One engineer command line was refused; the reason goes back to the engineer."""

    def __init__(self, line: str, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"{line!r}: {reason}")


class StoreError(MailticketError):
    """The database refused a write; an SMTP client must be told 451, not 250."""


class DeliveryError(MailticketError):
    """Sending a mail through the relay failed."""


class TemporaryDeliveryError(DeliveryError):
    """A 4xx reply or a network fault: try again later."""


class PermanentDeliveryError(DeliveryError):
    """A 5xx reply: retrying will not help; ``recipients`` maps address to reply."""

    def __init__(self, message: str, recipients: dict[str, str] | None = None) -> None:
        self.recipients = recipients or {}
        super().__init__(message)
