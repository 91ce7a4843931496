"""The typed configuration: the frozen dataclasses every other module receives.

Loading lives in :mod:`mailticket.config.load`; the readers that fill these
dataclasses from TOML are split by section (``validate``, ``sla``,
``contracts``, ``features``, ``read``, ``locate``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path

from mailticket.config.digest import DigestConfig
from mailticket.config.locate import format_key
from mailticket.errors import ConfigProblem
from mailticket.model import Calendar, Contract, Engineer, SlaPlan

__all__ = [
    "Config",
    "ContractTypeConfig",
    "DaemonConfig",
    "DatabaseConfig",
    "FeedbackConfig",
    "ImapAccountConfig",
    "KbConfig",
    "ListenerConfig",
    "MailConfig",
    "OncallConfig",
    "RelayConfig",
    "ReportsConfig",
    "RoutingRule",
    "WorkerConfig",
    "format_key",
    "parse_duration",
]


@dataclass(frozen=True)
class DaemonConfig:
    """Process-wide settings."""

    instance_id: str = "mailticket"
    data_dir: Path = Path("var")
    workers: int = 1
    log_format: str = "kv"  # "kv" or "json"
    log_level: str = "INFO"
    poll_interval: float = 0.5  # seconds a worker sleeps when the spool is empty
    # Prometheus /metrics endpoint; port 0 = off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # PostgreSQL: seconds without a heartbeat after which another instance's
    # claims are taken back (it beats every third of this).
    instance_grace: float = 15.0


@dataclass(frozen=True)
class DatabaseConfig:
    """Where tickets, the spool and the outbox live."""

    url: str = "sqlite:///var/mailticket.db"


@dataclass(frozen=True)
class ListenerConfig:
    """An SMTP (or LMTP) listener that accepts mail for our addresses into the spool."""

    host: str = "127.0.0.1"
    port: int = 2525
    protocol: str = "smtp"  # "smtp" or "lmtp"
    # The name in the 220 greeting and the EHLO/LHLO reply; empty: the host's FQDN
    # (which is often just "localhost" in a container).
    hostname: str = ""
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 20
    timeout: int = 60
    # Sessions open at once, in all and from one client IP; more are answered 421 and closed.
    max_connections: int = 100
    max_connections_per_ip: int = 10
    # Peers (addresses or networks) of our own MTA: not held to max_connections_per_ip
    # (Postfix flushing a backlog opens its whole LMTP concurrency from one address),
    # and they may use the reserved connections.
    trusted_peers: tuple[str, ...] = ("127.0.0.0/8", "::1")
    # Slots of max_connections (and on top of max_connections_per_ip) that only
    # trusted peers may take, so idle strangers cannot lock our MTA out.
    reserved_connections: int = 10
    # Refuse mail until the client has run STARTTLS (needs tls_cert and tls_key).
    require_starttls: bool = False
    # Submission listener for engineers: requires AUTH (after TLS when a cert is set).
    submission: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None


@dataclass(frozen=True)
class RelayConfig:
    """How outgoing mail leaves: an SMTP relay, or .eml files in a maildir when no host is set."""

    host: str = ""
    port: int = 25
    tls: str = "none"  # "none", "starttls" or "implicit"
    # CA bundle that verifies the relay's certificate; None trusts the system CAs.
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None
    maildir: Path = Path("var/outgoing")
    timeout: float = 30.0
    max_attempts: int = 10
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 3600.0


@dataclass(frozen=True)
class MailConfig:
    """Our own addresses and how the mail we send looks."""

    support_addresses: tuple[str, ...] = ("support@example.com",)
    # From of our mail, the base of every Reply-To token address and of the VERP
    # envelope sender; empty: the first support address (see ``sender_address``).
    from_address: str = ""
    from_name: str = "Support"
    message_id_domain: str = "mailticket.local"
    ticket_prefix: str = "MT"
    default_locale: str = "ru"
    reply_token_secret: str = "change-me"
    admin_addresses: tuple[str, ...] = ()
    # The admins' failure digest (digest.admin): at most one mail per this many minutes.
    admin_digest_minutes: int = 60
    # Outbox mail held back by relay errors this long counts as "relay refusing".
    relay_alert_minutes: int = 30
    # Notices to unknown senders, at most this many per sender per 24 h.
    unknown_sender_notices_per_day: int = 1
    # Automatic mail to one recipient per 24 h (RFC 3834 / Znuny's 40).
    auto_replies_per_recipient_per_day: int = 40
    # Per-address exceptions to that cap, lower-cased address → mails per 24 h.
    auto_reply_overrides: dict[str, int] = field(default_factory=dict, hash=False)
    # Authentication-Results authserv-ids whose DKIM results we trust.
    trusted_authserv_ids: tuple[str, ...] = ()
    # What an engineer's reply needs to act: "token+authenticated" (token, From and
    # SMTP AUTH or an aligned trusted DKIM/DMARC pass) or "token+sender" (token and
    # From only). Empty: the stricter one whenever trusted_authserv_ids or a
    # submission listener is configured (see ``engineer_evidence``).
    engineer_evidence: str = ""
    # Commands are refused from a reply token older than this (replies keep 90 days).
    command_token_days: int = 14
    # Reveal the engineer's name in replies to customers ("Anna via Support").
    show_engineer_name: bool = True
    # A customer reply to a resolved/closed ticket reopens it within this many
    # days; later it opens a new ticket that refers to the old one.
    reopen_window_days: int = 14
    # A customer reply whose first line is one of these closes the ticket.
    close_phrases: tuple[str, ...] = ("#close", "#закрыть")

    @property
    def sender_address(self) -> str:
        """The address our mail comes from, replies go to and bounces return to.

        Explicit, so that reordering ``support_addresses`` (say, listing an
        IMAP account's address first) cannot change all three at once.
        """
        return self.from_address or self.support_addresses[0]


@dataclass(frozen=True)
class WorkerConfig:
    """Retry policy of the spool workers."""

    max_attempts: int = 5
    lease_seconds: float = 300.0
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 600.0


@dataclass(frozen=True)
class ImapAccountConfig:
    """One IMAP mailbox polled into the spool (for support addresses hosted elsewhere)."""

    name: str
    host: str
    user: str
    address: str  # the support address this mailbox stands for
    port: int = 993
    tls: str = "implicit"  # "implicit", "starttls", or "none" (127.0.0.1 only)
    ca_file: Path | None = None
    password: str | None = None
    password_file: Path | None = None
    folder: str = "INBOX"
    processed_folder: str | None = None  # None: flag \Seen instead of moving
    oversize_folder: str = "mailticket-oversize"
    poll_interval: float = 60.0
    batch_size: int = 50
    max_message_size: int = 25 * 1024 * 1024


@dataclass(frozen=True)
class RoutingRule:
    """One ``[[routing]]`` rule: every condition given must match; the first rule that matches wins."""

    name: str = ""
    contracts: tuple[str, ...] = ()
    contract_types: tuple[str, ...] = ()
    sender_domains: tuple[str, ...] = ()
    # Any of these words (case-insensitive) in the subject.
    subject_keywords: tuple[str, ...] = ()
    source: str = "any"  # "any", "human" or "monitoring"
    line: str | None = None
    assignee: str | None = None
    priority: str | None = None


@dataclass(frozen=True)
class ContractTypeConfig:
    """``[contract_types.TYPE]``: the defaults a contract of that type starts from."""

    sla_plan: str | None = None
    line: str | None = None


@dataclass(frozen=True)
class KbConfig:
    """The knowledge base: Markdown articles in one folder (ru and en)."""

    dir: Path | None = None
    suggestions: int = 3
    # Cosine similarity below this is not worth an engineer's attention.
    min_score: float = 0.15


@dataclass(frozen=True)
class FeedbackConfig:
    """Rating requests on resolution, and who hears about a low rating."""

    enabled: bool = False
    low_rating: int = 2
    notify_lines: tuple[str, ...] = ("L3",)


@dataclass(frozen=True)
class OncallConfig:
    """``[oncall]``: a weekly rota of engineer pairs paged for critical tickets at any hour.

    Week ``k`` (counted from ``start`` at ``handover`` local time) is served by
    ``rota[k % len(rota)]``; an empty rota pages nobody.
    """

    rota: tuple[tuple[str, ...], ...] = ()
    start: date | None = None
    handover: time = time(10, 0)
    timezone: str = "Europe/Moscow"


@dataclass(frozen=True)
class ReportsConfig:
    """``[reports]``: the scheduled monthly report of each contract, and report recipients."""

    monthly: bool = False
    # Day of the month (1-28) and local time the previous month's report goes out.
    day: int = 1
    at: time = time(9, 0)
    timezone: str = "Europe/Moscow"
    # Copied on every monthly report, beside the contract's contacts.
    recipients: tuple[str, ...] = ()
    # Copied on every incident report, beside the ticket's and contract's contacts and
    # mail.admin_addresses.
    incident_recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: Path
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    listeners: tuple[ListenerConfig, ...] = (ListenerConfig(),)
    imap: tuple[ImapAccountConfig, ...] = ()
    relay: RelayConfig = field(default_factory=RelayConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    calendars: dict[str, Calendar] = field(default_factory=dict)
    sla_plans: dict[str, SlaPlan] = field(default_factory=dict)
    engineers: dict[str, Engineer] = field(default_factory=dict)
    contracts: dict[str, Contract] = field(default_factory=dict)
    templates_dir: Path = Path("templates")
    routing: tuple[RoutingRule, ...] = ()
    contract_types: dict[str, ContractTypeConfig] = field(default_factory=dict)
    kb: KbConfig = field(default_factory=KbConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    oncall: OncallConfig = field(default_factory=OncallConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    digest: DigestConfig = field(default_factory=DigestConfig)
    # Not errors: the config loads, but something will go wrong later (a national
    # calendar without this or next year's decree); check-config and status show them.
    warnings: tuple[ConfigProblem, ...] = ()


# A reply token's lifetime for replies (mail.addresses.verify_reply_token's default).
REPLY_TOKEN_DAYS = 90
EVIDENCE_AUTHENTICATED = "token+authenticated"
EVIDENCE_SENDER = "token+sender"
EVIDENCE_LEVELS = (EVIDENCE_AUTHENTICATED, EVIDENCE_SENDER)


def engineer_evidence(config: Config) -> str:
    """The evidence level in force: the configured one, else secure whenever it can be.

    A site that trusts an MTA's Authentication-Results or runs a submission
    listener can prove identity, so a token alone must not act there.
    """
    if config.mail.engineer_evidence:
        return config.mail.engineer_evidence
    if config.mail.trusted_authserv_ids or any(lst.submission for lst in config.listeners):
        return EVIDENCE_AUTHENTICATED
    return EVIDENCE_SENDER


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------

LOCALES = ("ru", "en")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


_DURATION = re.compile(r"(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?")


def parse_duration(value: object) -> int | None:
    """Minutes in ``"30m"``, ``"4h"``, ``"2d"``, ``"1h30m"``, ``"90"`` or ``90``; None if malformed.

    A day is 24 hours of the plan's calendar, not one business day.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        return None
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    return days * 1440 + hours * 60 + minutes
