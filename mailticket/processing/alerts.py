"""Put monitoring alerts on tickets: one ticket per trigger, however often it fires.

``monitoring`` reads an alert; this module decides what it does to tickets, in
the worker's transaction. A PROBLEM opens a ticket (routed like any other, with
the alert's severity as its priority) or, when the trigger already has an open
ticket, is appended to it. A recovery resolves that ticket, or only notes it
when the contract says ``on_recovery = "note"``. A PROBLEM soon after its
recovery (within the source's flap window) reopens the same ticket instead of
opening a new one, and the ticket counts the flaps. Every recovery is also
recorded as "service restored" for the incident notice. A monitoring robot never
gets an acknowledgement: the ticket's contacts are the people the contract
names, not the robot.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from mailticket.log import get as get_logger
from mailticket.model import ArticleKind, Direction, Status
from mailticket.outbound import notify
from mailticket.policy import kb, routing
from mailticket.policy.monitoring import Alert, AlertState, Recognised
from mailticket.processing.work import Context, Disposition, Outcome, Work
from mailticket.reports import incident_facts
from mailticket.store.schema import Ticket
from mailticket.tickets import service as tickets

log = get_logger("alerts")
_ENDED = (Status.RESOLVED.value, Status.CLOSED.value)
# A recovery or a notice for a trigger with no open ticket.
_UNMATCHED = {AlertState.OK: Disposition.ALERT_OK_UNMATCHED,
              AlertState.INFO: Disposition.ALERT_INFO_UNMATCHED}
# Who hears of what: engineers of a new ticket, a flap and a recovery; repeats stay quiet.
_NOTICES = {Disposition.ALERT_NEW: "new", Disposition.ALERT_FLAP: "reopened",
            Disposition.ALERT_RESOLVED: "alert_resolved"}


def latest_ticket(ctx: Context, alert: Alert) -> Ticket | None:
    """The newest ticket of this trigger (open or not), not counting merged ones."""
    return ctx.session.scalars(
        select(Ticket)
        .where(Ticket.alert_key == alert.key, Ticket.merged_into.is_(None))
        .order_by(Ticket.id.desc())
        .limit(1)
    ).first()


def handle(work: Work, ctx: Context) -> Outcome:
    """Apply one monitoring mail; never answers the robot."""
    assert work.mail is not None and work.alert is not None
    mail, found = work.mail, work.alert
    if tickets.is_known_message_id(ctx.session, mail.message_id):
        return Outcome(Disposition.DUPLICATE, detail=mail.message_id or "")
    alert = found.alert
    if alert is None:
        log.info("monitoring mail without an alert", extra={"spool_id": work.spool_id,
                 "from": mail.from_addr, "reason": found.reason})
        return Outcome(Disposition.ALERT_IGNORED, detail=found.reason)
    ticket = latest_ticket(ctx, alert)
    is_open = ticket is not None and ticket.status not in _ENDED
    if alert.state == AlertState.PROBLEM:
        if ticket is not None and is_open:
            code = _repeat(ctx, ticket, alert)
        elif ticket is not None and _within_flap_window(ctx, ticket, alert):
            code = _reopen(ctx, ticket, alert)
        else:
            ticket, code = _open(ctx, work, found, alert), Disposition.ALERT_NEW
    elif ticket is None or not is_open:
        return Outcome(_UNMATCHED[alert.state], detail=f"{alert.host}: {alert.trigger}")
    elif alert.state == AlertState.OK:
        code = _recover(ctx, ticket, alert, mail.from_addr)
    else:
        code = Disposition.ALERT_INFO
    ticket.alert_count += 1
    tickets.add_article(
        ctx.session, ticket, direction=Direction.IN, kind=ArticleKind.AUTO,
        from_addr=mail.from_addr, to_addrs=[*mail.to, *mail.cc], subject=mail.subject,
        text=mail.text, html=mail.html, message_id=mail.message_id, spool_id=work.spool_id,
        author=mail.from_addr, defects=mail.defects, now=ctx.now,
    )
    if (event := _NOTICES.get(code)) is not None:
        _notify(ctx, ticket, event, mail.from_addr, mail.from_name, mail.text)
    return Outcome(code, ticket.id, f"{alert.host}: {alert.trigger}")


def _open(ctx: Context, work: Work, found: Recognised, alert: Alert) -> Ticket:
    """A new ticket for a new problem, routed as monitoring traffic."""
    assert work.mail is not None
    sender, contract = work.mail.from_addr, found.contract
    route = routing.decide(ctx.config, contract, sender=sender, subject=work.mail.subject,
                           monitoring=True, priority=alert.priority)
    ticket = tickets.open_ticket(
        ctx.session, subject=f"{alert.host}: {alert.trigger}", contract=contract,
        requester=sender, priority=route.priority, now=ctx.now, assignee=route.assignee,
        locale=contract.locale,
    )
    # Replies go to the people the contract names; the robot is only the requester.
    ticket.contacts.clear()
    for address in found.source.contacts or contract.contacts[:1]:
        tickets.add_contact(ticket, address)
    ticket.alert_key, ticket.alert_state = alert.key, alert.state.value
    tickets.apply_route(ctx.session, ticket, route, sender, ctx.now)
    tickets.audit(ctx.session, ticket.id, sender, "opened", {
        "spool_id": work.spool_id, "alert": _detail(alert)}, ctx.now)
    return ticket


def _repeat(ctx: Context, ticket: Ticket, alert: Alert) -> Disposition:
    """A problem on an open ticket: a repeat, or a flap when its last mail was a recovery."""
    flapped = ticket.alert_state == AlertState.OK.value
    ticket.alert_state = AlertState.PROBLEM.value
    if flapped:
        ticket.alert_flaps += 1
    tickets.audit(ctx.session, ticket.id, alert.source.senders[0],
                  "alert_flap" if flapped else "alert_repeat", _detail(alert), ctx.now)
    return Disposition.ALERT_FLAP_NOTED if flapped else Disposition.ALERT_REPEAT


def _within_flap_window(ctx: Context, ticket: Ticket, alert: Alert) -> bool:
    """Whether a problem comes back soon enough after recovery to count as flapping."""
    ended = ticket.resolved_at or ticket.closed_at
    window = timedelta(minutes=alert.source.flap_window_minutes)
    return ended is not None and ticket.status == Status.RESOLVED.value and (
        ctx.now - ended <= window)


def _reopen(ctx: Context, ticket: Ticket, alert: Alert) -> Disposition:
    """The trigger fired again soon after recovery: the same ticket, one more flap."""
    actor = alert.source.senders[0]
    tickets.change_status(ctx.session, ticket, Status.OPEN, actor=actor, now=ctx.now)
    ticket.alert_state = AlertState.PROBLEM.value
    ticket.alert_flaps += 1
    tickets.audit(ctx.session, ticket.id, actor, "alert_flap", _detail(alert), ctx.now)
    return Disposition.ALERT_FLAP


def _recover(ctx: Context, ticket: Ticket, alert: Alert, actor: str) -> Disposition:
    """A recovery: resolve the ticket, or only record it, as the contract says."""
    ticket.alert_state = AlertState.OK.value
    tickets.audit(ctx.session, ticket.id, actor, "alert_recovered", _detail(alert), ctx.now)
    # The recovery is when service came back, for the incident notice (resolved may be later).
    tickets.audit(ctx.session, ticket.id, actor, incident_facts.RESTORED,
                  incident_facts.instant_detail(ctx.now, incident_facts.BY_ALERT), ctx.now)
    if alert.source.on_recovery == "resolve" and tickets.change_status(
        ctx.session, ticket, Status.RESOLVED, actor=actor, now=ctx.now
    ):
        return Disposition.ALERT_RESOLVED
    return Disposition.ALERT_OK_NOTED


def _notify(ctx: Context, ticket: Ticket, event: str, sender: str, name: str, text: str) -> None:
    """Tell the engineers of the contract (and the assignee) what the alert did."""
    notify.notify_engineers(
        ctx.session, ctx.notifier, ticket, event=event, from_addr=sender, from_name=name,
        text=text, attachments=[], now=ctx.now,
        recipients=routing.notice_recipients(ctx.config, ticket.contract_id, ticket.assignee),
        suggestions=kb.suggest(ctx.knowledge, ctx.config.kb, ticket.subject, text) if event == "new" else (),
    )


def _detail(alert: Alert) -> dict[str, str]:
    return {"host": alert.host, "trigger": alert.trigger, "severity": alert.severity,
            "state": alert.state.value, "event_id": alert.event_id}
