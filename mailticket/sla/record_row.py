"""One row of the SLA record as a value, the same shape for its writer and its readers.

``tickets.sla_record`` writes :class:`RecordFacts`; the monthly report and
``sla show`` read :class:`RecordedRow` (the same facts plus the row's id, ticket
and the instant it was written). One definition, so a column added to
``sla_events`` is added once and every reader sees it. Pure: no database here;
``tickets.sla_record.recorded_row`` turns a stored row into this value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# (timer, kind, deadline): what makes a row unique on its ticket.
EventKey = tuple[str, str, datetime]


@dataclass(frozen=True)
class RecordFacts:
    """What one record row freezes: the timer, what happened, and what was true then."""

    timer: str
    kind: str
    deadline: datetime
    priority: str | None = None
    period: int = 0
    due_at: datetime | None = None
    target_minutes: int | None = None
    used_minutes: int | None = None
    overdue_minutes: int | None = None
    calendar: str | None = None
    rule: str | None = None
    reason: str = ""
    notified: bool = True
    recipients: tuple[str, ...] = ()

    @property
    def key(self) -> EventKey:
        return (self.timer, self.kind, self.deadline)


@dataclass(frozen=True, kw_only=True)
class RecordedRow(RecordFacts):
    """A row as stored: the facts, when they were written, and whose they are."""

    created_at: datetime
    id: int = 0
    ticket_id: int = 0
