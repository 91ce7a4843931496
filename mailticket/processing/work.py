"""The values that flow through the stages of :mod:`mailticket.processing`.

``Work`` is one message's progress, ``Context`` what every stage may use, and
``Outcome`` how a message ended (a :class:`Disposition`). They live apart from
the dispatch table so that every path (customer, engineer, bounces, alerts,
ratings) can import them without importing the table that imports the paths.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.mail.parse import InboundMail
from mailticket.model import Envelope, MailKind
from mailticket.outbound import notify
from mailticket.policy import auth as auth_mod
from mailticket.policy.kb import EMPTY_KNOWLEDGE, KnowledgeBase
from mailticket.policy.monitoring import Recognised
from mailticket.policy.thread_keys import ThreadKeys
from mailticket.store.schema import QueueState, Ticket

_DONE, _REJECTED = QueueState.DONE, QueueState.REJECTED


class Disposition(enum.Enum):
    """How a message left processing: the spool row's final state and the short code.

    The code is what admins see in logs, metrics labels and ``spool list``, so
    it never changes. Which path ends with which member is the table in
    :mod:`mailticket.processing.dispatch`.
    """

    # Every message (parse).
    TOO_LARGE = ("too_large", _REJECTED)
    UNPARSEABLE = ("unparseable", QueueState.QUARANTINED)
    # Two From (Subject, Message-ID …) fields: nobody can be authenticated (authenticate).
    AMBIGUOUS_HEADERS = ("ambiguous_headers", QueueState.QUARANTINED)
    # Shared by the paths that answer people.
    LOOP = ("loop", _DONE)
    DUPLICATE = ("duplicate", _DONE)
    # Bounces.
    BOUNCE = ("bounce", _DONE)
    BOUNCE_UNMATCHED = ("bounce_unmatched", _DONE)
    # Monitoring alerts.
    ALERT_IGNORED = ("alert_ignored", _DONE)
    ALERT_NEW = ("alert_new", _DONE)
    ALERT_REPEAT = ("alert_repeat", _DONE)
    ALERT_FLAP = ("alert_flap", _DONE)
    ALERT_FLAP_NOTED = ("alert_flap_noted", _DONE)
    ALERT_RESOLVED = ("alert_resolved", _DONE)
    ALERT_OK_NOTED = ("alert_ok_noted", _DONE)
    ALERT_INFO = ("alert_info", _DONE)
    ALERT_OK_UNMATCHED = ("alert_ok_unmatched", _DONE)
    ALERT_INFO_UNMATCHED = ("alert_info_unmatched", _DONE)
    # Ratings.
    RATED = ("rated", _DONE)
    RATING_FORGED = ("rating_forged", _REJECTED)
    RATING_REFUSED = ("rating_refused", _REJECTED)
    # Engineers.
    TOKEN_MISMATCH = ("token_mismatch", _REJECTED)
    ENGINEER_NO_TICKET = ("engineer_no_ticket", _REJECTED)
    ENGINEER_AUTO = ("engineer_auto", _DONE)
    UNVERIFIED_NOTE = ("unverified_note", _DONE)
    REPLAYED = ("replayed", _DONE)
    COMMAND_TOKEN_EXPIRED = ("command_token_expired", _DONE)
    COMMANDS_REFUSED = ("commands_refused", _DONE)
    ENGINEER_REPLY = ("engineer_reply", _DONE)
    # Customers (and whoever is not a proven engineer).
    DEFERRED = ("deferred", QueueState.QUEUED)
    FORGED_ENGINEER = ("forged_engineer", _REJECTED)
    AUTO_UNTHREADED = ("auto_unthreaded", _DONE)
    UNKNOWN_SENDER = ("unknown_sender", _REJECTED)
    NEW = ("new", _DONE)
    REPLY = ("reply", _DONE)
    REOPENED = ("reopened", _DONE)
    CLOSED = ("closed", _DONE)
    AUTO = ("auto", _DONE)
    # Requests for a list by mail (issue 16): a contact's #status, an engineer's #queue.
    STATUS_ANSWERED = ("status_answered", _DONE)
    QUEUE_ANSWERED = ("queue_answered", _DONE)
    QUEUE_REFUSED = ("queue_refused", _REJECTED)
    DIGEST_SET = ("digest_set", _DONE)
    # A chain that ran to its end without naming its event (no path does today).
    PROCESSED = ("processed", _DONE)

    def __init__(self, code: str, state: str) -> None:
        self.code = code
        self.state = state

    @classmethod
    def of_event(cls, event: str) -> Disposition:
        """The member whose code is a completed path's ``Work.event`` ("new", "engineer_reply"…)."""
        return _BY_CODE[event or cls.PROCESSED.code]


_BY_CODE: dict[str, Disposition] = {d.code: d for d in Disposition}


@dataclass(frozen=True)
class Outcome:
    """How one spool item ended, what ticket it touched, and a detail for the spool row."""

    disposition: Disposition
    ticket_id: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Context:
    """What every stage may use: the transaction, the App's config, notifier and knowledge
    base (one consistent set per message, see ``mailticket.app``), and the time."""

    session: Session
    config: Config
    notifier: notify.Notifier
    now: datetime
    knowledge: KnowledgeBase = EMPTY_KNOWLEDGE


@dataclass(frozen=True)
class Work:
    """One message's progress through the stages; each stage returns a new copy."""

    spool_id: int
    source: str
    envelope: Envelope
    raw: bytes
    size: int = 0
    mail: InboundMail | None = None
    # From a contract's monitoring sender (set by classify; the alerts path reads it).
    alert: Recognised | None = None
    kind: MailKind = MailKind.NORMAL
    kind_reason: str = ""
    auth: auth_mod.Authentication | None = None
    # The thread keys and which of their Message-IDs we store (one lookup, two uses).
    keys: ThreadKeys | None = None
    known_ids: Mapping[str, int] | None = None
    ticket: Ticket | None = None
    event: str = ""


Stage = Callable[[Work, Context], "Work | Outcome"]
Chain = tuple[Stage, ...]


def mail_of(work: Work) -> InboundMail:
    assert work.mail is not None, "stage ran before parse"
    return work.mail


def auth_of(work: Work) -> auth_mod.Authentication:
    assert work.auth is not None, "stage ran before authenticate"
    return work.auth
