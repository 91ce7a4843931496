"""What needs a person: the items of the admins' failure digest and of ``mailticket status``.

Two kinds of item. *Events* happened once and are reported once, in the
digest after them: mail quarantined in the spool, a permanent delivery failure
(a bounce, or the relay refusing a recipient or a whole mail), an address
suppressed. *Conditions* hold until someone acts: the relay has held outgoing
mail back for ``mail.relay_alert_minutes``, or a calendar's national
production calendar lacks a decree deadlines will need (this year's, and
next year's from October on). Both are read from the database and the config
alone, so the digest and ``status`` list the same things whichever instance
asks. Each item has a stable ``key``, so a condition can be reported once a
day rather than in every digest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.config.sla import NEXT_YEAR_DECREE_MONTH
from mailticket.sla import production_calendar
from mailticket.store.schema import (
    AddressSuppression,
    DeliveryFailure,
    OutboxItem,
    QueueState,
    SpoolItem,
)

QUARANTINED = "quarantined"
DELIVERY_FAILED = "delivery_failed"
SUPPRESSED = "suppressed"
RELAY_REFUSING = "relay_refusing"
CALENDAR_MISSING = "calendar_missing"
EVENTS = (QUARANTINED, DELIVERY_FAILED, SUPPRESSED)
CONDITIONS = (RELAY_REFUSING, CALENDAR_MISSING)
# Events listed at most per kind, newest first; the count says how many there were.
LIMIT = 50


@dataclass(frozen=True)
class Item:
    """One thing an admin should look at.

    ``subject`` and ``detail`` are the English line ``status`` prints; ``facts``
    are the same data by name, for the digest's templates to phrase in ru or en.
    """

    kind: str
    key: str
    at: datetime
    subject: str
    detail: str
    facts: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``status --json`` and the templates."""
        data = asdict(self)
        data["at"] = self.at.isoformat(timespec="seconds")
        return data


def _one_line(text: str | None, width: int = 300) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def events(session: Session, since: datetime, until: datetime) -> list[Item]:
    """Every event in ``(since, until]``, oldest first."""
    found: list[Item] = []
    spool = session.scalars(
        select(SpoolItem).where(SpoolItem.state == QueueState.QUARANTINED,
                                SpoolItem.finished_at > since, SpoolItem.finished_at <= until)
        .order_by(SpoolItem.finished_at.desc()).limit(LIMIT)).all()
    found += [Item(QUARANTINED, f"spool:{r.id}", r.finished_at or r.created_at,
                   f"spool #{r.id} from {r.mail_from or '<>'} ({r.source})",
                   _one_line(r.outcome or r.last_error),
                   {"id": r.id, "mail_from": r.mail_from or "<>", "source": r.source})
              for r in spool]
    failures = session.scalars(
        select(DeliveryFailure).where(DeliveryFailure.permanent.is_(True),
                                      DeliveryFailure.at > since, DeliveryFailure.at <= until)
        .order_by(DeliveryFailure.at.desc()).limit(LIMIT)).all()
    found += [Item(DELIVERY_FAILED, f"failure:{f.id}", f.at,
                   f"{f.address} ({f.source}" + (f", outbox #{f.outbox_id})" if f.outbox_id else ")"),
                   _one_line(f.detail),
                   {"address": f.address, "source": f.source, "outbox_id": f.outbox_id or 0})
              for f in failures]
    # A relay refusing for policy (5.7.x) records no DeliveryFailure: the row says it.
    counted = {f.outbox_id for f in failures}
    refused = session.scalars(
        select(OutboxItem).where(OutboxItem.state == QueueState.FAILED,
                                 OutboxItem.finished_at > since, OutboxItem.finished_at <= until)
        .order_by(OutboxItem.finished_at.desc()).limit(LIMIT)).all()
    found += [Item(DELIVERY_FAILED, f"outbox:{r.id}", r.finished_at or r.created_at,
                   f"outbox #{r.id} {r.kind} to {', '.join(r.rcpt_tos)}",
                   _one_line(r.last_error),
                   {"address": ", ".join(r.rcpt_tos), "source": "relay", "outbox_id": r.id})
              for r in refused if r.id not in counted]
    suppressed = session.scalars(
        select(AddressSuppression).where(AddressSuppression.suppressed_at > since,
                                         AddressSuppression.suppressed_at <= until)
        .order_by(AddressSuppression.suppressed_at.desc()).limit(LIMIT)).all()
    found += [Item(SUPPRESSED, f"suppressed:{s.address}", s.suppressed_at or until, s.address,
                   _one_line(s.reason), {"address": s.address, "failures": s.permanent_failures})
              for s in suppressed
              if s.cleared_at is None or (s.suppressed_at and s.cleared_at < s.suppressed_at)]
    return sorted(found, key=lambda item: (item.at, item.kind, item.key))


def conditions(session: Session, config: Config, now: datetime) -> list[Item]:
    """The conditions that hold at ``now``."""
    found: list[Item] = []
    relay = relay_refusing(session, now, config.mail.relay_alert_minutes)
    if relay is not None:
        found.append(relay)
    found += calendars_missing(config, now.date(), now)
    return found


def relay_refusing(session: Session, now: datetime, minutes: int) -> Item | None:
    """Outgoing mail waiting behind relay errors for ``minutes`` or more, if any."""
    stuck = (OutboxItem.state.in_([QueueState.QUEUED, QueueState.CLAIMED])
             & OutboxItem.last_error.is_not(None)
             & (OutboxItem.created_at <= now - timedelta(minutes=minutes)))
    oldest = session.scalars(select(OutboxItem).where(stuck)
                             .order_by(OutboxItem.created_at, OutboxItem.id).limit(1)).first()
    if oldest is None:
        return None
    count = session.scalar(select(func.count()).select_from(OutboxItem).where(stuck)) or 0
    waited = int((now - oldest.created_at).total_seconds() // 60)
    return Item(RELAY_REFUSING, "relay", oldest.created_at,
                f"{count} outgoing mail(s) held back by relay errors, the oldest {waited} min",
                _one_line(oldest.last_error), {"count": count, "minutes": waited})


def calendars_missing(config: Config, today: date, now: datetime) -> list[Item]:
    """Calendars whose national production calendar lacks a decree deadlines need."""
    years = [today.year] + ([today.year + 1] if today.month >= NEXT_YEAR_DECREE_MONTH else [])
    found = []
    for cid, calendar in sorted(config.calendars.items()):
        if calendar.country is None:
            continue
        missing = [y for y in years if production_calendar.decree_missing(calendar.country, y)]
        if missing:
            listed = ", ".join(map(str, missing))
            found.append(Item(
                CALENDAR_MISSING, f"calendar:{cid}:{listed}", now,
                f"calendar {cid}: no {calendar.country} production calendar for {listed}",
                f"holidays {production_calendar.package_version()} lacks the decree of moved "
                "days off; upgrade it or list the days in the calendar",
                {"calendar": cid, "country": calendar.country, "years": listed,
                 "package": production_calendar.package_version()}))
    return found


def listing(session: Session, config: Config, now: datetime,
            window: timedelta = timedelta(hours=24)) -> dict[str, Any]:
    """What ``status`` shows: the events of the last ``window`` and the conditions now."""
    recent = events(session, now - window, now)
    return {
        "events": [item.as_dict() for item in recent],
        "conditions": [item.as_dict() for item in conditions(session, config, now)],
        "counts": {kind: sum(1 for item in recent if item.kind == kind) for kind in EVENTS},
    }
