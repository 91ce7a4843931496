"""Pure threading keys: which existing ticket might this mail belong to?

A reply is matched, in this order, by the Message-IDs it cites
(In-Reply-To, then References newest first: ours and theirs are all indexed),
then by the ``[#MT-1042]`` tag in its subject (read by ``TicketRef.in_subject``).
The query that resolves the keys runs in ``tickets``; whether the sender may
join the thread is decided there too, because a tag or a Message-ID can be guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailticket.mail.parse import InboundMail
from mailticket.model import TicketRef


@dataclass(frozen=True)
class ThreadKeys:
    """Candidate thread keys of one mail, strongest first."""

    message_ids: tuple[str, ...]
    ticket_numbers: tuple[int, ...]


def thread_keys(mail: InboundMail, prefix: str) -> ThreadKeys:
    """The Message-IDs a mail replies to (nearest first) and the ticket tags in its subject."""
    ids: list[str] = []
    for mid in (*mail.in_reply_to, *reversed(mail.references)):
        if mid and mid not in ids and mid != mail.message_id:
            ids.append(mid)
    tagged = TicketRef.in_subject(mail.subject, prefix)
    return ThreadKeys(message_ids=tuple(ids), ticket_numbers=tuple(ref.number for ref in tagged))
