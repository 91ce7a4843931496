"""An engineer's queue (issue 16, point 2): what is theirs, what waits for their line, and
what belongs to the contracts they look after.

Three sections, each ticket once, in this order: tickets assigned to them;
unassigned tickets of their line; tickets of contracts where they are the
dedicated engineer or the deputy. A filter narrows every section: a line
(``L2``: the unassigned section shows that line instead of theirs), a contract
id (``acme``) or ``overdue``. Unknown words are returned so the answer can say
which filters it ignored rather than silently show everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.digest import rows as row_mod
from mailticket.model import Engineer, Line
from mailticket.store.schema import Ticket

OVERDUE_WORDS = ("overdue", "просрочено", "просрочка")


@dataclass(frozen=True)
class QueueFilter:
    """What ``#queue …`` asked for; empty means everything."""

    line: Line | None = None
    contract: str | None = None
    overdue: bool = False
    unknown: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """The filters in force, as the answer repeats them."""
        return [w for w in (self.line.value if self.line else None, self.contract,
                            "overdue" if self.overdue else None) if w]


def parse_filter(config: Config, words: Sequence[str]) -> QueueFilter:
    """``["L2", "acme", "overdue"]`` → a filter; words that are none of these are kept aside."""
    line: Line | None = None
    contract: str | None = None
    overdue = False
    unknown: list[str] = []
    for word in words:
        if word.upper() in Line.__members__:
            line = Line(word.upper())
        elif word.casefold() in OVERDUE_WORDS:
            overdue = True
        elif word.lower() in config.contracts:
            contract = word.lower()
        else:
            unknown.append(word)
    return QueueFilter(line, contract, overdue, tuple(unknown))


@dataclass(frozen=True)
class Section:
    """One titled part of a queue: ``mine``, ``line`` or ``contracts``."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def _open(query: Any) -> Any:
    return query.where(Ticket.status.in_(row_mod.OPEN_STATUSES)).order_by(Ticket.id)


def engineer_contracts(config: Config, engineer: str) -> list[str]:
    """Contracts where ``engineer`` is the dedicated engineer or the deputy."""
    return sorted(c.id for c in config.contracts.values()
                  if engineer in (c.dedicated_engineer, c.deputy_engineer))


def sections(session: Session, config: Config, engineer: Engineer, now: datetime,
             wanted: QueueFilter | None = None) -> list[Section]:
    """The engineer's queue at ``now``, each section sorted by urgency."""
    wanted = wanted or QueueFilter()
    line = wanted.line or engineer.line
    found: list[tuple[str, Sequence[Ticket]]] = [
        ("mine", session.scalars(_open(select(Ticket).where(
            Ticket.assignee == engineer.address))).all()),
        ("line", session.scalars(_open(select(Ticket).where(
            Ticket.assignee.is_(None), Ticket.line == line.value))).all()),
    ]
    contracts = engineer_contracts(config, engineer.address)
    if contracts:
        found.append(("contracts", session.scalars(_open(select(Ticket).where(
            Ticket.contract_id.in_(contracts)))).all()))
    seen: set[int] = set()
    out: list[Section] = []
    for name, tickets in found:
        keep = [t for t in tickets if t.id not in seen and _wanted(t, wanted)]
        seen.update(t.id for t in keep)
        items = row_mod.rows(session, config, keep, engineer.address, now, engineer.timezone)
        if wanted.overdue:
            items = [item for item in items if item["overdue"]]
        out.append(Section(name, row_mod.by_urgency(items)))
    return out


def _wanted(ticket: Ticket, wanted: QueueFilter) -> bool:
    if wanted.line is not None and ticket.line != wanted.line.value:
        return False
    return wanted.contract is None or ticket.contract_id == wanted.contract
