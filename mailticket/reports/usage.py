"""What a contract's month used and how the customer rated it: two monthly-report sections.

Issue 8 §3 and §5. *Customer satisfaction* looks at the human tickets resolved
in the month (alert tickets are never asked for a rating): how many were asked,
how many rated, the average, the 1-5 distribution, and every ticket rated at or
below ``feedback.low_rating`` with the customer's comment. Unlike the rest of
the report, a ticket counts here in the month it was *resolved* in, because
that is when the customer is asked. Its rating is read when the month is
closed (the first build after the month ended, see
:mod:`mailticket.reports.month_close`): a rating that arrives later belongs to
no report, so the scheduled report and a rebuild print the same figures.

*Services used* says what the contract sells (its type) and what the month's
tickets (by opening, like the rest of the report) used of it: requests from
people vs. monitoring alerts, with the alert mails and flaps those took; the
contract type each ticket was opened under; the ``[[routing]]`` rules that
placed tickets (rule names are our configuration: only the provider's internal
variant prints them); and the engineer time recorded with ``#time`` during the
month. Only what the database records is reported, nothing is estimated.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.model import Contract, TicketRef
from mailticket.store.schema import AuditEvent, Ticket

SCORES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class LowRating:
    """One ticket the customer rated at or below the low threshold, with what they said."""

    ref: str
    subject: str
    rating: int
    comment: str
    rated_at: datetime | None


@dataclass(frozen=True)
class Satisfaction:
    """Ratings of the human tickets resolved in the month."""

    resolved: int = 0
    requested: int = 0
    rated: int = 0
    average: float | None = None
    # Tickets rated 1, 2, 3, 4 and 5.
    distribution: tuple[int, ...] = (0,) * 5
    low_threshold: int = 2
    low: tuple[LowRating, ...] = ()

    @property
    def percent_rated(self) -> float | None:
        """Rated tickets as a share of the resolved ones, in percent."""
        return round(100 * self.rated / self.resolved, 1) if self.resolved else None


@dataclass(frozen=True)
class Services:
    """The contract's type and what the month's tickets used of it."""

    contract_type: str = "technical_support"
    human: int = 0
    alerts: int = 0
    alert_mails: int = 0
    alert_flaps: int = 0
    # Contract type recorded on each ticket at opening (the contract's, if none was).
    by_contract_type: dict[str, int] = field(default_factory=dict)
    # ``[[routing]]`` rule name → tickets it placed, most first.
    by_rule: tuple[tuple[str, int], ...] = ()
    engineer_minutes: int = 0


def satisfaction(
    session: Session, config: Config, contract_id: str, start: datetime, end: datetime
) -> Satisfaction:
    """Ratings of ``contract_id``'s human tickets resolved in ``[start, end)``."""
    rows = list(session.execute(
        select(Ticket.id, Ticket.subject, Ticket.rating, Ticket.rating_comment,
               Ticket.rating_requested_at, Ticket.rated_at)
        .where(Ticket.contract_id == contract_id, Ticket.resolved_at >= start,
               Ticket.resolved_at < end, Ticket.merged_into.is_(None),
               Ticket.alert_key.is_(None))
        .order_by(Ticket.id)
    ))
    scores = [row.rating for row in rows if row.rating is not None]
    threshold = config.feedback.low_rating
    prefix = config.mail.ticket_prefix
    low = [
        LowRating(str(TicketRef(prefix, row.id)), row.subject, row.rating, row.rating_comment or "",
                  row.rated_at)
        for row in sorted(rows, key=lambda r: (r.rating or 0, r.id))
        if row.rating is not None and row.rating <= threshold
    ]
    counts = Counter(scores)
    return Satisfaction(
        resolved=len(rows),
        requested=sum(row.rating_requested_at is not None for row in rows),
        rated=len(scores),
        average=round(statistics.fmean(scores), 1) if scores else None,
        distribution=tuple(counts[score] for score in SCORES),
        low_threshold=threshold,
        low=tuple(low),
    )


def _rules(session: Session, ids: Sequence[int]) -> Counter[str]:
    """How many of these tickets each routing rule placed, from the ``routed`` audit events."""
    placed: dict[int, str | None] = {}
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        for ticket_id, detail in session.execute(
            select(AuditEvent.ticket_id, AuditEvent.detail)
            .where(AuditEvent.ticket_id.in_(chunk), AuditEvent.action == "routed")
            .order_by(AuditEvent.id)
        ):
            placed[ticket_id] = detail.get("rule")
    return Counter(rule for rule in placed.values() if rule)


def engineer_minutes(
    session: Session, contract_id: str, start: datetime, end: datetime
) -> int:
    """Minutes engineers recorded with ``#time`` on the contract's tickets during the month."""
    details = session.scalars(
        select(AuditEvent.detail)
        .join(Ticket, Ticket.id == AuditEvent.ticket_id)
        .where(Ticket.contract_id == contract_id, AuditEvent.action == "time",
               AuditEvent.at >= start, AuditEvent.at < end)
    )
    return sum(int(d.get("minutes") or 0) for d in details)


def services(
    session: Session, contract: Contract, tickets: Sequence[Ticket], start: datetime,
    end: datetime,
) -> Services:
    """What the month's tickets (opened in it) used of the contract."""
    alerts = [t for t in tickets if t.alert_key is not None]
    own = contract.contract_type.value
    types = Counter(t.contract_type or own for t in tickets)
    rules = _rules(session, [t.id for t in tickets])
    return Services(
        contract_type=own,
        human=len(tickets) - len(alerts),
        alerts=len(alerts),
        alert_mails=sum(t.alert_count for t in alerts),
        alert_flaps=sum(t.alert_flaps for t in alerts),
        by_contract_type=dict(sorted(types.items(), key=lambda kv: (kv[0] != own, kv[0]))),
        by_rule=tuple(sorted(rules.items(), key=lambda kv: (-kv[1], kv[0]))),
        engineer_minutes=engineer_minutes(session, contract.id, start, end),
    )



def satisfaction_to_json(value: Satisfaction) -> dict[str, Any]:
    """The satisfaction section as JSON for the month's close."""
    data = asdict(value)
    data["low"] = [{**asdict(low), "rated_at": low.rated_at.isoformat() if low.rated_at else None}
                   for low in value.low]
    return data


def satisfaction_from_json(data: Mapping[str, Any]) -> Satisfaction:
    """The satisfaction section back from a close's snapshot."""
    return Satisfaction(
        resolved=int(data["resolved"]), requested=int(data["requested"]),
        rated=int(data["rated"]), average=data["average"],
        distribution=tuple(int(n) for n in data["distribution"]),
        low_threshold=int(data["low_threshold"]),
        low=tuple(
            LowRating(str(low["ref"]), str(low["subject"]), int(low["rating"]),
                      str(low["comment"]),
                      datetime.fromisoformat(low["rated_at"]) if low["rated_at"] else None)
            for low in data["low"]
        ),
    )


def services_to_json(value: Services) -> dict[str, Any]:
    """The services section as JSON for the month's close."""
    data = asdict(value)
    data["by_contract_type"] = [list(pair) for pair in value.by_contract_type.items()]
    data["by_rule"] = [list(pair) for pair in value.by_rule]
    return data


def services_from_json(data: Mapping[str, Any]) -> Services:
    """The services section back from a close's snapshot."""
    return Services(
        contract_type=str(data["contract_type"]), human=int(data["human"]),
        alerts=int(data["alerts"]), alert_mails=int(data["alert_mails"]),
        alert_flaps=int(data["alert_flaps"]),
        by_contract_type={str(k): int(n) for k, n in data["by_contract_type"]},
        by_rule=tuple((str(rule), int(n)) for rule, n in data["by_rule"]),
        engineer_minutes=int(data["engineer_minutes"]),
    )
