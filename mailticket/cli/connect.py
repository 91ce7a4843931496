"""``check-config --connect``: reach everything the config names and say, line by line, what answered.

A config can be valid and still point at a relay on a closed port, a database
the daemon cannot open or at an old schema, or an IMAP password that no longer
works; the daemon would only find out when the first mail is due, and then
retry quietly. Each check prints one line, ``<what> <where>: ok (<detail>)`` or
``<what> <where>: FAILED: <reason>``, and any failure makes the command exit 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from mailticket.config import Config, DatabaseConfig, RelayConfig
from mailticket.intake.imap import check_login
from mailticket.relay.probe import probe_relay
from mailticket.store import migrate
from mailticket.store.db import make_engine


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    what: str
    where: str
    error: str | None
    detail: str = ""

    def line(self) -> str:
        """``relay 127.0.0.1:25: ok (EHLO mx)`` or ``… FAILED: connection refused``."""
        if self.error is not None:
            return f"{self.what} {self.where}: FAILED: {self.error}"
        return f"{self.what} {self.where}: ok" + (f" ({self.detail})" if self.detail else "")


def check_relay(relay: RelayConfig) -> Check:
    """The relay session the outbox drainer would open, or the maildir when no relay is set."""
    if not relay.host:
        return Check("relay", "none", None, f"outgoing mail is written to {relay.maildir}/new")
    probe = probe_relay(relay)
    return Check("relay", probe.where, probe.error, ", ".join(probe.steps))


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL (None for other URLs and in-memory databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return None if parsed.database == ":memory:" else Path(parsed.database)


def check_database(database: DatabaseConfig) -> Check:
    """Connect and compare the schema revision with the one this code needs."""
    try:
        shown = make_url(database.url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        return Check("database", "?", f"not a database URL: {exc}")
    file = _sqlite_file(database.url)
    if file is not None and not file.exists():
        # Opening it would create it; the daemon does that on its first start.
        return Check("database", shown, None, "no database file yet; `serve` creates it")
    engine = make_engine(database.url)
    try:
        current = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return Check("database", shown, f"cannot connect: {reason}")
    finally:
        engine.dispose()
    head = migrate.head_revision()
    if current is None:
        return Check("database", shown, None, "empty; `serve` initialises it")
    if current != head:
        return Check("database", shown,
                     f"schema is at {current}, this version needs {head}: "
                     f"run `mailticket -c CONFIG db upgrade`")
    return Check("database", shown, None, f"schema {current}, current")


def check_everything(config: Config, emit: Callable[[str], None]) -> int:
    """Run every check, emit one line each; the number of failures."""
    checks = [check_relay(config.relay), check_database(config.database)]
    for check in checks:
        emit(check.line())
    failed = sum(check.error is not None for check in checks)
    for account in config.imap:
        error = check_login(account)
        login = f"{account.user}@{account.host}:{account.port}"
        check = Check("imap", account.name,
                      None if error is None else f"{error} ({login})",
                      f"{login}, folder {account.folder}")
        emit(check.line())
        failed += error is not None
    return failed
