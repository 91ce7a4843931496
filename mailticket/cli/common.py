"""What every command-line module needs: the config named by ``-c``, a session factory, times.

Shared by every module of ``cli`` so that each command loads the config, checks
the schema and finds a ticket by its reference the same way.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mailticket import config as config_mod
from mailticket.errors import NotFound
from mailticket.model import TicketRef
from mailticket.model import utc_now as utc_now
from mailticket.store import migrate
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import Ticket


def load_config(args: argparse.Namespace) -> config_mod.Config:
    """The validated config of ``-c FILE``; ConfigError (exit 2) when it is bad."""
    return config_mod.load(Path(args.config))


def session_factory(cfg: config_mod.Config) -> sessionmaker[Session]:
    """Sessions on the configured database; an old or missing schema is refused (exit 3)."""
    engine = make_engine(cfg.database.url)
    migrate.require_current(engine)
    return make_sessionmaker(engine)


def ticket_by_ref(
    session: Session, cfg: config_mod.Config, text: str
) -> tuple[TicketRef, Ticket]:
    """The ticket a reference such as ``MT-12`` names; NotFound (exit 4) when there is none."""
    ref = TicketRef.parse(text, cfg.mail.ticket_prefix)
    ticket = session.get(Ticket, ref.number) if ref is not None else None
    if ref is None or ticket is None:
        raise NotFound(f"no ticket {text}")
    return ref, ticket


def iso(value: datetime | None) -> str | None:
    """ISO 8601 for JSON output, None stays None."""
    return value.isoformat() if value else None
