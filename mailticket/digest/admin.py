"""The admins' failure digest: what needs a person, at most one mail per interval.

``mail.admin_addresses`` hear about quarantined mail, permanent delivery
failures, suppressed addresses, a relay that keeps refusing and a missing
production calendar (``attention`` finds them). A mail per failure would
flood them during an outage, so the scheduler asks every minute and at most
one digest goes out per ``mail.admin_digest_minutes``: it lists every event
since the previous digest, and each condition once a day while it holds (a
relay down all night is one line, not one per hour). Nothing new, no mail.

It goes through the outbox like any mail, in the admins' default locale, and
``digest_sent`` keeps the bookkeeping that makes it once-only across restarts
and instances: one row per digest (``admin:<slot of the day>``, unique, so two
instances never both send one) and one per condition reported that day.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailticket.digest import attention, morning
from mailticket.log import get as get_logger
from mailticket.outbound import notify
from mailticket.store.db import transaction
from mailticket.store.schema import DigestSent

log = get_logger("digest")

KIND = "admin_digest"
# ``digest_sent.recipient`` of the admins' bookkeeping rows: not an address, so no
# engineer's digest can ever collide with it.
ADMINS = "@admins"
_DIGEST = "admin:"
_CONDITION = "cond:"
# The first digest covers at most this much of the past.
FIRST_WINDOW = timedelta(hours=24)


def last_sent(session: Session) -> datetime | None:
    """When the latest admin digest was queued, if ever."""
    return session.scalar(
        select(DigestSent.created_at)
        .where(DigestSent.recipient == ADMINS, DigestSent.kind.startswith(_DIGEST))
        .order_by(DigestSent.created_at.desc()).limit(1))


def _condition_kind(item: attention.Item) -> str:
    # digest_sent.kind holds 32 characters; a calendar id may be longer.
    return _CONDITION + hashlib.sha256(item.key.encode()).hexdigest()[:27]


def _reported_today(session: Session, item: attention.Item, now: datetime) -> bool:
    return session.scalar(select(DigestSent.id).where(
        DigestSent.recipient == ADMINS, DigestSent.kind == _condition_kind(item),
        DigestSent.day == now.date())) is not None


def send_due(factory: sessionmaker[Session], notifier: notify.Notifier,
             now: datetime) -> list[attention.Item]:
    """Queue the admins' digest if one is due and there is news; returns what it listed."""
    config = notifier.config
    admins = list(config.mail.admin_addresses)
    if not admins:
        return []
    interval = config.mail.admin_digest_minutes
    with transaction(factory) as session:
        previous = last_sent(session)
        if previous is not None and now - previous < timedelta(minutes=interval):
            return []
        since = previous if previous is not None else now - FIRST_WINDOW
        news = attention.events(session, since, now)
        held = [c for c in attention.conditions(session, config, now)
                if not _reported_today(session, c, now)]
        if not news and not held:
            return []
        slot = (now.hour * 60 + now.minute) // interval
        if not morning.claim(session, ADMINS, f"{_DIGEST}{slot}", now.date(), now):
            return []  # another instance sent this slot's digest
        for item in held:
            morning.claim(session, ADMINS, _condition_kind(item), now.date(), now)
        counts = {kind: sum(1 for item in news if item.kind == kind) for kind in attention.EVENTS}
        notify.queue_mail(
            session, notifier, kind=KIND, to=admins, template="admin_digest",
            locale=config.mail.default_locale, now=now, auto_submitted="auto-generated",
            context={"events": [asdict(i) for i in news],
                     "conditions": [asdict(i) for i in held],
                     "counts": counts, "since": since, "now": now,
                     "timezone": config.reports.timezone,
                     "instance": config.daemon.instance_id},
        )
    log.warning("admin digest queued", extra={
        "recipients": admins, "events": len(news), "conditions": len(held),
        "kinds": ",".join(sorted({i.kind for i in (*news, *held)})),
        "since": since.isoformat(timespec="seconds")})
    return [*news, *held]
