"""Ticket application service: find, open, append, change status, audit.

Everything here runs inside the caller's transaction (the worker's one
transaction per spool item), so a ticket change, its articles, its audit
events and the outbox rows that announce it commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from mailticket.model import (
    ArticleKind,
    Contract,
    Direction,
    Priority,
    Status,
    TicketRef,
    can_transition,
)
from mailticket.policy.contracts import address_listed
from mailticket.policy.routing import Route
from mailticket.store import after_flush, row_ids
from mailticket.store.schema import (
    Article,
    AttachmentRow,
    AuditEvent,
    Blob,
    MessageIdIndex,
    Ticket,
    TicketContact,
)
from mailticket.tickets import sla_facts

# Rows nobody reads back as objects (the Message-ID index, the audit log) are
# written and read with prebuilt Core statements: no RETURNING of an id, no
# statement built per call. They are buffered on the unit of work and written
# in one executemany per table at its next flush point (store.after_flush),
# after the ticket they name if it was opened in this transaction.
_IDS = cast(Table, MessageIdIndex.__table__)
_KNOWN_ID = select(_IDS.c.message_id).where(_IDS.c.message_id == bindparam("mid"))
_TICKETS_OF_IDS = select(_IDS.c.message_id, _IDS.c.ticket_id).where(
    _IDS.c.message_id.in_(bindparam("ids", expanding=True))
)
_INSERT_ID = insert(_IDS)
_INSERT_AUDIT = insert(cast(Table, AuditEvent.__table__))
_INSERT_ARTICLE = insert(cast(Table, Article.__table__))
# A new ticket is written at the next flush point, not when opened; until then
# its columns must already read as they will be stored (alert_count 0, not None).
_TICKET_DEFAULTS: dict[str, Any] = {
    column.key: column.default.arg
    for column in cast(Table, Ticket.__table__).columns
    if isinstance(column.default, ScalarElementColumnDefault)
}


def ref_of(ticket: Ticket, prefix: str) -> TicketRef:
    """The public reference (``MT-12``) of a ticket."""
    return TicketRef(prefix, ticket.id)


def _settle(session: Session) -> None:
    """Write the buffered index rows before reading the index around the session."""
    after_flush.write_buffered(session, ("message_ids",))


def is_known_message_id(session: Session, message_id: str | None) -> bool:
    """Whether a Message-ID is already stored (a re-delivery, or To + Cc)."""
    if not message_id:
        return False
    _settle(session)
    return session.connection().execute(_KNOWN_ID, {"mid": message_id}).first() is not None


def known_message_ids(session: Session, message_ids: Sequence[str]) -> dict[str, int]:
    """The ticket of each of ``message_ids`` that is stored, in one query."""
    if not message_ids:
        return {}
    _settle(session)
    rows = session.connection().execute(_TICKETS_OF_IDS, {"ids": list(message_ids)}).all()
    return {mid: ticket_id for mid, ticket_id in rows}


def get(session: Session, ticket_id: int) -> Ticket | None:
    """The ticket with ``ticket_id``: one opened in this transaction (written at
    the next flush point, so ``session.get`` would flush and read it back), or
    the stored one."""
    for pending in session.new:
        if isinstance(pending, Ticket) and pending.id == ticket_id:
            return pending
    return session.get(Ticket, ticket_id)


def get_for_update(session: Session, ticket_id: int) -> Ticket | None:
    """The ticket a mail changes, its row locked until commit on PostgreSQL.

    Its ``sla_facts`` are read, extended in memory and written back, so two
    instances must not change one ticket at once: ``FOR NO KEY UPDATE`` (which
    does not block rows that only reference it) and a fresh read of the row once
    the lock is held. SQLite's ``BEGIN IMMEDIATE`` already serialises writers.
    """
    uow = after_flush.unit_of_work(session)
    if ticket_id in uow.locked or session.get_bind().dialect.name == "sqlite":
        return get(session, ticket_id)
    ticket = session.get(Ticket, ticket_id, with_for_update={"key_share": True},
                         populate_existing=True)
    if ticket is not None:
        uow.locked.add(ticket_id)
    return ticket


def find_by_message_ids(
    session: Session, message_ids: Sequence[str], known: Mapping[str, int] | None = None
) -> Ticket | None:
    """The ticket of the first cited Message-ID we know, following merges.

    ``known``: the caller's :func:`known_message_ids` over at least these ids.
    """
    by_id = known_message_ids(session, message_ids) if known is None else known
    for mid in message_ids:
        if mid in by_id:
            return follow_merges(session, get_for_update(session, by_id[mid]))
    return None


def find_by_numbers(session: Session, numbers: Iterable[int]) -> Ticket | None:
    """The first existing ticket among subject-tag numbers, following merges."""
    for number in numbers:
        ticket = get_for_update(session, number)
        if ticket is not None:
            return follow_merges(session, ticket)
    return None


def follow_merges(session: Session, ticket: Ticket | None) -> Ticket | None:
    """A merged ticket's mail goes to the ticket it was merged into."""
    hops = 0
    while ticket is not None and ticket.merged_into is not None and hops < 10:
        ticket = get_for_update(session, ticket.merged_into)
        hops += 1
    return ticket


def sender_belongs(ticket: Ticket, address: str, contract_id: str | None) -> bool:
    """Whether a customer may add to this ticket: same contract, or a listed contact.

    ``contract_id`` is what ``policy.auth`` found with ``policy.contracts``; the
    contacts are compared with the same normalisation.
    """
    if contract_id is not None and ticket.contract_id == contract_id:
        return True
    return address_listed(address, (c.address for c in ticket.contacts))


def open_ticket(
    session: Session,
    *,
    subject: str,
    contract: Contract | None,
    requester: str,
    priority: Priority,
    now: datetime,
    assignee: str | None = None,
    locale: str = "ru",
    line: str = "L1",
    contract_type: str | None = None,
) -> Ticket:
    """Create a ticket (status NEW) with its requester as first contact.

    ``line`` and ``contract_type`` let the router's decision go into the INSERT
    instead of a second UPDATE (``tickets.apply_route`` still audits it).
    """
    ticket = Ticket(**{
        **_TICKET_DEFAULTS,
        "id": row_ids.take(session, "tickets"),
        "subject": subject[:2000] or "(no subject)",
        "status": Status.NEW.value,
        "priority": priority.value,
        "line": line,
        "contract_type": contract_type,
        "contract_id": contract.id if contract else None,
        "requester": requester,
        "assignee": assignee,
        "locale": locale,
        "created_at": now,
        "updated_at": now,
    })
    ticket.contacts.append(TicketContact(address=requester, role="requester"))
    sla_facts.start(ticket)
    # Written at the next flush point, with what the mail adds to it by then
    # (its SLA due times, its colleagues): one INSERT, no UPDATE.
    session.add(ticket)
    uow = after_flush.unit_of_work(session)
    # Untouched by a status change or an engineer's reply since: its SLA clock
    # is known without reading anything back (see untouched_since_open).
    uow.fresh_ids.add(ticket.id)
    # Nobody else can see it before commit: no row lock to take (get_for_update).
    uow.locked.add(ticket.id)
    return ticket


def untouched_since_open(session: Session, ticket: Ticket) -> bool:
    """Whether ``ticket`` was opened in this session and has had no status change or reply.

    Such a ticket has no pauses, no answered customer mail and no SLA events
    yet, so ``sla_service`` builds its clock from the object alone.
    """
    return ticket.id in after_flush.unit_of_work(session).fresh_ids


def _touched(session: Session, ticket: Ticket) -> None:
    after_flush.unit_of_work(session).fresh_ids.discard(ticket.id)


def add_contact(ticket: Ticket, address: str, role: str = "cc") -> bool:
    """Add a customer address that will receive replies; False if already there."""
    if any(c.address == address for c in ticket.contacts):
        return False
    ticket.contacts.append(TicketContact(address=address, role=role))
    return True


def remove_contact(ticket: Ticket, address: str) -> bool:
    """Stop copying a colleague (never the requester); False if not on the ticket."""
    for contact in list(ticket.contacts):
        if contact.address == address and contact.role != "requester":
            ticket.contacts.remove(contact)
            return True
    return False


def add_article(
    session: Session,
    ticket: Ticket,
    *,
    direction: Direction,
    kind: ArticleKind,
    from_addr: str,
    to_addrs: Sequence[str],
    subject: str,
    text: str,
    now: datetime,
    html: str | None = None,
    message_id: str | None = None,
    spool_id: int | None = None,
    author: str | None = None,
    evidence: str | None = None,
    defects: Sequence[str] = (),
    attachments: Sequence[tuple[str, str, bytes]] = (),
    new_message_id: bool = False,
) -> Article:
    """Append an article, index its Message-ID and store attachments by content hash.

    The article's id is reserved first (``store.row_ids``), so the row and the
    index row of its Message-ID are buffered Core INSERTs written at the
    session's next flush point (one ``executemany`` per table for the whole
    mail). The result is a snapshot, not an object of the session: changing it
    changes nothing stored, and a ``ticket.articles`` already loaded does not
    grow (nothing on the mail path reads it). An article with attachments is
    written through the ORM with its reserved id, beside its attachment rows
    and blobs. ``new_message_id`` says the caller already knows the id is not
    indexed; reading the index (:func:`is_known_message_id`,
    :func:`find_by_message_ids`) writes the buffer first.
    """
    row: dict[str, Any] = {
        "id": row_ids.take(session, "articles"),
        "ticket_id": ticket.id,
        "direction": direction.value,
        "kind": kind.value,
        "message_id": message_id,
        "from_addr": from_addr,
        "to_addrs": list(to_addrs),
        "subject": subject,
        "text": text,
        "html": html,
        "spool_id": spool_id,
        "author": author,
        "evidence": evidence,
        "defects": list(defects)[:50],
        "created_at": now,
    }
    if message_id and not new_message_id and is_known_message_id(session, message_id):
        message_id = None  # another ticket (or this one) already claims it: no index row
    if attachments:
        stored = [store_attachment(session, name, ctype, data) for name, ctype, data in attachments]
        article = Article(**row, attachments=stored)
        session.add(article)
    else:
        after_flush.buffer(session, _INSERT_ARTICLE, row)
        article = Article(**row)
    if message_id:
        after_flush.buffer(session, _INSERT_ID, {
            "message_id": message_id, "ticket_id": ticket.id, "article_id": row["id"],
            "direction": direction.value})
    ticket.updated_at = now
    sla_facts.note_article(ticket, kind.value, now)
    if kind == ArticleKind.REPLY:
        _touched(session, ticket)
    return article


def index_message_id(
    session: Session,
    message_id: str,
    ticket_id: int,
    article_id: int | None,
    direction: Direction,
    *,
    fresh: bool = False,
) -> None:
    """Remember a Message-ID for threading; the first ticket to claim an id keeps it.

    ``fresh`` says the id cannot be stored yet (we just made it, or the caller
    looked), so the lookup is skipped. The row is buffered for the next flush
    point (``ticket_id`` must be a stored ticket).
    """
    if fresh or not is_known_message_id(session, message_id):
        after_flush.buffer(session, _INSERT_ID, {
            "message_id": message_id, "ticket_id": ticket_id, "article_id": article_id,
            "direction": direction.value,
        })


def store_attachment(
    session: Session, filename: str, content_type: str, data: bytes
) -> AttachmentRow:
    """Store content once by SHA-256; the display name is only metadata."""
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, data=data))
    return AttachmentRow(
        filename=filename[:255], content_type=content_type[:255], size=len(data), sha256=digest
    )


def change_status(
    session: Session,
    ticket: Ticket,
    new: Status,
    *,
    actor: str,
    now: datetime,
    evidence: str | None = None,
    visible: bool | None = None,
) -> bool:
    """Move a ticket along the transition table; False (and no change) if not allowed.

    :param visible: whether the change comes with a reply the customer receives
        (recorded: under a plan's ``pause_on = "question"`` only such a change to
        ``waiting`` pauses the SLA); None when no reply is involved (the
        customer's own mail, an alert recovery).
    """
    old = Status(ticket.status)
    if old == new or not can_transition(old, new):
        return False
    _touched(session, ticket)
    ticket.status = new.value
    ticket.updated_at = now
    if new == Status.RESOLVED:
        ticket.resolved_at = now
    elif new == Status.CLOSED:
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    elif new in (Status.OPEN, Status.WAITING) and old in (Status.RESOLVED, Status.CLOSED):
        ticket.resolved_at = None
        ticket.closed_at = None
    if new == Status.WAITING:
        ticket.sla_paused_since = now
    elif old == Status.WAITING:
        ticket.sla_paused_since = None
    detail: dict[str, Any] = {"from": old.value, "to": new.value}
    if visible is not None:
        detail["visible"] = visible
    audit(session, ticket.id, actor, "status", detail, now, evidence)
    sla_facts.note_status(ticket, sla_facts.StatusChange(now, old.value, new.value, visible))
    return True


def audit(
    session: Session,
    ticket_id: int | None,
    actor: str,
    action: str,
    detail: dict[str, Any],
    now: datetime,
    evidence: str | None = None,
) -> None:
    """Record who did what, when, and on what evidence (buffered to the next flush point)."""
    after_flush.buffer(session, _INSERT_AUDIT, {
        "ticket_id": ticket_id, "at": now, "actor": actor, "action": action, "detail": detail,
        "evidence": evidence,
    })


def apply_route(session: Session, ticket: Ticket, route: Route, actor: str, now: datetime) -> None:
    """Write the line and contract type on a just-opened ticket and audit the decision."""
    ticket.line = route.line.value
    ticket.contract_type = route.contract_type
    audit(session, ticket.id, actor, "routed", {
        "line": route.line.value, "assignee": route.assignee, "priority": route.priority.value,
        "priority_from": route.priority_from, "rule": route.rule,
        "contract_type": route.contract_type,
    }, now)
