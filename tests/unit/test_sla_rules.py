"""The SLA rules of issue 13: priority-change rule, reopening, counted pauses, retroactive breaches.

Pure: ``sla.clock`` and ``tickets.sla_stamp.clock_facts`` / ``tickets.sla_record`` entry
building, with the calendars and plan of ``test_sla``.
"""

from __future__ import annotations

from dataclasses import replace

from test_sla import BIZ, BREACH, CALENDARS, FR, PLAN, RES, WARN, msk

from mailticket.model import PauseRule, Priority, PriorityChangeRule, Status
from mailticket.sla.clock import TicketClock, TimerState, deadlines, evaluate
from mailticket.tickets.sla_facts import StatusChange
from mailticket.tickets.sla_record import (
    CLOCK,
    MET,
    PAUSE,
    RESUME,
    STOPPED,
    outcome_entries,
    pause_entries,
)
from mailticket.tickets.sla_stamp import answered_cycle, clock_facts

FROM_CHANGE = replace(PLAN, priority_change=PriorityChangeRule.FROM_CHANGE)
MONDAY_0800 = msk(2026, 10, 19, 8, 0)


# --- priority change --------------------------------------------------------------------


def test_from_start_raise_lists_one_retroactive_breach_per_timer_and_no_warning() -> None:
    """Minor since Monday 08:00, raised to critical at 09:00: 08:30 passed before the change."""
    raised = TicketClock(MONDAY_0800, Priority.CRITICAL, priority_since=msk(2026, 10, 19, 9, 0))
    status = evaluate(raised, PLAN, CALENDARS, msk(2026, 10, 19, 9, 1))
    assert [(e.timer, e.kind, e.deadline, e.retroactive) for e in status.events_due] == [
        (FR, BREACH, msk(2026, 10, 19, 8, 30), True),
    ]
    # The resolution thresholds (11:00 warning, 12:00 breach) lie after the change: normal.
    assert status.next_check_at == msk(2026, 10, 19, 11, 0)
    later = evaluate(raised, PLAN, CALENDARS, msk(2026, 10, 19, 12, 0))
    assert [(e.timer, e.kind, e.retroactive) for e in later.events_due] == [
        (FR, BREACH, True), (RES, WARN, False), (RES, BREACH, False),
    ]


def test_from_change_restarts_an_unmet_timer_at_the_change() -> None:
    raised = TicketClock(MONDAY_0800, Priority.CRITICAL, priority_since=msk(2026, 10, 19, 9, 0))
    d = deadlines(raised, FROM_CHANGE, CALENDARS)
    assert d[FR].started_at == msk(2026, 10, 19, 9, 0)
    assert d[FR].due_at == msk(2026, 10, 19, 9, 30)
    assert d[RES].due_at == msk(2026, 10, 19, 13, 0)
    assert evaluate(raised, FROM_CHANGE, CALENDARS, msk(2026, 10, 19, 9, 10)).events_due == ()


def test_from_change_keeps_a_timer_met_before_the_change() -> None:
    answered = TicketClock(MONDAY_0800, Priority.MINOR, first_response_at=msk(2026, 10, 19, 8, 10),
                           priority_since=msk(2026, 10, 19, 9, 0))
    d = deadlines(answered, FROM_CHANGE, CALENDARS)
    assert d[FR].started_at == MONDAY_0800
    assert d[FR].met_at == msk(2026, 10, 19, 8, 10)
    assert d[RES].started_at == msk(2026, 10, 19, 9, 0)


def test_lowering_priority_cannot_unfire_what_fired_but_lists_nothing_new() -> None:
    """Critical paged at 08:30, lowered to minor at 09:00 (from_start): minor's 12:00 is ahead."""
    lowered = TicketClock(MONDAY_0800, Priority.MINOR, priority_since=msk(2026, 10, 19, 9, 0))
    status = evaluate(lowered, PLAN, CALENDARS, msk(2026, 10, 19, 9, 5))
    assert status.events_due == ()
    assert status.timers[FR].state is TimerState.OK


# --- reopening ---------------------------------------------------------------------------


def test_reopened_ticket_starts_a_new_resolution_period_without_its_resolved_time() -> None:
    """Resolved Mon 2 Nov 10:00, reopened Mon 16 Nov 10:00: two weeks never count."""
    opened = msk(2026, 11, 2, 9, 0)
    changes = [
        StatusChange(msk(2026, 11, 2, 9, 30), Status.NEW, Status.OPEN),
        StatusChange(msk(2026, 11, 2, 10, 0), Status.OPEN, Status.RESOLVED),
        StatusChange(msk(2026, 11, 16, 10, 0), Status.RESOLVED, Status.OPEN),
    ]
    facts = clock_facts(changes, PauseRule.QUESTION)
    assert facts.resolution_since == msk(2026, 11, 16, 10, 0)
    assert facts.period == 1
    assert facts.resolved == ((msk(2026, 11, 2, 10, 0), msk(2026, 11, 16, 10, 0)),)
    reopened = TicketClock(opened, Priority.MAJOR, first_response_at=msk(2026, 11, 2, 9, 20),
                           pauses=facts.waiting + facts.resolved,
                           resolution_since=facts.resolution_since, period=facts.period)
    status = evaluate(reopened, PLAN, CALENDARS, msk(2026, 11, 16, 10, 5))
    assert status.events_due == ()
    resolution = status.timers[RES].deadline
    assert resolution.started_at == msk(2026, 11, 16, 10, 0)
    assert resolution.due_at == msk(2026, 11, 16, 18, 0)  # the full 8 business hours again


# --- what pauses the clock ---------------------------------------------------------------


def test_internal_waiting_does_not_pause_under_question_rule_but_does_under_status() -> None:
    changes = [
        StatusChange(msk(2026, 10, 19, 9, 0), Status.OPEN, Status.WAITING, visible=False),
        StatusChange(msk(2026, 10, 21, 9, 0), Status.WAITING, Status.OPEN),
        StatusChange(msk(2026, 10, 22, 9, 0), Status.OPEN, Status.WAITING, visible=True),
    ]
    assert clock_facts(changes, PauseRule.QUESTION).waiting == ((msk(2026, 10, 22, 9, 0), None),)
    assert clock_facts(changes, PauseRule.STATUS).waiting == (
        (msk(2026, 10, 19, 9, 0), msk(2026, 10, 21, 9, 0)), (msk(2026, 10, 22, 9, 0), None),
    )


def test_status_rows_from_before_the_visible_flag_still_pause() -> None:
    old = [StatusChange(msk(2026, 10, 19, 9, 0), Status.OPEN, Status.WAITING, visible=None)]
    assert clock_facts(old, PauseRule.QUESTION).waiting == ((msk(2026, 10, 19, 9, 0), None),)


# --- record entries ----------------------------------------------------------------------


def test_met_late_entry_freezes_due_used_and_overdue_in_plan_minutes() -> None:
    """Major opened Mon 08:00 (due 09:00 business), answered 09:40: 40 minutes overdue."""
    late = TicketClock(MONDAY_0800, Priority.MAJOR, first_response_at=msk(2026, 10, 19, 9, 40))
    status = evaluate(late, PLAN, CALENDARS, msk(2026, 10, 19, 9, 40))
    [entry] = outcome_entries(late, PLAN, status, CALENDARS)
    assert (entry.timer, entry.kind, entry.deadline) == ("first_response", MET,
                                                         msk(2026, 10, 19, 9, 40))
    assert (entry.due_at, entry.used_minutes, entry.overdue_minutes, entry.target_minutes) == (
        msk(2026, 10, 19, 9, 0), 100, 40, 60)
    assert (entry.priority, entry.calendar, entry.rule) == ("major", BIZ.id, "from_start")


def test_resolution_without_answer_records_first_response_stopped() -> None:
    closed = TicketClock(MONDAY_0800, Priority.MINOR, resolved_at=msk(2026, 10, 19, 8, 45))
    status = evaluate(closed, PLAN, CALENDARS, msk(2026, 10, 19, 8, 45))
    kinds = {(e.timer, e.kind) for e in outcome_entries(closed, PLAN, status, CALENDARS)}
    assert kinds == {("first_response", STOPPED), ("resolution", MET)}


def test_pause_entries_name_each_start_and_end() -> None:
    waiting = ((msk(2026, 10, 19, 9, 0), msk(2026, 10, 19, 11, 0)), (msk(2026, 10, 20, 9, 0), None))
    c = TicketClock(MONDAY_0800, Priority.MAJOR, pauses=waiting)
    assert [(e.timer, e.kind, e.deadline) for e in pause_entries(c, waiting)] == [
        (CLOCK, PAUSE, msk(2026, 10, 19, 9, 0)), (CLOCK, RESUME, msk(2026, 10, 19, 11, 0)),
        (CLOCK, PAUSE, msk(2026, 10, 20, 9, 0)),
    ]


def test_answered_cycle_is_the_first_customer_message_the_latest_reply_closed() -> None:
    r, c = "reply", "customer"
    articles = [(c, msk(2026, 10, 19, 8, 0)), (r, msk(2026, 10, 19, 8, 20)),
                (c, msk(2026, 10, 19, 10, 0)), (c, msk(2026, 10, 19, 10, 30)),
                (r, msk(2026, 10, 19, 11, 0))]
    assert answered_cycle(articles) == (msk(2026, 10, 19, 10, 0), msk(2026, 10, 19, 11, 0))
    assert answered_cycle(articles[:2]) is None  # the first reply is the first response
    assert answered_cycle([*articles, (r, msk(2026, 10, 19, 12, 0))]) is None


def test_a_past_next_response_cycle_is_met_at_its_answer() -> None:
    """Major, next response 120 business min: asked 10:00, answered 12:30, 30 min late."""
    cycle = TicketClock(MONDAY_0800, Priority.MAJOR, first_response_at=msk(2026, 10, 19, 8, 20),
                        unanswered_since=msk(2026, 10, 19, 10, 0),
                        answered_at=msk(2026, 10, 19, 12, 30))
    status = evaluate(cycle, PLAN, CALENDARS, msk(2026, 10, 19, 12, 30))
    nxt = [e for e in outcome_entries(cycle, PLAN, status, CALENDARS) if e.timer == "next_response"]
    assert [(e.kind, e.deadline, e.due_at, e.overdue_minutes) for e in nxt] == [
        (MET, msk(2026, 10, 19, 12, 30), msk(2026, 10, 19, 12, 0), 30)]
