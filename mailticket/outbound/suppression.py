"""The suppression list: addresses we stop mailing after repeated permanent failures.

Mail to a dead mailbox bounces every time; going on sending it costs the
relay's reputation and fills the ticket with noise. So every delivery failure
is recorded (a bounce matched by its VERP address, or our relay refusing a
recipient at RCPT with a "no such mailbox" code), and when an address collects
:data:`PERMANENT_FAILURE_THRESHOLD` permanent failures within
:data:`WINDOW_DAYS`, it is suppressed: ``notify.queue_mail`` leaves it out
until an admin clears it (``mailticket suppression clear``).
This is Mailman's bounce score, simplified (SECURITY.md R3.4).

A failure is only recorded from evidence we issued: a bounce counts only when
its VERP MAC is valid, so a forged bounce cannot switch off anyone's mail. One
outbox row counts once per address and source, so a DSN sent twice for the
same mail is not two failures. Soft failures (4.x.x, "delayed") are recorded
for the engineer but never count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from mailticket.log import get as get_logger
from mailticket.mail.addresses import normalise_address
from mailticket.store.schema import AddressSuppression, DeliveryFailure

PERMANENT_FAILURE_THRESHOLD = 3
WINDOW_DAYS = 30

log = get_logger("suppression")

# A relay's 5xx at RCPT says something about the mailbox only with one of these
# RFC 3463 codes: bad mailbox (5.1.1), domain (5.1.2), syntax (5.1.3), moved
# (5.1.6), null MX (5.1.10), disabled (5.2.1). Policy refusals (5.7.x "relay
# access denied") say something about us, and must not suppress every customer
# of a misconfigured relay.
_MAILBOX_REFUSAL = re.compile(r"^5\d\d[ -]5\.(?:1\.(?:1|2|3|6|10)|2\.1)(?!\.?\d)")


@dataclass(frozen=True)
class SuppressedAddress:
    """One row of ``mailticket suppression list``."""

    address: str
    reason: str
    permanent_failures: int
    suppressed_at: datetime | None
    cleared_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether mail to the address is stopped now (not cleared since)."""
        if self.suppressed_at is None:
            return False
        return self.cleared_at is None or self.cleared_at < self.suppressed_at


def key_of(address: str) -> str:
    """The address as the suppression list stores it: the strict addr-spec, lower-cased
    with an IDNA domain (R5.4)."""
    return normalise_address(address) or address.strip().lower()


def _row(session: Session, address: str) -> AddressSuppression | None:
    return session.get(AddressSuppression, address)


# The SQL form of :func:`_active`: a suppression not cleared since it was set.
_ACTIVE: ColumnElement[bool] = and_(
    AddressSuppression.suppressed_at.is_not(None),
    or_(AddressSuppression.cleared_at.is_(None),
        AddressSuppression.cleared_at < AddressSuppression.suppressed_at),
)


# The active suppressions among the addresses bound as ``keys`` (list of key_of values).
ACTIVE_AMONG_KEYS: ColumnElement[bool] = and_(
    AddressSuppression.address.in_(bindparam("keys", expanding=True)), _ACTIVE)
_SUPPRESSED = select(AddressSuppression.address).where(ACTIVE_AMONG_KEYS)


def _active(row: AddressSuppression | None) -> bool:
    if row is None or row.suppressed_at is None:
        return False
    return row.cleared_at is None or row.cleared_at < row.suppressed_at


def is_permanent(status: str, action: str = "failed") -> bool:
    """Whether a DSN ``Status``/``Action`` pair (or a relay reply) is a permanent failure."""
    if status.strip().startswith("4"):
        return False
    return action.strip().lower() not in ("delayed", "relayed", "delivered", "expanded")


def mailbox_refusal(reply: str) -> bool:
    """Whether a relay's reply (``"550 5.1.1 …"``) says the mailbox itself is gone."""
    return _MAILBOX_REFUSAL.match(reply.strip()) is not None


def record_failure(
    session: Session,
    address: str,
    *,
    source: str,
    detail: str,
    now: datetime,
    permanent: bool = True,
    outbox_id: int | None = None,
    ticket_id: int | None = None,
) -> bool:
    """Record one failed delivery; returns True when this failure suppressed the address.

    :param source: ``"bounce"`` (a DSN with a valid VERP MAC) or ``"relay"`` (a 5xx at
        RCPT for which :func:`mailbox_refusal` holds).
    """
    key = key_of(address)
    if not key:
        return False
    if outbox_id is not None:
        seen = session.scalar(
            select(DeliveryFailure.id).where(
                DeliveryFailure.address == key,
                DeliveryFailure.outbox_id == outbox_id,
                DeliveryFailure.source == source,
            ).limit(1)
        )
        if seen is not None:
            return False
    session.add(
        DeliveryFailure(
            address=key, source=source, permanent=permanent, detail=detail[:1000],
            outbox_id=outbox_id, ticket_id=ticket_id, at=now,
        )
    )
    session.flush()
    if not permanent:
        return False
    row = _row(session, key)
    since = now - timedelta(days=WINDOW_DAYS)
    if row is not None and row.cleared_at is not None and row.cleared_at > since:
        # Failures before an admin cleared the address do not count again.
        since = row.cleared_at
    count = int(
        session.scalar(
            select(func.count()).select_from(DeliveryFailure).where(
                DeliveryFailure.address == key,
                DeliveryFailure.permanent.is_(True),
                DeliveryFailure.at >= since,
            )
        ) or 0
    )
    if row is None:
        row = AddressSuppression(address=key, reason="", permanent_failures=0)
        session.add(row)
    row.permanent_failures = count
    if count < PERMANENT_FAILURE_THRESHOLD or _active(row):
        session.flush()
        return False
    row.suppressed_at = now
    row.reason = f"{count} permanent failures in {WINDOW_DAYS} days; last: {detail[:500]}"
    session.flush()
    log.warning("address suppressed", extra={"address": key, "failures": count,
                                              "source": source, "outbox_id": outbox_id})
    return True


def is_suppressed(session: Session, address: str) -> bool:
    """Whether mail to ``address`` is stopped."""
    return _active(_row(session, key_of(address)))


def suppressed_among(session: Session, addresses: Iterable[str]) -> set[str]:
    """The subset of ``addresses`` (as given) that is suppressed, in one query.

    Core on the session's connection, not an ORM query: an ORM statement would
    first send every row the mail has buffered (``store.after_flush``), and
    they would go out in two batches instead of one. Suppression rows are
    written by the ORM and flushed where they change (:func:`record_failure`,
    :func:`clear`), so there is nothing pending to flush first.
    """
    given = {a: key_of(a) for a in addresses}
    if not given:
        return set()
    rows = session.connection().execute(_SUPPRESSED, {"keys": sorted(set(given.values()))})
    active = set(rows.scalars())
    return {a for a, key in given.items() if key in active}


def clear(session: Session, address: str, now: datetime) -> bool:
    """Let mail to ``address`` go out again (an admin action); False if it was not suppressed."""
    row = _row(session, key_of(address))
    if not _active(row):
        return False
    assert row is not None
    row.cleared_at = now
    row.permanent_failures = 0
    session.flush()
    log.info("address suppression cleared", extra={"address": row.address})
    return True


def listing(session: Session, *, include_cleared: bool = False) -> list[SuppressedAddress]:
    """Suppressed addresses (and, on request, cleared ones), oldest first."""
    rows = session.scalars(
        select(AddressSuppression)
        .where(AddressSuppression.suppressed_at.is_not(None))
        .order_by(AddressSuppression.suppressed_at)
    ).all()
    return [
        SuppressedAddress(r.address, r.reason, r.permanent_failures, r.suppressed_at,
                          r.cleared_at)
        for r in rows
        if include_cleared or _active(r)
    ]


def failures(session: Session, address: str, limit: int = 50) -> list[DeliveryFailure]:
    """The failures recorded for ``address``, newest first (what the admin reviews)."""
    return list(
        session.scalars(
            select(DeliveryFailure)
            .where(DeliveryFailure.address == key_of(address))
            .order_by(DeliveryFailure.at.desc(), DeliveryFailure.id.desc())
            .limit(limit)
        ).all()
    )
