"""``mailticket status``: what an admin asks first — is mail flowing, and what is stuck?

Everything comes from the database, so the answer is the same whichever
instance (or no instance at all) is running: queue depth per state for the
spool and the outbox, the oldest waiting item, quarantined mail, outbox
failures of the last 24 hours with their last errors, when mail was last
processed and sent, and the last poll of each IMAP account (written by the
pollers into ``imap_poll_state``). :func:`collect_status` returns plain JSON-ready data
(``--json`` prints it as is); :func:`format_status` renders it for people. The
command adds the config's warnings (``Config.warnings``, such as a national
calendar without this or next year's decree) under ``warnings``, shown first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailticket.config import Config
from mailticket.digest import attention
from mailticket.intake.imap_state import OK, poll_states
from mailticket.store.schema import OutboxItem, QueueState, SpoolItem

ALL_STATES = (
    QueueState.QUEUED,
    QueueState.CLAIMED,
    QueueState.DONE,
    QueueState.QUARANTINED,
    QueueState.REJECTED,
    QueueState.FAILED,
    QueueState.DROPPED,
    QueueState.BOUNCED,
)
WAITING = (QueueState.QUEUED, QueueState.CLAIMED)
FINISHED = (QueueState.DONE, QueueState.REJECTED, QueueState.QUARANTINED, QueueState.FAILED)
LAST_ERRORS = 5
FAILURE_WINDOW = timedelta(hours=24)

Status = dict[str, Any]
Model = type[SpoolItem] | type[OutboxItem]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _depth(session: Session, model: Model) -> dict[str, int]:
    rows = session.execute(select(model.state, func.count()).group_by(model.state)).all()
    counts = {state: 0 for state in ALL_STATES}
    counts.update({state: int(n) for state, n in rows})
    return counts


def _oldest(session: Session, model: Model, now: datetime) -> dict[str, Any] | None:
    row = session.execute(
        select(model.id, model.created_at, model.attempts, model.last_error)
        .where(model.state.in_(WAITING))
        .order_by(model.created_at, model.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    return {
        "id": row.id,
        "created_at": _iso(row.created_at),
        "age_seconds": round(max(0.0, (now - row.created_at).total_seconds()), 1),
        "attempts": row.attempts,
        "last_error": row.last_error,
    }


def _outbox_failures(session: Session, now: datetime) -> dict[str, Any]:
    since = now - FAILURE_WINDOW
    failed = (OutboxItem.state == QueueState.FAILED) & (OutboxItem.finished_at >= since)
    # Sent in the window, and a delivery report came back since (``processing.bounces``).
    bounced = (OutboxItem.state == QueueState.BOUNCED) & (OutboxItem.finished_at >= since)
    # A queued row with an error is waiting for a retry after a 4xx or a network fault.
    retrying = (OutboxItem.state.in_(WAITING)) & (OutboxItem.last_error.is_not(None))
    count = session.scalar(select(func.count()).select_from(OutboxItem).where(failed)) or 0
    n_retrying = session.scalar(select(func.count()).select_from(OutboxItem).where(retrying))
    n_bounced = session.scalar(select(func.count()).select_from(OutboxItem).where(bounced))
    rows = session.execute(
        select(
            OutboxItem.id,
            OutboxItem.state,
            OutboxItem.kind,
            OutboxItem.rcpt_tos,
            OutboxItem.attempts,
            OutboxItem.finished_at,
            OutboxItem.last_error,
        )
        .where(failed | retrying | bounced)
        .order_by(OutboxItem.id.desc())
        .limit(LAST_ERRORS)
    ).all()
    return {
        "failed": int(count),
        "retrying": int(n_retrying or 0),
        "bounced": int(n_bounced or 0),
        "last_errors": [
            {
                "id": r.id,
                "state": r.state,
                "kind": r.kind,
                "rcpt_tos": list(r.rcpt_tos),
                "attempts": r.attempts,
                "finished_at": _iso(r.finished_at),
                "error": r.last_error,
            }
            for r in rows
        ],
    }


def _imap(session: Session, accounts: tuple[str, ...]) -> list[dict[str, Any]]:
    """The last poll of every account polled, plus configured ones never polled (as None)."""
    out = {
        row.account: {
            "account": row.account,
            "polled_at": _iso(row.polled_at),
            "outcome": row.outcome,
            "error": row.error,
            "fetched": row.fetched,
            "spooled": row.spooled,
            "last_ok_at": _iso(row.last_ok_at),
        }
        for row in poll_states(session)
    }
    for name in accounts:
        out.setdefault(
            name,
            {"account": name, "polled_at": None, "outcome": None, "error": None,
             "fetched": 0, "spooled": 0, "last_ok_at": None},
        )  # fmt: skip
    return [out[name] for name in sorted(out)]


def collect_status(
    factory: sessionmaker[Session],
    now: datetime | None = None,
    imap_accounts: tuple[str, ...] = (),
    config: Config | None = None,
) -> Status:
    """Read the queues' state from the database into a JSON-ready dict.

    ``imap_accounts`` are the configured account names, so that one never
    polled yet is listed too. With ``config``, ``attention`` lists what the
    admins' failure digest reports (``digest.attention``): the last 24 hours'
    events and the conditions that hold now.
    """
    now = now or datetime.now(UTC)
    with factory() as session:
        spool = _depth(session, SpoolItem)
        extra: Status = {}
        if config is not None:
            extra["attention"] = attention.listing(session, config, now, FAILURE_WINDOW)
        return {**extra,
            "generated_at": _iso(now),
            "spool": spool,
            "outbox": _depth(session, OutboxItem),
            "oldest": {
                "spool": _oldest(session, SpoolItem, now),
                "outbox": _oldest(session, OutboxItem, now),
            },
            "quarantined": spool[QueueState.QUARANTINED],
            "outbox_failures_24h": _outbox_failures(session, now),
            "last_processed_at": _iso(
                session.scalar(
                    select(func.max(SpoolItem.finished_at)).where(SpoolItem.state.in_(FINISHED))
                )
            ),
            "last_sent_at": _iso(
                session.scalar(
                    select(func.max(OutboxItem.finished_at)).where(
                        OutboxItem.state == QueueState.DONE
                    )
                )
            ),
            "imap": _imap(session, imap_accounts),
        }


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _one_line(text: str | None, width: int = 100) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_status(status: Status) -> str:
    """A short human report of :func:`collect_status`'s dict, one fact per line."""
    lines = [f"mailticket status at {status['generated_at']}"]
    lines.extend(f"warning: {warning}" for warning in status.get("warnings", ()))
    lines.append("")
    lines.append(f"{'queue':<8}" + "".join(f"{s:>13}" for s in ALL_STATES))
    for queue in ("spool", "outbox"):
        counts = status[queue]
        lines.append(f"{queue:<8}" + "".join(f"{counts.get(s, 0):>13}" for s in ALL_STATES))
    lines.append("")
    for queue in ("spool", "outbox"):
        oldest = status["oldest"][queue]
        if oldest is None:
            lines.append(f"oldest waiting {queue}: none")
            continue
        line = (
            f"oldest waiting {queue}: #{oldest['id']}, {_age(oldest['age_seconds'])} old, "
            f"{oldest['attempts']} attempt(s)"
        )
        if oldest["last_error"]:
            line += f", last error: {_one_line(oldest['last_error'], 80)}"
        lines.append(line)
    lines.append(f"quarantined spool items: {status['quarantined']}"
                 + ("  (see `mailticket spool list`)" if status["quarantined"] else ""))
    lines.append(f"last processed: {status['last_processed_at'] or 'never'}")
    lines.append(f"last sent: {status['last_sent_at'] or 'never'}")
    failures = status["outbox_failures_24h"]
    lines.append(
        f"outbox failures in the last 24 h: {failures['failed']} failed, "
        f"{failures['bounced']} bounced, {failures['retrying']} waiting for a retry"
    )
    for err in failures["last_errors"]:
        lines.append(
            f"  #{err['id']} {err['state']} {err['kind']} to {', '.join(err['rcpt_tos'])} "
            f"(attempt {err['attempts']}): {_one_line(err['error'])}"
        )
    lines.extend(_imap_lines(status["imap"]))
    if "attention" in status:
        lines.extend(_attention_lines(status["attention"]))
    return "\n".join(lines) + "\n"


def _attention_lines(found: dict[str, Any]) -> list[str]:
    """The admins' digest items: conditions now, then the last 24 hours' events."""
    items = [*found["conditions"], *found["events"]]
    if not items:
        return ["needs attention: nothing"]
    lines = [f"needs attention: {len(found['conditions'])} condition(s) now, "
             f"{len(found['events'])} event(s) in the last 24 h"]
    for item in items:
        line = f"  {item['kind']}: {item['subject']}"
        if item["detail"]:
            line += f": {_one_line(item['detail'], 120)}"
        lines.append(line + f" ({item['at']})")
    return lines


def _imap_lines(accounts: list[dict[str, Any]]) -> list[str]:
    if not accounts:
        return ["imap: no account polled"]
    lines = ["last imap poll per account:"]
    for acct in accounts:
        if acct["polled_at"] is None:
            lines.append(f"  {acct['account']}: never polled")
            continue
        line = (
            f"  {acct['account']}: {acct['polled_at']} {acct['outcome']}, "
            f"{acct['fetched']} fetched, {acct['spooled']} new"
        )
        if acct["outcome"] != OK:
            line += f": {_one_line(acct['error'], 80)}"
            line += f"; last ok {acct['last_ok_at'] or 'never'}"
        lines.append(line)
    return lines
