"""Decide whether an inbound mail was written by a person or sent by a machine.

Answering machines is how mail loops and backscatter start: an
acknowledgement to an out-of-office reply draws another out-of-office reply,
an acknowledgement to a bounce goes nowhere. So every inbound mail is
classified before threading (SECURITY.md R3.1) and only ``NORMAL`` mail may
ever be answered. The signs are those of RFC 3834, RFC 3464, Mailman's
``can_acknowledge`` and Discourse's ``is_auto_generated?``, plus the subjects
that Exchange, Outlook, Gmail, Yandex, Mail.ru and Zimbra put on their replies.

The rules form a table checked in order (bounce, loop, auto-reply, list
traffic); the first that matches decides, and its reason names the header
that decided. Nothing here has side effects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mailticket.mail.addresses import is_our_address
from mailticket.mail.parse import BOUNCE_SUBJECT, InboundMail, is_daemon_address
from mailticket.model import Envelope, MailKind

LOOP_HEADER = "X-Mailticket-Loop"


@dataclass(frozen=True)
class Classification:
    """What a mail is, and which header said so."""

    kind: MailKind
    reason: str


@dataclass(frozen=True)
class _Context:
    """The facts every rule looks at."""

    mail: InboundMail
    envelope: Envelope
    our_addresses: tuple[str, ...]
    loop_header_value: str
    message_id_domain: str = ""

    @property
    def null_sender(self) -> bool:
        """RFC 5321 null reverse-path: only bounces and auto-replies use it.

        Mail fetched over IMAP has no envelope of ours; there only a delivered
        ``Return-Path: <>`` says the sender was null.
        """
        if self.envelope.source.startswith("imap"):
            return (self.mail.header("return-path") or "").strip() == "<>"
        return self.envelope.mail_from.strip() in ("", "<>")


# Out-of-office subjects: Exchange/Outlook (English and Russian), Gmail,
# Yandex ("Автоответ"), Mail.ru, Zimbra and the usual European ones.
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto[- ]?reply|auto[- ]?response|autoresponse|auto:"
    r"|out of (?:the )?office|ooo:|on vacation|vacation reply|away from (?:the )?office"
    r"|abwesenheitsnotiz|réponse automatique|respuesta automática|autosvar"
    r"|automatisch antwoord|автоответ|автоматический ответ|нет на месте|вне офиса"
    r"|меня нет в офисе|нахожусь в отпуске|я в отпуске|в отпуске|отсутствую)",
    re.IGNORECASE,
)
_NO_REPLY_LOCAL = re.compile(
    r"(?i)^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|no[-_.]?answer|unmonitored)(?:[-+._].*)?$"
)
_AUTO_REPLY_HEADERS = (
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-auto-response-suppress",
)
_LIST_HEADERS = ("list-id", "list-unsubscribe", "mailing-list", "list-post")


def _header(mail: InboundMail, name: str) -> str:
    return mail.header(name) or ""


def _bounce(ctx: _Context) -> str | None:
    mail = ctx.mail
    if mail.report_type == "delivery-status":
        return "Content-Type: multipart/report; report-type=delivery-status"
    if mail.dsn:
        return f"flufl.bounce found failed recipients ({mail.dsn[0].address})"
    if BOUNCE_SUBJECT.search(mail.subject):
        if is_daemon_address(mail.from_addr):
            return f"From: {mail.from_addr} with Subject: {mail.subject[:60]}"
        if ctx.null_sender:
            return f"null envelope sender with Subject: {mail.subject[:60]}"
    return None


def _loop(ctx: _Context) -> str | None:
    values = ctx.mail.headers.get(LOOP_HEADER.lower(), ())
    if ctx.loop_header_value and ctx.loop_header_value in (v.strip() for v in values):
        return f"{LOOP_HEADER}: {ctx.loop_header_value}"
    if ctx.mail.from_addr and is_our_address(ctx.mail.from_addr, ctx.our_addresses):
        return f"From: {ctx.mail.from_addr} is our own address"
    # Our mail redirected back to us (a forwarding rule, a "resend") keeps our
    # Message-ID even when the sender rewrote From:.
    domain = ctx.message_id_domain.lower()
    message_id = (ctx.mail.message_id or "").lower()
    if domain and message_id.rpartition("@")[2] == domain:
        return f"Message-ID: <{ctx.mail.message_id}> is one of ours"
    return None


def _auto_reply(ctx: _Context) -> str | None:
    mail = ctx.mail
    auto_submitted = _header(mail, "auto-submitted").strip()
    if auto_submitted and auto_submitted.split("(", 1)[0].strip().lower() != "no":
        return f"Auto-Submitted: {auto_submitted[:60]}"
    for name in _AUTO_REPLY_HEADERS:
        if name in mail.headers:
            return f"{_display(name)}: {_header(mail, name)[:60]}"
    if _header(mail, "precedence").strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    if mail.is_report:
        return f"Content-Type: multipart/report; report-type={mail.report_type}"
    if _AUTO_SUBJECT.search(mail.subject):
        return f"Subject: {mail.subject[:60]}"
    if ctx.null_sender:
        return "null envelope sender (MAIL FROM:<>)"
    local = mail.from_addr.partition("@")[0]
    if is_daemon_address(mail.from_addr) or _NO_REPLY_LOCAL.match(local):
        return f"From: {mail.from_addr}"
    return None


def _list_traffic(ctx: _Context) -> str | None:
    precedence = _header(ctx.mail, "precedence").strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return f"Precedence: {precedence}"
    for name in _LIST_HEADERS:
        if name in ctx.mail.headers:
            return f"{_display(name)}: {_header(ctx.mail, name)[:60]}"
    return None


def _display(name: str) -> str:
    """A lower-cased header name in its usual spelling (``list-id`` → ``List-Id``)."""
    return "-".join(part.capitalize() for part in name.split("-"))


# Checked in this order; the first rule that matches decides. Bounces come
# first so that VERP correlation always sees them.
_RULES: tuple[tuple[MailKind, Callable[[_Context], str | None]], ...] = (
    (MailKind.BOUNCE, _bounce),
    (MailKind.LOOP, _loop),
    (MailKind.AUTO_REPLY, _auto_reply),
    (MailKind.LIST_TRAFFIC, _list_traffic),
)


def classify(
    mail: InboundMail,
    envelope: Envelope,
    *,
    our_addresses: tuple[str, ...],
    loop_header_value: str,
    message_id_domain: str = "",
) -> Classification:
    """Classify ``mail``; only a ``NORMAL`` result may be acknowledged or answered.

    :param our_addresses: our support addresses; mail from them is a loop.
    :param loop_header_value: this instance's ``X-Mailticket-Loop`` value.
    :param message_id_domain: the domain of our Message-IDs; mail carrying one is a loop.
    """
    ctx = _Context(mail, envelope, our_addresses, loop_header_value, message_id_domain)
    for kind, rule in _RULES:
        reason = rule(ctx)
        if reason is not None:
            return Classification(kind, reason)
    return Classification(MailKind.NORMAL, "no sign of automatic mail")
