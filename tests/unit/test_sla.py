"""SLA evaluation: deadlines, warnings, breaches, pauses, priority change, next check."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from mailticket.model import Calendar, Interval, Priority, PriorityTargets, SlaPlan
from mailticket.sla.clock import (
    Deadline,
    EventKind,
    SlaEventDue,
    TicketClock,
    Timer,
    TimerState,
    deadlines,
    evaluate,
)
from mailticket.sla.explain import explain
from mailticket.sla.record_row import RecordedRow

MSK = ZoneInfo("Europe/Moscow")
FR, RES, NEXT = Timer.FIRST_RESPONSE, Timer.RESOLUTION, Timer.NEXT_RESPONSE
WARN, BREACH = EventKind.WARNING, EventKind.BREACH


def msk(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=MSK)


BIZ = Calendar(
    "biz",
    "Europe/Moscow",
    tuple((Interval(time(8), time(20)),) if day < 5 else () for day in range(7)),
    holidays=frozenset({date(2026, 11, 4)}),
)
ALWAYS = Calendar("247", "Europe/Moscow", ((),) * 7, always_open=True)
CALENDARS = {"biz": BIZ, "247": ALWAYS}
# The shipped example: critical 24/7 with 30 min response and 4 h restore, the others on
# business hours.
PLAN = SlaPlan(
    "standard",
    "Standard",
    {
        Priority.CRITICAL: PriorityTargets(30, 240, "247"),
        Priority.MAJOR: PriorityTargets(60, 480, "biz", next_response_minutes=120),
        Priority.MINOR: PriorityTargets(240, 2400, "biz"),
    },
    warn_ratio=0.75,
)
FRIDAY_1950 = msk(2026, 10, 16, 19, 50)


def clock(priority: Priority = Priority.CRITICAL, **kwargs: object) -> TicketClock:
    return TicketClock(FRIDAY_1950, priority, **kwargs)  # type: ignore[arg-type]


def due(timer: Timer, kind: EventKind, at: datetime, due_at: datetime) -> SlaEventDue:
    return SlaEventDue(timer, kind, at.astimezone(UTC), due_at.astimezone(UTC))


# --- the scenarios ------------------------------------------------------------


def test_critical_friday_evening_on_24_7() -> None:
    d = deadlines(clock(), PLAN, CALENDARS)
    assert (d[FR].warn_at, d[FR].due_at) == (
        msk(2026, 10, 16, 20, 12, 30),
        msk(2026, 10, 16, 20, 20),
    )
    assert (d[RES].warn_at, d[RES].due_at) == (msk(2026, 10, 16, 22, 50), msk(2026, 10, 16, 23, 50))
    assert set(d) == {FR, RES}


def test_critical_warning_then_breach_with_next_checks() -> None:
    before = evaluate(clock(), PLAN, CALENDARS, msk(2026, 10, 16, 20, 12, 29))
    assert before.events_due == ()
    assert before.timers[FR].state is TimerState.OK
    assert before.next_check_at == msk(2026, 10, 16, 20, 12, 30)

    warned = evaluate(clock(), PLAN, CALENDARS, msk(2026, 10, 16, 20, 12, 30))
    fr_due = msk(2026, 10, 16, 20, 20)
    assert warned.events_due == (due(FR, WARN, msk(2026, 10, 16, 20, 12, 30), fr_due),)
    assert warned.timers[FR].state is TimerState.WARNING
    assert warned.next_check_at == fr_due

    breached = evaluate(clock(), PLAN, CALENDARS, fr_due)
    assert breached.events_due == (
        due(FR, WARN, msk(2026, 10, 16, 20, 12, 30), fr_due),
        due(FR, BREACH, fr_due, fr_due),
    )
    assert breached.timers[FR].state is TimerState.BREACHED
    assert breached.timers[RES].state is TimerState.OK
    assert breached.breached
    assert breached.next_check_at == msk(2026, 10, 16, 22, 50)

    late = evaluate(clock(), PLAN, CALENDARS, msk(2026, 10, 17, 9, 0))
    assert [(e.timer, e.kind) for e in late.events_due] == [
        (FR, WARN),
        (FR, BREACH),
        (RES, WARN),
        (RES, BREACH),
    ]
    assert late.next_check_at is None


def test_major_friday_evening_on_business_hours() -> None:
    d = deadlines(clock(Priority.MAJOR), PLAN, CALENDARS)
    # Ten minutes on Friday, then Monday from 08:00.
    assert d[FR].warn_at == msk(2026, 10, 19, 8, 35)
    assert d[FR].due_at == msk(2026, 10, 19, 8, 50)
    assert d[RES].due_at == msk(2026, 10, 19, 15, 50)
    status = evaluate(clock(Priority.MAJOR), PLAN, CALENDARS, msk(2026, 10, 18, 12, 0))
    assert status.events_due == ()
    assert status.next_check_at == msk(2026, 10, 19, 8, 35)


def test_deadlines_skip_holidays() -> None:
    # 2026-11-03 (Tuesday) 19:30: thirty minutes, then the holiday, then Thursday.
    ticket = TicketClock(msk(2026, 11, 3, 19, 30), Priority.MAJOR)
    assert deadlines(ticket, PLAN, CALENDARS)[FR].due_at == msk(2026, 11, 5, 8, 30)


# --- met, stopped ---------------------------------------------------------------------


def test_first_response_in_time_is_met() -> None:
    ticket = clock(first_response_at=msk(2026, 10, 16, 20, 5))
    status = evaluate(ticket, PLAN, CALENDARS, msk(2026, 10, 16, 21, 0))
    fr = status.timers[FR]
    assert fr.state is TimerState.MET
    assert fr.deadline.met_at == msk(2026, 10, 16, 20, 5)
    assert fr.deadline.used_minutes == 15
    assert status.events_due == ()
    assert status.next_check_at == msk(2026, 10, 16, 22, 50)


def test_reply_at_exactly_the_due_instant_is_in_time() -> None:
    ticket = clock(first_response_at=msk(2026, 10, 16, 20, 20))
    status = evaluate(ticket, PLAN, CALENDARS, msk(2026, 10, 16, 20, 30))
    assert status.timers[FR].state is TimerState.MET
    assert [(e.timer, e.kind) for e in status.events_due] == [(FR, WARN)]


def test_late_first_response_stays_breached() -> None:
    ticket = clock(first_response_at=msk(2026, 10, 16, 20, 25))
    status = evaluate(ticket, PLAN, CALENDARS, msk(2026, 10, 16, 20, 30))
    assert status.timers[FR].state is TimerState.BREACHED
    assert status.timers[FR].deadline.used_minutes == 35
    assert [(e.timer, e.kind) for e in status.events_due] == [(FR, WARN), (FR, BREACH)]


def test_resolution_stops_every_timer() -> None:
    ticket = clock(resolved_at=msk(2026, 10, 16, 20, 15))
    status = evaluate(ticket, PLAN, CALENDARS, msk(2026, 10, 17, 12, 0))
    assert status.timers[FR].state is TimerState.STOPPED
    assert status.timers[FR].deadline.stopped_at == msk(2026, 10, 16, 20, 15)
    assert status.timers[FR].deadline.met_at is None
    assert status.timers[RES].state is TimerState.MET
    assert status.timers[RES].deadline.used_minutes == 25
    # The warning at 20:12:30 fired before resolution; the breach at 20:20 never did.
    assert [(e.timer, e.kind) for e in status.events_due] == [(FR, WARN)]
    assert status.next_check_at is None


# --- pauses ----------------------------------------------------------------------------


def test_closed_pause_moves_deadlines_by_the_paused_time() -> None:
    ticket = clock(pauses=((msk(2026, 10, 16, 19, 55), msk(2026, 10, 16, 20, 25)),))
    d = deadlines(ticket, PLAN, CALENDARS)
    assert d[FR].warn_at == msk(2026, 10, 16, 20, 42, 30)
    assert d[FR].due_at == msk(2026, 10, 16, 20, 50)
    assert d[RES].due_at == msk(2026, 10, 17, 0, 20)


def test_open_pause_freezes_timers_after_the_warning() -> None:
    paused_at = msk(2026, 10, 16, 20, 15)
    ticket = clock(pauses=((paused_at, None),))
    status = evaluate(ticket, PLAN, CALENDARS, msk(2026, 10, 17, 12, 0))
    fr = status.timers[FR]
    assert fr.state is TimerState.PAUSED
    assert fr.deadline.warn_at == msk(2026, 10, 16, 20, 12, 30)
    assert fr.deadline.due_at is None
    assert status.events_due == (SlaEventDue(FR, WARN, msk(2026, 10, 16, 20, 12, 30), None),)
    assert status.next_check_at is None
    lines = explain(ticket, PLAN, CALENDARS, msk(2026, 10, 17, 12, 0))
    assert "Paused: 2026-10-16 Fri 20:15 MSK → still paused" in lines
    assert "  due unknown while paused; warning at 2026-10-16 Fri 20:12:30 MSK" in lines
    assert "Next check: none (nothing more can fire)" in lines

    # The customer answers next day at 12:00: five minutes were left.
    resumed = replace(ticket, pauses=((paused_at, msk(2026, 10, 17, 12, 0)),))
    after = evaluate(resumed, PLAN, CALENDARS, msk(2026, 10, 17, 12, 0))
    assert after.timers[FR].deadline.due_at == msk(2026, 10, 17, 12, 5)
    assert after.timers[FR].state is TimerState.WARNING
    assert after.next_check_at == msk(2026, 10, 17, 12, 5)
    # The warning keeps its key, so the scheduler does not send it again.
    assert [e.key for e in after.events_due] == [e.key for e in status.events_due]


def test_pause_on_business_hours_counts_only_business_time() -> None:
    # Monday 10:00; waiting from 15:00 to Tuesday 09:00 pauses six business hours
    # (15:00–20:00 and 08:00–09:00), so the 8 h target ends on Tuesday at 12:00.
    ticket = TicketClock(
        msk(2026, 10, 19, 10, 0),
        Priority.MAJOR,
        first_response_at=msk(2026, 10, 19, 10, 30),
        pauses=((msk(2026, 10, 19, 15, 0), msk(2026, 10, 20, 9, 0)),),
    )
    d = deadlines(ticket, PLAN, CALENDARS)
    assert d[RES].due_at == msk(2026, 10, 20, 12, 0)
    assert d[RES].warn_at == msk(2026, 10, 20, 10, 0)


def test_overlapping_pauses_are_joined() -> None:
    ticket = clock(
        pauses=(
            (msk(2026, 10, 16, 20, 10), msk(2026, 10, 16, 20, 40)),
            (msk(2026, 10, 16, 19, 55), msk(2026, 10, 16, 20, 20)),
        )
    )
    assert deadlines(ticket, PLAN, CALENDARS)[FR].due_at == msk(2026, 10, 16, 21, 5)


# --- priority change, next response, plan edge cases --------------------------------


def test_priority_change_recomputes_from_the_start() -> None:
    now = msk(2026, 10, 19, 9, 0)
    minor = TicketClock(msk(2026, 10, 19, 8, 0), Priority.MINOR)
    assert evaluate(minor, PLAN, CALENDARS, now).events_due == ()
    critical = replace(minor, priority=Priority.CRITICAL)
    status = evaluate(critical, PLAN, CALENDARS, now)
    assert status.timers[FR].deadline.due_at == msk(2026, 10, 19, 8, 30)
    assert status.timers[FR].state is TimerState.BREACHED
    assert [(e.timer, e.kind, e.deadline) for e in status.events_due] == [
        (FR, WARN, msk(2026, 10, 19, 8, 22, 30)),
        (FR, BREACH, msk(2026, 10, 19, 8, 30)),
    ]
    assert status.next_check_at == msk(2026, 10, 19, 11, 0)


def test_next_response_runs_from_the_first_unanswered_message() -> None:
    ticket = TicketClock(
        msk(2026, 10, 19, 10, 0),
        Priority.MAJOR,
        first_response_at=msk(2026, 10, 19, 10, 30),
        unanswered_since=msk(2026, 10, 19, 19, 0),
    )
    status = evaluate(ticket, PLAN, CALENDARS, msk(2026, 10, 20, 9, 0))
    nxt = status.timers[NEXT].deadline
    assert (nxt.started_at, nxt.warn_at, nxt.due_at) == (
        msk(2026, 10, 19, 19, 0),
        msk(2026, 10, 20, 8, 30),
        msk(2026, 10, 20, 9, 0),
    )
    assert status.timers[NEXT].state is TimerState.BREACHED
    assert [(e.timer, e.kind, e.deadline) for e in status.events_due] == [
        (RES, WARN, msk(2026, 10, 19, 16, 0)),
        (RES, BREACH, msk(2026, 10, 19, 18, 0)),
        (NEXT, WARN, msk(2026, 10, 20, 8, 30)),
        (NEXT, BREACH, msk(2026, 10, 20, 9, 0)),
    ]


def test_next_response_needs_a_first_response_and_an_unanswered_message() -> None:
    before_reply = TicketClock(
        msk(2026, 10, 19, 10, 0), Priority.MAJOR, unanswered_since=msk(2026, 10, 19, 10, 0)
    )
    assert NEXT not in deadlines(before_reply, PLAN, CALENDARS)
    answered = replace(
        before_reply, first_response_at=msk(2026, 10, 19, 10, 30), unanswered_since=None
    )
    assert NEXT not in deadlines(answered, PLAN, CALENDARS)
    no_target = replace(
        answered, priority=Priority.MINOR, unanswered_since=msk(2026, 10, 19, 11, 0)
    )
    assert NEXT not in deadlines(no_target, PLAN, CALENDARS)


def test_priority_without_targets_has_no_timers() -> None:
    status = evaluate(clock(Priority.TECHNICAL), PLAN, CALENDARS, msk(2026, 10, 20, 0, 0))
    assert (status.timers, status.events_due, status.next_check_at) == ({}, (), None)
    assert explain(clock(Priority.TECHNICAL), PLAN, CALENDARS, msk(2026, 10, 20, 0, 0)) == [
        "Plan: Standard (standard); priority technical",
        "No SLA targets for this priority: no timers run.",
    ]


def test_no_warning_unless_ratio_is_a_share() -> None:
    plan = replace(PLAN, warn_ratio=1.0)
    d = deadlines(clock(), plan, CALENDARS)
    assert d[FR].warn_at is None
    assert d[FR].due_at == msk(2026, 10, 16, 20, 20)


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown calendar"):
        deadlines(clock(), PLAN, {"biz": BIZ})
    with pytest.raises(ValueError, match="aware"):
        TicketClock(datetime(2026, 10, 16, 19, 50), Priority.CRITICAL)
    with pytest.raises(ValueError, match="aware"):
        evaluate(clock(), PLAN, CALENDARS, datetime(2026, 10, 16, 20, 0))


def test_clock_is_normalised_to_utc() -> None:
    ticket = clock(pauses=((msk(2026, 10, 16, 20, 0), None),))
    assert ticket.created_at.tzinfo is UTC
    assert ticket.pauses == ((datetime(2026, 10, 16, 17, 0, tzinfo=UTC), None),)
    d: Deadline = deadlines(ticket, PLAN, CALENDARS)[FR]
    assert d.started_at.tzinfo is UTC


# --- the scheduler's view ------------------------------------------------------------


@pytest.mark.parametrize(
    "ticket",
    [
        clock(),
        clock(
            Priority.MAJOR,
            first_response_at=msk(2026, 10, 19, 8, 40),
            unanswered_since=msk(2026, 10, 19, 9, 0),
        ),
        clock(pauses=((msk(2026, 10, 16, 20, 0), msk(2026, 10, 16, 21, 0)),)),
        clock(Priority.MINOR, resolved_at=msk(2026, 10, 19, 12, 0)),
    ],
    ids=["critical", "major-next-response", "critical-paused", "minor-resolved"],
)
def test_waking_only_at_next_check_sees_every_event_on_time(ticket: TicketClock) -> None:
    # A scheduler that wakes only at next_check_at must see each threshold that can fire
    # at exactly its instant, and then find nothing more to do.
    expected = {
        (str(d.timer), str(kind), at)
        for d in deadlines(ticket, PLAN, CALENDARS).values()
        for kind, at in ((WARN, d.warn_at), (BREACH, d.due_at))
        if at is not None and (d.ended_at is None or at < d.ended_at)
    }
    first_seen: dict[tuple[str, str, datetime], datetime] = {}
    now: datetime | None = ticket.created_at
    while now is not None:
        status = evaluate(ticket, PLAN, CALENDARS, now)
        for event in status.events_due:
            first_seen.setdefault(event.key, now)
        assert status.next_check_at is None or status.next_check_at > now
        now = status.next_check_at
    assert set(first_seen) == expected
    assert all(seen == key[2] for key, seen in first_seen.items())
    assert len(expected) >= 2


def test_explain_lists_rules_calendar_intervals_and_events() -> None:
    ticket = clock(Priority.MAJOR, pauses=((msk(2026, 10, 19, 8, 10), msk(2026, 10, 19, 8, 20)),))
    lines = explain(ticket, PLAN, CALENDARS, msk(2026, 10, 19, 9, 0))
    assert lines == [
        "Plan: Standard (standard); priority major; warning at 75% of each target",
        "Rules: priority change from_start (a new priority's targets count from the ticket's "
        "start); pause on question (only status waiting set by a reply to the customer pauses)",
        "Calendar: biz (Europe/Moscow; Mon–Fri 08:00–20:00; Sat–Sun off; holidays: 1, extra working days: 0)",
        "Times in Europe/Moscow. Now: 2026-10-19 Mon 09:00 MSK",
        "Paused: 2026-10-19 Mon 08:10 MSK → 2026-10-19 Mon 08:20 MSK",
        "first_response: target 60 business min, counted from 2026-10-16 Fri 19:50 MSK "
        "(the ticket's start); state breached",
        "  due 2026-10-19 Mon 09:00 MSK; warning at 2026-10-19 Mon 08:45 MSK",
        "  overdue by 0 min so far; used 60 min",
        "  counted 2026-10-16 Fri 19:50 MSK → 2026-10-16 Fri 20:00 MSK (10 min)",
        "  counted 2026-10-19 Mon 08:00 MSK → 2026-10-19 Mon 08:10 MSK (10 min)",
        "  counted 2026-10-19 Mon 08:20 MSK → 2026-10-19 Mon 09:00 MSK (40 min)",
        "resolution: target 480 business min, counted from 2026-10-16 Fri 19:50 MSK "
        "(the ticket's start); state ok",
        "  due 2026-10-19 Mon 16:00 MSK; warning at 2026-10-19 Mon 14:00 MSK",
        "  used 60 min",
        "  counted 2026-10-16 Fri 19:50 MSK → 2026-10-16 Fri 20:00 MSK (10 min)",
        "  counted 2026-10-19 Mon 08:00 MSK → 2026-10-19 Mon 08:10 MSK (10 min)",
        "  counted 2026-10-19 Mon 08:20 MSK → 2026-10-19 Mon 09:00 MSK (40 min)",
        "Due, not recorded yet: first_response warning at 2026-10-19 Mon 08:45 MSK",
        "Due, not recorded yet: first_response breach at 2026-10-19 Mon 09:00 MSK",
        "Next check: 2026-10-19 Mon 14:00 MSK",
        "Record: nothing yet",
    ]


def test_explain_prints_the_record_with_recipients_and_the_due_time_when_met() -> None:
    """Answered 09:40 (due 08:50): the met line keeps the due time and the overdue minutes."""
    answered = clock(Priority.MAJOR, first_response_at=msk(2026, 10, 19, 9, 40))
    now = msk(2026, 10, 19, 10, 0)
    due = msk(2026, 10, 19, 8, 50)
    warned = RecordedRow("first_response", "warning", msk(2026, 10, 19, 8, 35),
                         created_at=msk(2026, 10, 19, 8, 36), due_at=due, priority="major",
                         recipients=("anna@x.example (assignee)",))
    breached = RecordedRow("first_response", "breach", due, created_at=due, due_at=due,
                           priority="major", recipients=("anna@x.example (assignee)",
                                                         "vera@x.example (escalation)"))
    met = RecordedRow("first_response", "met", msk(2026, 10, 19, 9, 40),
                      created_at=msk(2026, 10, 19, 9, 40), due_at=due,
                      overdue_minutes=50, priority="major")
    lines = explain(answered, PLAN, CALENDARS, now, [warned, breached, met])
    assert "  met at 2026-10-19 Mon 09:40 MSK: 50 min overdue; used 110 of 60 min" in lines
    assert "  due 2026-10-19 Mon 08:50 MSK (as it stood when met); " \
           "warning at 2026-10-19 Mon 08:35 MSK" in lines
    assert lines[lines.index("Record:") + 1:] == [
        "  2026-10-19 Mon 08:35 MSK  first_response warning (due 2026-10-19 Mon 08:50 MSK; major)"
        "; sent 2026-10-19 Mon 08:36 MSK to anna@x.example (assignee)",
        "  2026-10-19 Mon 08:50 MSK  first_response breach (due 2026-10-19 Mon 08:50 MSK; major)"
        "; sent 2026-10-19 Mon 08:50 MSK to anna@x.example (assignee), vera@x.example (escalation)",
        "  2026-10-19 Mon 09:40 MSK  first_response met (due 2026-10-19 Mon 08:50 MSK; "
        "50 min overdue; major)",
    ]
    assert not any(line.startswith("Due, not recorded yet") for line in lines)
