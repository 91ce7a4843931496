"""One durable work-queue mechanism for the spool and the outbox tables.

Mailman's switchboard semantics (``.pck`` → ``.bak`` → done or shunt) in SQL:
``put`` with an optional idempotency key, ``claim`` with a lease (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, so several instances share the work), ``finish``
inside the caller's transaction, ``retry_later`` with capped exponential
backoff, and ``quarantine`` after the last attempt. An expired lease (a
crashed worker) makes the row claimable again, so nothing is ever lost; a
claim names its holder (``claimed_by``), so when the holder is known to be
dead :func:`expire_held_by` ends its leases at once instead (``runners.recovery``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypeVar, cast

from sqlalchemy import Select, Table, Update, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailticket.store.schema import OutboxItem, QueueRow, QueueState, SpoolItem

Row = TypeVar("Row", SpoolItem, OutboxItem)


@dataclass(frozen=True)
class Claim:
    """A leased queue row: its id and the token that proves we still hold it."""

    id: int
    token: str
    attempts: int
    # The row's columns right after the claim (id, raw, state …); None if not given.
    values: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Capped exponential backoff: base, 2·base, 4·base … never above ``cap``."""
    return float(min(cap, base * (2 ** max(0, attempts - 1))))


def put_spool(session: Session, item: SpoolItem) -> tuple[SpoolItem, bool]:
    """Add a spool row; with an idempotency key a second put returns the first row.

    Returns the row and whether it was newly created. Uses a savepoint so a
    duplicate key does not abort the caller's transaction.
    """
    if item.idempotency_key is not None:
        existing = session.scalar(
            select(SpoolItem).where(SpoolItem.idempotency_key == item.idempotency_key)
        )
        if existing is not None:
            return existing, False
    try:
        with session.begin_nested():
            session.add(item)
    except IntegrityError:
        if item.idempotency_key is None:
            # Not a duplicate (``key == None`` would match any keyless row): a real refusal.
            raise
        existing = session.scalar(
            select(SpoolItem).where(SpoolItem.idempotency_key == item.idempotency_key)
        )
        if existing is None:
            raise
        return existing, False
    return item, True


@cache
def _claim_statements(model: type[Row]) -> tuple[Select[Any], Select[Any], Update]:
    """The claim's Core statements for one queue table, built once.

    Two picks, each one seek of the ``(state, next_attempt_at, id)`` index that
    stops at its first row: the oldest due ``queued`` row, and the oldest
    ``claimed`` row whose lease ran out. One query with ``OR`` over both would
    read (and, for ``ORDER BY … LIMIT 1``, sort) every due row of the queue for
    each claim: a full scan of the spool on SQLite once history piles up, and a
    sort of the whole backlog on PostgreSQL. The plans are pinned by
    ``tests/integration/test_claim_plan.py``.

    Core, not ORM: a claim per message is a hot path, and these rows are read
    back as objects only when the caller asks (``session.get``).
    """
    table = cast(Table, model.__table__)
    now = bindparam("now", type_=table.c.next_attempt_at.type)
    order = (table.c.next_attempt_at, table.c.id)
    due = (
        select(table)
        .where(table.c.state == QueueState.QUEUED, table.c.next_attempt_at <= now)
        .order_by(*order)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    expired = (
        select(table)
        .where(table.c.state == QueueState.CLAIMED, table.c.lease_until < now)
        .order_by(*order)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    take = (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(state=QueueState.CLAIMED, claim_token=bindparam("token"),
                lease_until=bindparam("until"), attempts=bindparam("tries"),
                claimed_by=bindparam("holder"))
    )
    return due, expired, take


def claim_queries(model: type[Row]) -> tuple[Select[Any], Select[Any]]:
    """The two statements a claim picks its row with (due, expired lease), for plan tests."""
    due, expired, _ = _claim_statements(model)
    return due, expired


def claim(
    session: Session, model: type[Row], now: datetime, lease_seconds: float,
    holder: str | None = None,
) -> Claim | None:
    """Lease the oldest due row, counting the attempt; None when nothing is due.

    The attempt is counted at claim time so that a message that crashes the
    whole process (kill -9, OOM) still runs out of attempts and is quarantined.
    The returned claim carries the row's columns as they are now (``values``).
    ``holder`` names the daemon process taking it (``runners.recovery``).
    A row whose lease expired competes with the due rows by ``next_attempt_at``
    and id, as it always did.
    """
    due, expired, take = _claim_statements(model)
    conn = session.connection()
    # Expired leases are rare (a crashed or stalled worker), so this is an empty seek.
    row = conn.execute(expired, {"now": now}).mappings().first()
    queued = conn.execute(due, {"now": now}).mappings().first()
    if row is None or (
        queued is not None
        and (queued["next_attempt_at"], queued["id"]) < (row["next_attempt_at"], row["id"])
    ):
        row = queued
    if row is None:
        return None
    token = secrets.token_hex(16)
    until = now + timedelta(seconds=lease_seconds)
    attempts = row["attempts"] + 1
    conn.execute(take, {"row_id": row["id"], "token": token, "until": until, "tries": attempts,
                        "holder": holder})
    values = {**row, "state": QueueState.CLAIMED, "claim_token": token, "lease_until": until,
              "attempts": attempts, "claimed_by": holder}
    return Claim(id=row["id"], token=token, attempts=attempts, values=values)


def still_held(session: Session, model: type[Row], held: Claim) -> bool:
    """Whether ``held`` is still the row's current lease; locks the row on PostgreSQL.

    Reads only the id: a caller that already has the claimed values (the spool
    worker) need not fetch the raw mail a second time.
    """
    return session.scalar(
        select(model.id)
        .where(model.id == held.id, model.claim_token == held.token)
        .with_for_update()
    ) is not None


def holds(session: Session, model: type[Row], held: Claim) -> Row | None:
    """The row if ``held`` is still its current lease (locks it on PostgreSQL), else None."""
    return session.scalar(
        select(model)
        .where(model.id == held.id, model.claim_token == held.token)
        .with_for_update()
    )


@cache
def _finish_statement(model: type[Row]) -> Update:
    """``UPDATE … WHERE id AND claim_token``; the columns to set come with the parameters."""
    table = cast(Table, model.__table__)
    return update(table).where(
        table.c.id == bindparam("row_id"), table.c.claim_token == bindparam("held_token")
    )


def finish(
    session: Session, model: type[Row], held: Claim, now: datetime, state: str = QueueState.DONE,
    **values: object,
) -> bool:
    """Mark a claimed row finished in the caller's transaction; False if the lease was lost.

    ``values`` are further columns to write in the same UPDATE (the spool's outcome).
    A Core statement: objects of the row already in the session are not refreshed.
    """
    result = session.connection().execute(
        _finish_statement(model),
        {"row_id": held.id, "held_token": held.token, "state": state, "finished_at": now,
         "lease_until": None, "claim_token": None, **values},
    )
    return bool(result.rowcount)


def defer(session: Session, model: type[Row], held: Claim, until: datetime) -> bool:
    """Put a claimed row back untouched until ``until``: waiting is not a failed attempt."""
    result = session.execute(
        update(model)
        .where(model.id == held.id, model.claim_token == held.token)
        .values(state=QueueState.QUEUED, next_attempt_at=until, lease_until=None,
                claim_token=None, attempts=model.attempts - 1)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def retry_later(
    session: Session,
    model: type[Row],
    held: Claim,
    now: datetime,
    error: str,
    max_attempts: int,
    base: float,
    cap: float,
) -> str:
    """Put the row back with backoff, or quarantine it after ``max_attempts``; returns new state."""
    if held.attempts >= max_attempts:
        state = QueueState.QUARANTINED
        values: dict[str, object] = {"state": state, "finished_at": now}
    else:
        state = QueueState.QUEUED
        delay = backoff_seconds(held.attempts, base, cap)
        values = {"state": state, "next_attempt_at": now + timedelta(seconds=delay)}
    session.execute(
        update(model)
        .where(model.id == held.id, model.claim_token == held.token)
        .values(lease_until=None, claim_token=None, last_error=error[:4000], **values)
    )
    return state


def requeue(session: Session, row: QueueRow, now: datetime) -> None:
    """Give a quarantined or failed row a fresh set of attempts (``spool retry``)."""
    row.state = QueueState.QUEUED
    row.attempts = 0
    row.next_attempt_at = now
    row.lease_until = None
    row.claim_token = None
    row.finished_at = None


def release_claims(session: Session, model: type[Row], tokens: list[str]) -> None:
    """Hand back rows we claimed but will not finish (graceful shutdown), without an attempt."""
    if not tokens:
        return
    session.execute(
        update(model)
        .where(model.claim_token.in_(tokens), model.state == QueueState.CLAIMED)
        .values(
            state=QueueState.QUEUED,
            lease_until=None,
            claim_token=None,
            attempts=model.attempts - 1,
        )
    )


def expire_held_by(
    session: Session, model: type[Row], holders: list[str], now: datetime
) -> list[int]:
    """End at once the leases of rows claimed by ``holders`` (dead processes); their ids.

    Exactly what an expired lease does, only sooner: the row is claimable now,
    and its attempt stays counted, so a mail that kills the process each time
    still runs out of attempts. The token is kept: a holder that was only slow,
    not dead, loses the row the moment someone else claims it, as after a lease.
    """
    if not holders:
        return []
    result = session.execute(
        update(model)
        .where(model.state == QueueState.CLAIMED, model.claimed_by.in_(holders))
        .values(lease_until=now - timedelta(seconds=1))
        .returning(model.id)
    )
    return sorted(int(row_id) for row_id in result.scalars())


def depth(session: Session, model: type[Row]) -> int:
    """How many rows are waiting or in progress."""
    from sqlalchemy import func

    return int(
        session.scalar(
            select(func.count())
            .select_from(model)
            .where(model.state.in_([QueueState.QUEUED, QueueState.CLAIMED]))
        )
        or 0
    )
