"""One trace for every automatic mail we decided not to send.

A cap (``caps``: the 40-a-day per recipient, one of a kind per day, ten per
ticket per hour), a suppressed address (``suppression``) or a robot rule (an
auto-reply never gets an answer) each stop mail on purpose. Silence would look
like a lost mail to the customer who asks and to the admin who greps at
3 a.m., so each stop leaves exactly one log line (``automatic mail stopped``
with the kind, reason and recipients) and, when the mail was about a ticket,
an ``auto_mail_stopped`` audit event on it, where ``tickets show`` finds it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from mailticket.log import get as get_logger
from mailticket.tickets import service as tickets

log = get_logger("auto_mail")

# Reasons, as they appear in the log line and the audit event.
CAP_RECIPIENT_DAY = "cap_recipient_per_day"
CAP_KIND_DAY = "cap_kind_per_day"
CAP_TICKET_HOUR = "cap_ticket_per_hour"
SUPPRESSED = "suppressed"
ROBOT = "robot"


def record(
    session: Session,
    *,
    kind: str,
    recipients: Sequence[str],
    reason: str,
    now: datetime,
    ticket_id: int | None = None,
    detail: str = "",
) -> None:
    """Log one stopped automatic mail and audit it on its ticket, if it has one.

    :param reason: one of the constants above; ``detail`` says more (the limit
        reached, the robot's header) in both the log line and the audit event.
    """
    fields: dict[str, object] = {"kind": kind, "reason": reason, "recipients": list(recipients)}
    if detail:
        fields["detail"] = detail
    # A robot rule is the normal course of things; a cap or a suppression is worth a look.
    level = logging.INFO if reason == ROBOT else logging.WARNING
    log.log(level, "automatic mail stopped", extra={**fields, "ticket": ticket_id})
    if ticket_id is not None:
        tickets.audit(session, ticket_id, "mailticket", "auto_mail_stopped", fields, now)
