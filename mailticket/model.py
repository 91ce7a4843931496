"""Domain vocabulary shared by every layer: enums and frozen dataclasses.

Stages pass these typed values to each other instead of growing dicts, so a
mistake in a field name is a type error, not a silent ``None`` at 3 a.m.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import lru_cache

# Time is passed in, never read deep inside: components take a ``clock`` (this
# type) whose default is :func:`utc_now`, and tests pass their own.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock: the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class Priority(enum.StrEnum):
    """SLA priority of a ticket; each has its own response and resolution times."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    TECHNICAL = "technical"


class PriorityChangeRule(enum.StrEnum):
    """How a plan applies new targets when a ticket's priority changes (``sla_plans.X.priority_change``).

    ``from_start``: the new targets count from the ticket's start (time already
    spent counts against them; Zammad's and Znuny's rule). ``from_change``: the
    new targets count from the change onward. Either way a warning, breach or
    page already recorded stays recorded.
    """

    FROM_START = "from_start"
    FROM_CHANGE = "from_change"


class PauseRule(enum.StrEnum):
    """What pauses the SLA timers (``sla_plans.X.pause_on``).

    ``question``: only status ``waiting`` set by a reply that reaches the
    customer, so an internal status change cannot stop the clock. ``status``:
    any change to ``waiting``, internal or not.
    """

    QUESTION = "question"
    STATUS = "status"


class Status(enum.StrEnum):
    """Lifecycle of a ticket. ``WAITING`` means waiting on the customer (SLA paused)."""

    NEW = "new"
    OPEN = "open"
    WAITING = "waiting"
    RESOLVED = "resolved"
    CLOSED = "closed"


# Which status may follow which. Reopening a resolved or closed ticket is a
# transition too, so a customer reply takes the same path as an engineer command.
ALLOWED_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.NEW: frozenset({Status.OPEN, Status.WAITING, Status.RESOLVED, Status.CLOSED}),
    Status.OPEN: frozenset({Status.WAITING, Status.RESOLVED, Status.CLOSED}),
    Status.WAITING: frozenset({Status.OPEN, Status.RESOLVED, Status.CLOSED}),
    Status.RESOLVED: frozenset({Status.OPEN, Status.CLOSED}),
    Status.CLOSED: frozenset({Status.OPEN}),
}


def can_transition(old: Status, new: Status) -> bool:
    """Whether the status table allows ``old`` → ``new``."""
    return new in ALLOWED_TRANSITIONS[old]


class Line(enum.StrEnum):
    """Support line; escalation moves a ticket to the next one."""

    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L4 = "L4"

    def next(self) -> Line | None:
        """The line a breach escalates to, or None at the top."""
        order = list(Line)
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None


class MailKind(enum.StrEnum):
    """What ``classify`` decided an inbound mail is; only ``NORMAL`` may be answered."""

    NORMAL = "normal"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    LOOP = "loop"
    LIST_TRAFFIC = "list_traffic"


class Direction(enum.StrEnum):
    """Whether an article came in from outside or was sent by us."""

    IN = "in"
    OUT = "out"


class ArticleKind(enum.StrEnum):
    """What an article on a ticket is, for display and SLA (only ``REPLY`` counts as response)."""

    CUSTOMER = "customer"
    REPLY = "reply"
    NOTE = "note"
    AUTO = "auto"
    ACK = "ack"
    NOTICE = "notice"


class PrincipalKind(enum.StrEnum):
    """Who sent a mail, as far as we could prove it."""

    CUSTOMER = "customer"
    ENGINEER = "engineer"
    UNKNOWN = "unknown"


class Evidence(enum.StrEnum):
    """How an engineer was authenticated; stored in the audit log."""

    NONE = "none"
    REPLY_TOKEN = "reply_token"
    SMTP_AUTH = "smtp_auth"
    DKIM = "dkim"


@dataclass(frozen=True)
class Principal:
    """The authenticated sender of one mail."""

    kind: PrincipalKind
    address: str
    contract_id: str | None = None
    evidence: Evidence = Evidence.NONE
    # Set when the From: claims to be an engineer but no evidence backs it.
    claimed_engineer: str | None = None


@dataclass(frozen=True)
class Interval:
    """A working interval within one day, minute precision, local time."""

    start: time
    end: time


@dataclass(frozen=True)
class Calendar:
    """Working hours of a plan: time zone, weekly intervals, holidays and extra working days.

    A date's hours, most specific first: ``days`` (per-date hours, an empty tuple
    is a day off), ``extra_working_days``, ``holidays``, the production calendar
    of ``country`` (any year, looked up on demand by ``sla.business_hours``),
    then ``week``. An ``always_open`` calendar counts every minute; its
    ``timezone`` only picks how times are shown.
    """

    id: str
    timezone: str
    # Index 0 = Monday, as in ``date.weekday()``; empty tuple = day off.
    week: tuple[tuple[Interval, ...], ...]
    holidays: frozenset[date] = frozenset()
    # Days that are working days although the week says otherwise (moved Saturdays);
    # they use ``extra_day_hours`` or, if empty, Monday's hours.
    extra_working_days: frozenset[date] = frozenset()
    extra_day_hours: tuple[Interval, ...] = ()
    always_open: bool = False
    # ISO 3166-1 code whose national holidays and moved days apply, e.g. "RU".
    country: str | None = None
    # Shortened pre-holiday days and contract exceptions; treat as read-only.
    days: Mapping[date, tuple[Interval, ...]] = field(default_factory=dict, hash=False)
    # business_hours' table of each year's dates that differ from ``week``, built on
    # first use; a cache, not part of the value.
    year_memo: dict[int, Mapping[date, tuple[Interval, ...]]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )


@dataclass(frozen=True)
class PriorityTargets:
    """SLA times for one priority, in business minutes of ``calendar``."""

    first_response_minutes: int
    resolution_minutes: int
    calendar: str
    next_response_minutes: int | None = None


@dataclass(frozen=True)
class SlaPlan:
    """A set of per-priority targets sold with a contract, and the rules that apply them."""

    id: str
    name: str
    targets: dict[Priority, PriorityTargets]
    warn_ratio: float = 0.75
    priority_change: PriorityChangeRule = PriorityChangeRule.FROM_START
    pause_on: PauseRule = PauseRule.QUESTION


@dataclass(frozen=True)
class Engineer:
    """A support engineer who receives notices and works tickets by replying."""

    address: str
    name: str
    line: Line
    # PBKDF2/scrypt hash for SMTP AUTH on the submission listener, if any.
    password_hash: str | None = None
    locale: str = "ru"
    # The calendar of their working days and hours (their office's week and national
    # holidays); None = the ``[digest]`` calendar. Read in ``timezone`` when that is set.
    calendar: str | None = None
    # Where they are (IANA zone); None = the calendar's own zone. Their morning digest
    # goes out at the start of *their* working day and shows times in this zone.
    timezone: str | None = None


class ContractType(enum.StrEnum):
    """What a contract sells; it picks the default SLA plan and first line, and reports show it."""

    TECHNICAL_SUPPORT = "technical_support"
    APPLICATION_SUPPORT = "application_support"
    COMPLEX = "complex"


@dataclass(frozen=True)
class MonitoringSource:
    """A customer's monitoring system whose alert mail opens and resolves tickets by itself.

    ``format`` is ``zabbix``, ``alertmanager``, ``nagios`` (Nagios and Icinga) or
    ``generic``; a generic source reads its alerts with the regexes below (named
    groups ``host``, ``trigger`` and optionally ``severity``).
    """

    senders: tuple[str, ...]
    format: str = "zabbix"
    # "resolve": a recovery mail resolves the ticket; "note": it is only recorded.
    on_recovery: str = "resolve"
    # A problem this many minutes after its recovery reopens the same ticket (flapping).
    flap_window_minutes: int = 60
    # Severity word (case-insensitive) → priority value, over the built-in table.
    severity_map: tuple[tuple[str, str], ...] = ()
    # Customer addresses that get the engineers' replies on alert tickets.
    contacts: tuple[str, ...] = ()
    problem_subject: str = ""
    recovery_subject: str = ""
    host_pattern: str = ""
    trigger_pattern: str = ""
    severity_pattern: str = ""


@dataclass(frozen=True)
class Contract:
    """A customer's support subscription: who may write and which SLA applies."""

    id: str
    name: str
    sla_plan: str
    contacts: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    locale: str = "ru"
    dedicated_engineer: str | None = None
    deputy_engineer: str | None = None
    contract_type: ContractType = ContractType.TECHNICAL_SUPPORT
    # Whether a subject keyword such as "[CRITICAL]" or "[АВАРИЯ]" sets the priority.
    allow_subject_priority: bool = False
    monitoring: tuple[MonitoringSource, ...] = ()
    # Whether a contact's #status lists every open ticket of the contract, not only theirs.
    status_all_tickets: bool = False


# A ticket number as people write it: leading zeros forgiven, at most 9 digits
# (a larger one is no ticket of ours and would overflow an INTEGER column).
_REF_NUMBER = r"0*([0-9]{1,9})"
# A reference typed by hand: "MT-12", "#MT-12", "[#mt-12]", "(MT - 12)", "12". The
# prefix is what config allows for ``mail.ticket_prefix``.
_REF = re.compile(
    rf"[\[(]?\s*#?\s*(?:([A-Za-z][A-Za-z0-9]{{0,9}})\s*-\s*)?{_REF_NUMBER}\s*[\])]?"
)


@lru_cache(maxsize=16)
def _tag_pattern(prefix: str) -> re.Pattern[str]:
    # Accept "[#MT-12]", "[MT-12]", "[# MT-12]" and "(#MT-12)": Outlook and some
    # mobile clients rewrite brackets, and people retype the tag by hand.
    return re.compile(
        rf"[\[(]\s*#?\s*{re.escape(prefix)}\s*-\s*{_REF_NUMBER}\s*[\])]", re.IGNORECASE
    )


@dataclass(frozen=True)
class TicketRef:
    """A ticket's public reference such as ``MT-1042``: the only place it is formatted or read."""

    prefix: str
    number: int

    def __str__(self) -> str:
        return f"{self.prefix}-{self.number}"

    @property
    def tag(self) -> str:
        """The subject tag that threads replies: ``[#MT-1042]``."""
        return f"[#{self}]"

    @classmethod
    def parse(cls, text: str, prefix: str | None = None) -> TicketRef | None:
        """A reference typed by a person (CLI argument, ``#merge``), or None.

        With ``prefix`` (the configured one) the text may carry it in any case or
        leave it out (``12``); another prefix is no reference of ours. Without it
        (syntax checks that do not know the config) a prefix is required and kept,
        upper-cased.
        """
        match = _REF.fullmatch(text.strip())
        if match is None:
            return None
        given, number = match.group(1), int(match.group(2))
        if prefix is None:
            return cls(given.upper(), number) if given else None
        if given is not None and given.upper() != prefix.upper():
            return None
        return cls(prefix, number)

    @classmethod
    def in_subject(cls, subject: str, prefix: str) -> tuple[TicketRef, ...]:
        """The tags with our prefix in a subject, in order of appearance, without repeats."""
        found: list[TicketRef] = []
        for match in _tag_pattern(prefix).finditer(subject):
            ref = cls(prefix, int(match.group(1)))
            if ref not in found:
                found.append(ref)
        return tuple(found)


@dataclass(frozen=True)
class Envelope:
    """The SMTP envelope (or IMAP account) a spooled mail arrived with."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    peer: str = ""
    auth_user: str | None = None
    source: str = "smtp"
    received_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)
