"""What each engineer command does to a ticket: one handler per command name.

``policy.commands`` reads the syntax; this table gives every
:class:`~mailticket.policy.commands.CommandName` one handler of the same shape,
as Mailman's ``commands/`` do. A handler changes the ticket, writes its audit
row and returns the line the engineer reads in the result mail, or raises
:class:`CommandError` with a reason they can act on. Handlers run inside the
reply's savepoint, so a refused command undoes the others (see ``engineer``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from mailticket.errors import CommandError
from mailticket.model import Line, Priority, Status, TicketRef
from mailticket.policy import contracts, kb
from mailticket.policy.commands import Command, CommandName, local_instant
from mailticket.processing.work import Context
from mailticket.reports import incident_facts
from mailticket.sla.explain import show_time
from mailticket.store.schema import Ticket
from mailticket.tickets import service as tickets
from mailticket.tickets import sla_facts


@dataclass(frozen=True)
class CommandContext:
    """What every handler may use: the mail's context, the ticket, who acts, on what evidence."""

    run: Context
    ticket: Ticket
    engineer: str
    evidence: str
    # Whether the mail carrying the commands reaches the customer (not #internal, has text).
    visible: bool = False

    def audit(self, action: str, detail: dict[str, object]) -> None:
        """One audit row for this ticket, by this engineer, now."""
        tickets.audit(self.run.session, self.ticket.id, self.engineer, action, detail,
                      self.run.now, self.evidence)


# The line the engineer reads in the result mail.
CommandResult = str
Handler = Callable[[CommandContext, Command], CommandResult]


def apply(c: CommandContext, command: Command) -> CommandResult:
    """Apply one command or raise CommandError (a name without a handler is refused too)."""
    handler = HANDLERS.get(command.name)
    if handler is None:
        raise CommandError(command.line, f"#{command.name} is not available yet")
    return handler(c, command)


def _set_status(c: CommandContext, command: Command, target: Status) -> CommandResult:
    if not tickets.change_status(c.run.session, c.ticket, target, actor=c.engineer,
                                 now=c.run.now, evidence=c.evidence, visible=c.visible):
        raise CommandError(command.line,
                           f"cannot change status from {c.ticket.status} to {target}")
    return f"status is now {target}"


def _status(c: CommandContext, command: Command) -> CommandResult:
    return _set_status(c, command, Status(command.arg or ""))


def _close(c: CommandContext, command: Command) -> CommandResult:
    return _set_status(c, command, Status.CLOSED)


def _priority(c: CommandContext, command: Command) -> CommandResult:
    arg = command.arg or ""
    old = c.ticket.priority
    c.ticket.priority = Priority(arg).value
    c.audit("priority", {"from": old, "to": arg})
    sla_facts.note_priority(c.ticket, c.run.now)
    return f"priority is now {arg}"


def _assign(c: CommandContext, command: Command) -> CommandResult:
    address = (command.arg or "").lower()
    if address not in c.run.config.engineers:
        raise CommandError(command.line, f"{address} is not a configured engineer")
    c.ticket.assignee = address
    c.audit("assign", {"to": address})
    return f"assigned to {address}"


def _line(c: CommandContext, command: Command) -> CommandResult:
    line = Line(command.arg or "")
    old = c.ticket.line
    c.ticket.line = line.value
    c.audit("line", {"from": old, "to": line.value})
    return f"line is now {line.value}"


def _internal(c: CommandContext, command: Command) -> CommandResult:
    # The engineer path keeps the mail as a note; the command itself changes nothing.
    return "kept as an internal note; nothing sent to the customer"


def _time(c: CommandContext, command: Command) -> CommandResult:
    arg = command.arg or ""
    c.ticket.time_spent_minutes += int(arg)
    c.audit("time", {"minutes": int(arg)})
    return f"{arg} min recorded ({c.ticket.time_spent_minutes} in total)"


def _cc(c: CommandContext, command: Command) -> CommandResult:
    address = (command.arg or "").lower()
    contract = c.run.config.contracts.get(c.ticket.contract_id or "")
    if contract is None or not contracts.belongs(contract, address):
        raise CommandError(command.line, f"{address} does not belong to the ticket's contract")
    tickets.add_contact(c.ticket, address)
    c.audit("cc", {"address": address})
    return f"{address} will be copied"


def _uncc(c: CommandContext, command: Command) -> CommandResult:
    address = (command.arg or "").lower()
    if not tickets.remove_contact(c.ticket, address):
        raise CommandError(command.line, f"{address} is not copied on this ticket")
    c.audit("uncc", {"address": address})
    return f"{address} will no longer be copied"


def _merge(c: CommandContext, command: Command) -> CommandResult:
    session, prefix = c.run.session, c.run.config.mail.ticket_prefix
    ref = TicketRef.parse(command.arg or "", prefix)
    target = tickets.get_for_update(session, ref.number) if ref is not None else None
    if target is None or target.id == c.ticket.id:
        raise CommandError(command.line, f"no other ticket {command.arg}")
    if target.contract_id != c.ticket.contract_id:
        raise CommandError(command.line, "tickets of different contracts cannot be merged")
    c.ticket.merged_into = target.id
    tickets.change_status(session, c.ticket, Status.CLOSED, actor=c.engineer, now=c.run.now,
                          evidence=c.evidence)
    for contact in c.ticket.contacts:
        tickets.add_contact(target, contact.address)
    c.audit("merge", {"into": target.id})
    return f"merged into {tickets.ref_of(target, prefix)}"


def _record_text(c: CommandContext, command: Command) -> CommandResult:
    """``#cause``, ``#actions``, ``#impact``, ``#prevention``: free text for the incident
    notice, kept in the audit log (each entry is one line of the notice)."""
    name = str(command.name)
    c.audit(name, {"text": command.arg or ""})
    return f"{name} recorded"


def _instant(c: CommandContext, command: Command) -> tuple[datetime, ZoneInfo]:
    """The instant a ``#restored``/``#started`` time names in the ticket's calendar zone
    (no time: now); a time still to come is refused, it cannot have been observed."""
    zone = ZoneInfo(incident_facts.ticket_timezone(c.run.notifier, c.ticket))
    at = local_instant(command.arg, zone, c.run.now) if command.arg else c.run.now
    if at > c.run.now:
        raise CommandError(command.line, f"{show_time(at, zone)} is in the future")
    return at, zone


def _restored(c: CommandContext, command: Command) -> CommandResult:
    """``#restored [TIME]``: service works again (resolving the ticket may come later)."""
    at, zone = _instant(c, command)
    if at < c.ticket.created_at:
        raise CommandError(command.line, f"{show_time(at, zone)} is before the ticket was "
                                         f"opened ({show_time(c.ticket.created_at, zone)})")
    c.audit(incident_facts.RESTORED, incident_facts.instant_detail(at, incident_facts.BY_ENGINEER))
    return f"service restored at {show_time(at, zone)} recorded"


def _started(c: CommandContext, command: Command) -> CommandResult:
    """``#started TIME``: when the incident began, if before anyone reported it."""
    at, zone = _instant(c, command)
    if at > c.ticket.created_at:
        raise CommandError(command.line, f"{show_time(at, zone)} is after the ticket was opened "
                                         f"({show_time(c.ticket.created_at, zone)}); #started "
                                         "is for an incident that began before it was reported")
    c.audit(incident_facts.STARTED, incident_facts.instant_detail(at, incident_facts.BY_ENGINEER))
    return f"incident start at {show_time(at, zone)} recorded"


def _kb(c: CommandContext, command: Command) -> CommandResult:
    return kb.check_command(c.run.knowledge, c.ticket.locale, command)


HANDLERS: Mapping[CommandName, Handler] = {
    CommandName.STATUS: _status,
    CommandName.CLOSE: _close,
    CommandName.PRIORITY: _priority,
    CommandName.ASSIGN: _assign,
    CommandName.LINE: _line,
    CommandName.INTERNAL: _internal,
    CommandName.TIME: _time,
    CommandName.CC: _cc,
    CommandName.UNCC: _uncc,
    CommandName.MERGE: _merge,
    CommandName.CAUSE: _record_text,
    CommandName.ACTIONS: _record_text,
    CommandName.KB: _kb,
    CommandName.IMPACT: _record_text,
    CommandName.RESTORED: _restored,
    CommandName.PREVENTION: _record_text,
    CommandName.STARTED: _started,
}
