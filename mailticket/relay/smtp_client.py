"""Sending one outgoing mail: through an SMTP relay, or into a local Maildir.

This is the mechanics under ``transport.relay``'s outbox drainer, kept apart so
the drainer is only about claiming rows and recording results. Nothing here
touches the database: a function takes an :class:`Outgoing` and either returns
a :class:`SendResult` or raises a ``DeliveryError``.

The relay is spoken to with smtplib: TLS none/starttls/implicit with a verifying
context (the system CAs, or ``relay.ca_file``), AUTH when a username is set. When
no relay host is configured (the shipped default) each mail becomes an ``.eml``
file in a Maildir instead.

Refusals are kept per recipient: when the relay accepts some recipients and
refuses others, the mail counts as sent to the accepted ones; 5xx refusals are
returned as ``refused`` and 4xx ones as ``deferred``. Connection-level trouble
(connect, greeting, STARTTLS, AUTH, TLS verification) is always temporary: it is
about the link or the configuration, not about this mail.
"""

from __future__ import annotations

import os
import re
import secrets
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mailticket.config import RelayConfig
from mailticket.errors import (
    DeliveryError,
    MailticketError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)

BARE_LF = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True)
class Outgoing:
    """What the send step needs from an outbox row, read in the claim transaction."""

    outbox_id: int
    envelope_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message_id: str
    ticket_id: int | None
    kind: str = ""


@dataclass(frozen=True)
class SendResult:
    """The relay took the mail (DATA 250) for ``accepted``; the rest were refused at RCPT."""

    accepted: tuple[str, ...]
    reply: str
    refused: dict[str, str] = field(default_factory=dict)  # 5xx: give up on these
    deferred: dict[str, str] = field(default_factory=dict)  # 4xx: try these again


def _reply(code: int, text: bytes | str) -> str:
    """An SMTP reply as one printable line, e.g. ``550 5.1.1 no such user``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"[:1000]


def _refusal(code: int, reply: str, recipients: tuple[str, ...]) -> DeliveryError:
    """A whole-message refusal: 5xx is permanent for every recipient, anything else is not."""
    if 500 <= code < 600:
        return PermanentDeliveryError(reply, {r: reply for r in recipients})
    return TemporaryDeliveryError(reply)


def write_maildir(maildir: Path, item: Outgoing, now: datetime) -> Path:
    """Store the mail as ``new/<unique>.eml`` the Maildir way: write in tmp/, fsync, rename.

    ``Return-Path`` and ``X-Original-To`` lines are prepended so the envelope
    (for example Bcc recipients) is not lost; the rest is the exact bytes.
    """
    eol = b"\r\n" if b"\r\n" in item.raw[:4096] else b"\n"
    # The envelope comes from our own rows, but a CR/LF in it must never start a header.
    clean = [" ".join(a.split()) for a in (item.envelope_from, *item.rcpt_tos)]
    head = b"Return-Path: <" + clean[0].encode() + b">" + eol
    head += b"".join(b"X-Original-To: " + a.encode() + eol for a in clean[1:])
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    name = (
        f"{int(now.timestamp())}.P{os.getpid()}R{secrets.token_hex(8)}.outbox{item.outbox_id}.eml"
    )
    tmp_path, new_path = maildir / "tmp" / name, maildir / "new" / name
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head + item.raw)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp_path, new_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    # The rename is only durable once the directory entry is on disk.
    dir_fd = os.open(maildir / "new", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return new_path


def connect_session(
    relay: RelayConfig, context: ssl.SSLContext, helo_name: str | None
) -> smtplib.SMTP:
    """Open a session ready for MAIL FROM: greeting, EHLO, STARTTLS, AUTH."""
    smtp: smtplib.SMTP
    if relay.tls == "implicit":
        smtp = smtplib.SMTP_SSL(
            relay.host, relay.port, helo_name, timeout=relay.timeout, context=context
        )
    else:
        smtp = smtplib.SMTP(relay.host, relay.port, helo_name, timeout=relay.timeout)
    try:
        smtp.ehlo_or_helo_if_needed()
        if relay.tls == "starttls":
            # Never fall back to plain text: no STARTTLS means SMTPNotSupportedError.
            smtp.starttls(context=context)
            smtp.ehlo()
        if relay.username:
            smtp.login(relay.username, relay.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def _transaction(smtp: smtplib.SMTP, item: Outgoing) -> SendResult:
    """MAIL, one RCPT per recipient, DATA; per-recipient refusals are data, not errors."""
    # smtplib sends bytes as they are; a bare LF would reach the relay as one
    # overlong line, so the wire form always gets CRLF line ends.
    data = BARE_LF.sub(b"\r\n", item.raw)
    options = []
    if smtp.has_extn("size"):
        options.append(f"SIZE={len(data)}")
    if not data.isascii() and smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    if not all(a.isascii() for a in (item.envelope_from, *item.rcpt_tos)):
        if not smtp.has_extn("smtputf8"):
            reply = "relay does not offer SMTPUTF8 for a non-ASCII address"
            raise PermanentDeliveryError(reply, {r: reply for r in item.rcpt_tos})
        options.append("SMTPUTF8")
    code, text = smtp.mail(item.envelope_from, options)
    if code != 250:
        raise _refusal(code, _reply(code, text), item.rcpt_tos)
    accepted: list[str] = []
    refused: dict[str, str] = {}
    deferred: dict[str, str] = {}
    for rcpt in item.rcpt_tos:
        code, text = smtp.rcpt(rcpt)
        if code in (250, 251):
            accepted.append(rcpt)
        elif 400 <= code < 500:
            deferred[rcpt] = _reply(code, text)
        else:
            refused[rcpt] = _reply(code, text)
    if not accepted:
        if not deferred:
            summary = "; ".join(refused.values()) or "no recipients"
            raise PermanentDeliveryError(summary, refused)
        return SendResult((), "no recipient accepted", refused, deferred)
    try:
        code, data_text = smtp.data(data)
        reply = _reply(code, data_text)
    except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354).
        code, reply = exc.smtp_code, _reply(exc.smtp_code, exc.smtp_error)
    if code != 250:
        error = _refusal(code, reply, tuple(accepted))
        if isinstance(error, PermanentDeliveryError):
            error.recipients.update(refused)
        raise error
    return SendResult(tuple(accepted), reply, refused, deferred)


def send_smtp(
    relay: RelayConfig, item: Outgoing, context: ssl.SSLContext, helo_name: str | None = None
) -> SendResult:
    """Send one mail through the relay; smtplib, socket and ssl errors become DeliveryErrors."""
    where = f"relay {relay.host}:{relay.port}"
    try:
        smtp = connect_session(relay, context, helo_name)
    except (smtplib.SMTPException, OSError) as exc:
        # Connect, greeting, STARTTLS, AUTH or verification: the link, not this mail.
        raise TemporaryDeliveryError(f"{where}: {exc.__class__.__name__}: {exc}") from exc
    try:
        return _transaction(smtp, item)
    except smtplib.SMTPResponseException as exc:
        reply = _reply(exc.smtp_code, exc.smtp_error)
        raise _refusal(exc.smtp_code, reply, item.rcpt_tos) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise TemporaryDeliveryError(f"{where}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        # QUIT is a courtesy: its failure must never turn a delivered mail into a retry.
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def relay_tls_context(relay: RelayConfig) -> ssl.SSLContext:
    """A verifying TLS context for the relay: ``relay.ca_file`` when set, else the system CAs.

    An unreadable or malformed CA file is a configuration mistake, reported once
    at start-up rather than as a delivery error on every mail.
    """
    if relay.ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(relay.ca_file))
    except (ssl.SSLError, OSError) as exc:
        raise MailticketError(
            f"relay.ca_file {relay.ca_file}: cannot load CA certificates: {exc}"
        ) from None
