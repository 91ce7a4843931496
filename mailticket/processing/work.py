"""The values that flow through the stages of :mod:`mailticket.processing`.

``Work`` is one message's progress, ``Context`` what every stage may use, and
``Outcome`` how a message ended. They live apart from the stage table so that
every path (customer, engineer, bounces, alerts, ratings) can import them
without importing the table that imports the paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.mail.parse import InboundMail
from mailticket.model import Envelope, MailKind
from mailticket.outbound import notify
from mailticket.policy import auth as auth_mod
from mailticket.store.schema import Ticket


@dataclass(frozen=True)
class Outcome:
    """How one spool item ended: the spool row's final state and a short code for admins."""

    state: str
    code: str
    ticket_id: int | None = None
    detail: str = ""


@dataclass
class Context:
    """What every stage may use: the transaction, config, notifier and the time."""

    session: Session
    config: Config
    notifier: notify.Notifier
    now: datetime


@dataclass(frozen=True)
class Work:
    """One message's progress through the stages; each stage returns a new copy."""

    spool_id: int
    source: str
    envelope: Envelope
    raw: bytes
    size: int = 0
    mail: InboundMail | None = None
    kind: MailKind = MailKind.NORMAL
    kind_reason: str = ""
    auth: auth_mod.Authentication | None = None
    ticket: Ticket | None = None
    event: str = ""


Stage = Callable[[Work, Context], "Work | Outcome"]


def mail_of(work: Work) -> InboundMail:
    assert work.mail is not None, "stage ran before parse"
    return work.mail


def auth_of(work: Work) -> auth_mod.Authentication:
    assert work.auth is not None, "stage ran before authenticate"
    return work.auth
