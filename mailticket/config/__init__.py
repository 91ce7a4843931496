"""config: the one TOML file an admin edits, read into frozen typed dataclasses.

Owns: reading, typing and validating the file (every problem with file, line,
key and reason), the national production calendar lookup and the engineer
password format. Callers use this package's names (``Config``, ``load``,
``check``, ``format_problems``); only ``daemon`` and ``cli`` call ``load``.
May import: ``sla`` (calendar arithmetic), ``model``, ``errors``. Part of the
pure core: no SQLAlchemy, Jinja2, aiosmtpd, imapclient or APScheduler.
"""

from mailticket.config.digest import DigestConfig, EngineerDigest
from mailticket.config.load import check, format_problems, load
from mailticket.config.settings import (
    EVIDENCE_AUTHENTICATED,
    EVIDENCE_LEVELS,
    EVIDENCE_SENDER,
    Config,
    ContractTypeConfig,
    DaemonConfig,
    DatabaseConfig,
    FeedbackConfig,
    ImapAccountConfig,
    KbConfig,
    ListenerConfig,
    MailConfig,
    OncallConfig,
    RelayConfig,
    ReportsConfig,
    RoutingRule,
    WorkerConfig,
    engineer_evidence,
    format_key,
    parse_duration,
)

__all__ = [
    "EVIDENCE_AUTHENTICATED",
    "EVIDENCE_LEVELS",
    "EVIDENCE_SENDER",
    "Config",
    "ContractTypeConfig",
    "DaemonConfig",
    "DatabaseConfig",
    "DigestConfig",
    "EngineerDigest",
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
    "check",
    "engineer_evidence",
    "format_key",
    "format_problems",
    "load",
    "parse_duration",
]
