"""The last poll of each IMAP account, kept in the database for ``mailticket status``.

``status`` runs as a separate process (and with PostgreSQL any instance may
have done the polling), so what a poller knows in memory is of no use to it.
After every poll the poller writes one row per account: when, the outcome
(``ok`` or the fault kind), the error text, how many messages it fetched and
how many of them were new, and when the account last polled without a fault.
Saving this is best effort: a database hiccup here is logged and never stops
mail from being fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailticket import log
from mailticket.errors import StoreError
from mailticket.store.db import transaction
from mailticket.store.schema import ImapPollState

OK = "ok"
MAX_ERROR_CHARS = 2000

_log = log.get("imap")


@dataclass(frozen=True)
class PollResult:
    """What one poll of one account came to."""

    account: str
    polled_at: datetime
    outcome: str = OK
    error: str | None = None
    fetched: int = 0
    spooled: int = 0


def record_poll(factory: sessionmaker[Session], result: PollResult) -> bool:
    """Save ``result`` as the account's last poll; False (and a log line) if it could not be."""
    try:
        with transaction(factory) as session:
            row = session.get(ImapPollState, result.account)
            if row is None:
                row = ImapPollState(account=result.account)
                session.add(row)
            row.polled_at = result.polled_at
            row.outcome = result.outcome
            row.error = result.error[:MAX_ERROR_CHARS] if result.error else None
            row.fetched = result.fetched
            row.spooled = result.spooled
            if result.outcome == OK:
                row.last_ok_at = result.polled_at
    except (StoreError, SQLAlchemyError) as exc:
        _log.warning(
            "imap poll state not saved",
            extra={"account": result.account, "error": str(exc)[:200]},
        )
        return False
    return True


def poll_states(session: Session) -> list[ImapPollState]:
    """Every account's last poll, by account name."""
    return list(session.scalars(select(ImapPollState).order_by(ImapPollState.account)))
