"""The engineer command table: one handler per command name, each with the result line as before."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from support.configs import make_config

from mailticket.errors import CommandError
from mailticket.model import Priority
from mailticket.outbound.notify import Notifier
from mailticket.outbound.render import Renderer
from mailticket.policy.commands import COMMAND_NAMES, Command, CommandName, parse_commands
from mailticket.processing import command_handlers
from mailticket.processing.command_handlers import HANDLERS, CommandContext
from mailticket.processing.work import Context
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import AuditEvent, Base, Ticket
from mailticket.tickets import service as tickets

NOW = datetime(2026, 11, 20, 16, 50, tzinfo=UTC)
ANNA = "anna@provider.example"


def test_every_command_name_has_exactly_one_handler() -> None:
    assert set(HANDLERS) == set(CommandName) == set(COMMAND_NAMES.values())


def test_a_command_without_a_handler_is_refused_as_before() -> None:
    # Only a hand-made Command can name one: the parser refuses unknown words first.
    acting = CommandContext(run=None, ticket=None, engineer=ANNA, evidence="smtp_auth")  # type: ignore[arg-type]
    with pytest.raises(CommandError) as info:
        command_handlers.apply(acting, Command("frobnicate", None, "#frobnicate"))  # type: ignore[arg-type]
    assert (info.value.line, info.value.reason) == ("#frobnicate", "#frobnicate is not available yet")


def test_an_unknown_command_word_is_refused_by_the_parser_as_before() -> None:
    parsed = parse_commands("#frobnicate 3\nText")
    [error] = parsed.errors
    assert (error.line, error.reason) == (
        "#frobnicate 3",
        "unknown command; known: #status, #priority, #assign, #line, #internal, #time, #cc, "
        "#uncc, #merge, #close, #cause, #actions, #kb, #impact, #restored, #prevention, #started",
    )


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Context]:
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    Base.metadata.create_all(engine)
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'h.db'}")
    with make_sessionmaker(engine)() as session:
        yield Context(session, config, Notifier(config, Renderer(config.templates_dir)), NOW)
    engine.dispose()


def _ticket(ctx: Context, requester: str = "ivan@acme.example") -> Ticket:
    return tickets.open_ticket(ctx.session, subject="Принтер", contract=ctx.config.contracts["acme"],
                               requester=requester, priority=Priority.MINOR, now=NOW)


def _apply(ctx: Context, ticket: Ticket, line: str) -> str:
    parsed = parse_commands(line)
    assert not parsed.errors, parsed.errors
    [command] = parsed.commands
    return command_handlers.apply(CommandContext(ctx, ticket, ANNA, "smtp_auth"), command)


@pytest.mark.parametrize(("line", "message"), [
    ("#status open", "status is now open"),
    ("#статус решен", "status is now resolved"),
    ("#close", "status is now closed"),
    ("#priority critical", "priority is now critical"),
    ("#assign Vera@provider.example", "assigned to vera@provider.example"),
    ("#line 2", "line is now L2"),
    ("#internal", "kept as an internal note; nothing sent to the customer"),
    ("#time 1h30m", "90 min recorded (90 in total)"),
    ("#cc petr@acme.example", "petr@acme.example will be copied"),
    ("#cause disk full", "cause recorded"),
    ("#actions replaced the disk", "actions recorded"),
    ("#impact orders are not accepted", "impact recorded"),
    ("#профилактика оповещение о диске", "prevention recorded"),
    # Times in the ticket's calendar zone (Moscow); the ticket opened at 19:50.
    ("#restored", "service restored at 2026-11-20 Fri 19:50 MSK recorded"),
    ("#начало 19:30", "incident start at 2026-11-20 Fri 19:30 MSK recorded"),
])
def test_each_handler_reports_what_it_did(run: Context, line: str, message: str) -> None:
    assert _apply(run, _ticket(run), line) == message


@pytest.mark.parametrize(("line", "reason"), [
    ("#assign nobody@provider.example", "nobody@provider.example is not a configured engineer"),
    ("#cc x@other.example", "x@other.example does not belong to the ticket's contract"),
    ("#uncc petr@acme.example", "petr@acme.example is not copied on this ticket"),
    ("#kb no-such", "no knowledge-base article 'no-such'"),
    ("#restored 19:40",
     "2026-11-20 Fri 19:40 MSK is before the ticket was opened (2026-11-20 Fri 19:50 MSK)"),
    ("#восстановлено 2026-11-21 10:00", "2026-11-21 Sat 10:00 MSK is in the future"),
    ("#started 2026-11-21 10:00", "2026-11-21 Sat 10:00 MSK is in the future"),
])
def test_each_refusal_says_why(run: Context, line: str, reason: str) -> None:
    with pytest.raises(CommandError) as info:
        _apply(run, _ticket(run), line)
    assert (info.value.line, info.value.reason) == (line, reason)


def test_uncc_stops_copying_a_colleague_but_never_the_requester(run: Context) -> None:
    ticket = _ticket(run)
    _apply(run, ticket, "#cc petr@acme.example")
    assert _apply(run, ticket, "#uncc petr@acme.example") == "petr@acme.example will no longer be copied"
    with pytest.raises(CommandError) as info:
        _apply(run, ticket, "#uncc ivan@acme.example")
    assert info.value.reason == "ivan@acme.example is not copied on this ticket"


def test_a_status_the_ticket_cannot_take_is_refused(run: Context) -> None:
    ticket = _ticket(run)
    assert _apply(run, ticket, "#close") == "status is now closed"
    with pytest.raises(CommandError) as info:
        _apply(run, ticket, "#status resolved")
    assert info.value.reason == "cannot change status from closed to resolved"


def test_merge_moves_the_contacts_and_names_the_target(run: Context) -> None:
    target, ticket = _ticket(run), _ticket(run, "petr@acme.example")
    assert _apply(run, ticket, f"#merge MT-{target.id}") == f"merged into MT-{target.id}"
    assert ticket.merged_into == target.id
    assert {c.address for c in target.contacts} == {"ivan@acme.example", "petr@acme.example"}
    with pytest.raises(CommandError) as info:
        _apply(run, target, f"#merge MT-{target.id}")
    assert info.value.reason == f"no other ticket MT-{target.id}"


def test_started_after_the_ticket_opened_is_refused_and_restored_is_audited(run: Context) -> None:
    ticket = tickets.open_ticket(run.session, subject="Сайт", contract=run.config.contracts["acme"],
                                 requester="ivan@acme.example", priority=Priority.CRITICAL,
                                 now=NOW - timedelta(hours=1))
    with pytest.raises(CommandError) as info:
        _apply(run, ticket, "#started 19:00")
    assert info.value.reason == (
        "2026-11-20 Fri 19:00 MSK is after the ticket was opened (2026-11-20 Fri 18:50 MSK); "
        "#started is for an incident that began before it was reported")
    assert _apply(run, ticket, "#restored 19:20") == (
        "service restored at 2026-11-20 Fri 19:20 MSK recorded")
    detail = run.session.scalars(select(AuditEvent.detail).where(
        AuditEvent.ticket_id == ticket.id, AuditEvent.action == "restored")).one()
    assert detail == {"at": "2026-11-20T16:20:00+00:00", "source": "engineer"}
