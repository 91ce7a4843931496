"""What a ticket's SLA restamp needs from its history, kept on the ticket so a reply reads nothing.

:func:`~mailticket.tickets.sla_stamp.restamp` builds a ticket's clock from
three parts of its history: the audited status and priority changes, the
order of customer mail and engineer replies, and the keys of the SLA record.
Reading them back costs three queries per mail that touches a ticket (issue
17). This module keeps the few facts those queries produce in the ticket's
``sla_facts`` column, updated in memory by the code that writes the history
(``tickets.service.change_status``, ``audit`` of a priority change,
``add_article``, ``sla_record.append``, the incident report's marker), so the
UPDATE a mail makes to its ticket anyway carries them.

``None`` means unknown (a ticket stored before migration 0012, or written
around these functions): the restamp reads the history in full, as before, and
stores what it found. A ticket opened by ``open_ticket`` starts with empty,
known facts. The facts and the full read must agree; a test holds them together.

On PostgreSQL the worker locks the ticket row it threads a mail to (``FOR NO
KEY UPDATE``), so two instances cannot both extend the same facts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from mailticket.model import ArticleKind
from mailticket.sla.record_row import EventKey
from mailticket.store.schema import Ticket


@dataclass(frozen=True)
class StatusChange:
    """One audited status change; ``visible`` says whether it came with a reply the
    customer received (None on rows written before that was recorded: counted as visible)."""

    at: datetime
    old: str
    new: str
    visible: bool | None = None


@dataclass(frozen=True)
class SlaFacts:
    """The history a clock is built from, reduced to what the clock uses.

    ``unanswered_since``: the first customer mail after the latest reply (None
    before the first reply); ``answered``: the next-response cycle the latest
    reply closed, ``(unanswered since, answered at)``.
    """

    changes: tuple[StatusChange, ...] = ()
    priority_since: datetime | None = None
    last_reply_at: datetime | None = None
    unanswered_since: datetime | None = None
    answered: tuple[datetime, datetime] | None = None
    sent: frozenset[EventKey] = frozenset()


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def load(ticket: Ticket) -> SlaFacts | None:
    """The facts stored on ``ticket``; None when they are unknown."""
    raw = ticket.sla_facts
    if raw is None:
        return None
    answered = raw.get("answered")
    return SlaFacts(
        changes=tuple(StatusChange(datetime.fromisoformat(at), old, new, visible)
                      for at, old, new, visible in raw.get("changes", ())),
        priority_since=_when(raw.get("priority_since")),
        last_reply_at=_when(raw.get("last_reply_at")),
        unanswered_since=_when(raw.get("unanswered_since")),
        answered=((datetime.fromisoformat(answered[0]), datetime.fromisoformat(answered[1]))
                  if answered else None),
        sent=frozenset((timer, kind, datetime.fromisoformat(deadline))
                       for timer, kind, deadline in raw.get("sent", ())),
    )


def store(ticket: Ticket, facts: SlaFacts) -> None:
    """Write ``facts`` onto the ticket (a new value, so the ORM sees the change)."""
    ticket.sla_facts = {
        "changes": [[_iso(c.at), c.old, c.new, c.visible] for c in facts.changes],
        "priority_since": _iso(facts.priority_since),
        "last_reply_at": _iso(facts.last_reply_at),
        "unanswered_since": _iso(facts.unanswered_since),
        "answered": [_iso(a) for a in facts.answered] if facts.answered else None,
        "sent": sorted([timer, kind, _iso(deadline)] for timer, kind, deadline in facts.sent),
    }


def start(ticket: Ticket) -> None:
    """A new ticket's facts: nothing has happened yet."""
    store(ticket, SlaFacts())


def with_article(facts: SlaFacts, kind: str, at: datetime) -> SlaFacts:
    """The facts after a customer mail or a reply at ``at`` (other kinds change nothing)."""
    if kind == ArticleKind.CUSTOMER:
        if facts.last_reply_at is not None and facts.unanswered_since is None:
            return replace(facts, unanswered_since=at)
        return facts
    if kind == ArticleKind.REPLY:
        answered = ((facts.unanswered_since, at)
                    if facts.last_reply_at is not None and facts.unanswered_since is not None
                    else None)
        return replace(facts, last_reply_at=at, unanswered_since=None, answered=answered)
    return facts


def from_history(
    changes: Iterable[StatusChange], priority_since: datetime | None,
    articles: Sequence[tuple[str, datetime]], sent: Iterable[EventKey], *,
    unanswered_since: datetime | None, answered: tuple[datetime, datetime] | None,
) -> SlaFacts:
    """The facts of a history read in full (changes and articles in their stored order).

    ``unanswered_since`` and ``answered`` come from the caller's scan of all the
    articles, not from :func:`with_article`, so comparing stored facts with a full
    read also checks the step-by-step rule.
    """
    replies = [at for kind, at in articles if kind == ArticleKind.REPLY]
    return SlaFacts(changes=tuple(changes), priority_since=priority_since,
                    last_reply_at=replies[-1] if replies else None,
                    unanswered_since=unanswered_since, answered=answered,
                    sent=frozenset(sent))


def ordered_changes(facts: SlaFacts) -> list[StatusChange]:
    """The status changes in the order the full read gives them (by time, then as written)."""
    return sorted(facts.changes, key=lambda c: c.at)


def _update(ticket: Ticket, change: Callable[[SlaFacts], SlaFacts]) -> None:
    facts = load(ticket)
    if facts is not None:
        store(ticket, change(facts))


def note_status(ticket: Ticket, change: StatusChange) -> None:
    """Record an audited status change."""
    _update(ticket, lambda f: replace(f, changes=(*f.changes, change)))


def note_priority(ticket: Ticket, at: datetime) -> None:
    """Record an audited priority change (the latest one starts the new targets)."""
    _update(ticket, lambda f: f if f.priority_since is not None and f.priority_since > at
            else replace(f, priority_since=at))


def note_article(ticket: Ticket, kind: str, at: datetime) -> None:
    """Record a customer mail or a reply."""
    if kind in (ArticleKind.CUSTOMER, ArticleKind.REPLY):
        _update(ticket, lambda f: with_article(f, kind, at))


def note_sent(ticket: Ticket, key: EventKey) -> None:
    """Record one row of the SLA record."""
    _update(ticket, lambda f: replace(f, sent=f.sent | {key}))
