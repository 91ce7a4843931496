"""Non-standard bounces: cheap header signs first, flufl.bounce's detectors second."""

from __future__ import annotations

import email.policy
import logging
import re
from email.message import Message
from email.parser import BytesParser

from flufl.bounce import all_failures

from mailticket.mail.address_lists import addr_spec, is_daemon_address
from mailticket.mail.inbound import DsnRecipient
from mailticket.mail.mime import first_raw

BOUNCE_SCAN_BYTES = 64 * 1024
# flufl.bounce logs a full traceback at ERROR for every detector that trips over
# a hostile mail (a Header object for From, no From at all); a bounce storm would
# flood the log with them. A failed scan is recorded as a defect instead.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
# Exchange, Yandex, Mail.ru and the Russian-language Outlook/Exchange ones.
BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver(?:ed|able)|delivery status notification \((?:failure|delay)\)"
    r"|delivery (?:failure|has failed|notification)|mail delivery (?:failed|failure)"
    r"|returned mail|failure notice|non[- ]?deliver|could not send message"
    r"|message not delivered|mail failure"
    r"|недоставленное сообщение|не удалось доставить|не удается доставить"
    r"|сообщение не доставлено|письмо не доставлено|не доставлено|ошибка доставки"
    r"|возвращенное письмо|возвращённое письмо)",
    re.IGNORECASE,
)


def looks_like_bounce(msg: Message, subject: str, from_addr: str, report_type: str) -> bool:
    """Cheap header signs that a mail may be a bounce worth running flufl.bounce on.

    flufl.bounce's heuristics read whole bodies; running them on every mail
    would cost time and would flag a customer who forwards a bounce to us.
    """
    if report_type == "delivery-status" or is_daemon_address(from_addr):
        return True
    if BOUNCE_SUBJECT.search(subject):
        return True
    if (first_raw(msg, "return-path") or "").strip() == "<>":
        return True
    return "failure" in (first_raw(msg, "auto-submitted") or "").lower()


def scan_bounce(raw: bytes, msg: Message, defects: list[str]) -> list[DsnRecipient]:
    """Failed recipients of a non-standard bounce, found by flufl.bounce's detectors.

    The detectors are line-by-line Python over the whole mail (seconds for a
    few MiB), and a bounce states its failures before the returned message,
    so they only see the first BOUNCE_SCAN_BYTES.
    """
    try:
        if len(raw) > BOUNCE_SCAN_BYTES:
            msg = BytesParser(policy=email.policy.compat32).parsebytes(raw[:BOUNCE_SCAN_BYTES])
        temporary, permanent = all_failures(msg)
    except Exception as exc:
        # Seventeen third-party heuristics over hostile bodies: a failure of
        # one of them must cost us the bounce data, never the mail.
        defects.append(f"bounce scan failed: {type(exc).__name__}")
        return []
    found: list[DsnRecipient] = []
    for action, addresses in (("failed", permanent), ("delayed", temporary)):
        for raw_address in sorted(addresses):
            address = addr_spec(raw_address.decode("ascii", errors="replace"))
            if address:
                found.append(DsnRecipient(address, action, "", "found by flufl.bounce"))
    return found
