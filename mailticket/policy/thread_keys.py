"""Pure threading keys: which existing ticket might this mail belong to?

A reply is matched, in this order, by the Message-IDs it cites
(In-Reply-To, then References newest first: ours and theirs are all indexed),
then by the ``[#MT-1042]`` tag in its subject. The query that resolves the keys
runs in ``tickets``; whether the sender may join the thread is decided there
too, because a tag or a Message-ID can be guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mailticket.mail.parse import InboundMail


@dataclass(frozen=True)
class ThreadKeys:
    """Candidate thread keys of one mail, strongest first."""

    message_ids: tuple[str, ...]
    ticket_numbers: tuple[int, ...]


@lru_cache(maxsize=16)
def _tag_pattern(prefix: str) -> re.Pattern[str]:
    # Accept "[#MT-12]", "[MT-12]", "[# MT-12]" and "(#MT-12)": Outlook and some
    # mobile clients rewrite brackets, and people retype the tag by hand.
    return re.compile(rf"[\[(]\s*#?\s*{re.escape(prefix)}\s*-\s*(\d{{1,9}})\s*[\])]", re.IGNORECASE)


def subject_ticket_numbers(subject: str, prefix: str) -> tuple[int, ...]:
    """Ticket numbers tagged in a subject, in order of appearance, without repeats."""
    seen: list[int] = []
    for match in _tag_pattern(prefix).finditer(subject):
        number = int(match.group(1))
        if number not in seen:
            seen.append(number)
    return tuple(seen)


def thread_keys(mail: InboundMail, prefix: str) -> ThreadKeys:
    """The Message-IDs a mail replies to (nearest first) and the ticket tags in its subject."""
    ids: list[str] = []
    for mid in (*mail.in_reply_to, *reversed(mail.references)):
        if mid and mid not in ids and mid != mail.message_id:
            ids.append(mid)
    return ThreadKeys(
        message_ids=tuple(ids), ticket_numbers=subject_ticket_numbers(mail.subject, prefix)
    )
