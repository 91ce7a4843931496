"""One look at the relay for ``check-config --connect``: greeting, EHLO, STARTTLS, AUTH, QUIT.

The daemon only learns that a relay is unreachable or refuses our login when
the first mail is due, and then retries quietly for hours; an admin running
``check-config --connect`` after an edit wants to know now. The session is
opened exactly as the outbox drainer opens it (``smtp_client``'s connect), so
what passes here is what the drainer will meet. No mail is sent.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass

from mailticket.config import RelayConfig
from mailticket.errors import MailticketError
from mailticket.relay.smtp_client import connect_session, relay_tls_context


@dataclass(frozen=True)
class RelayProbe:
    """What the probe found: ``error`` is None when every configured step passed."""

    where: str
    steps: tuple[str, ...]
    error: str | None = None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _explain(exc: BaseException, relay: RelayConfig) -> str:
    """A sentence for an admin, translated from the smtplib/socket/ssl error at this edge."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer within {relay.timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {relay.host!r}: {exc.strerror}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "the relay does not offer STARTTLS (tls = \"starttls\")"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        detail = _text(exc.smtp_error)
        return f"AUTH as {relay.username!r} refused: {exc.smtp_code} {detail}"
    if isinstance(exc, smtplib.SMTPException) and "AUTH extension not supported" in str(exc):
        return "the relay offers no AUTH (on this port, or before STARTTLS)"
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = _text(exc.smtp_error)
        return f"refused: {exc.smtp_code} {detail}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"closed the connection: {exc}"
    return f"{exc.__class__.__name__}: {exc}"


def probe_relay(relay: RelayConfig) -> RelayProbe:
    """Open and close one relay session as the outbox drainer would; never raises."""
    where = f"{relay.host}:{relay.port}"
    try:
        context = relay_tls_context(relay)
    except MailticketError as exc:
        return RelayProbe(where, (), str(exc))
    try:
        smtp = connect_session(relay, context, None)
    except (smtplib.SMTPException, OSError) as exc:
        return RelayProbe(where, (), _explain(exc, relay))
    greeting = (smtp.ehlo_resp or b"").split(b"\n", 1)[0].decode("utf-8", "replace")
    steps = [f"EHLO {greeting.split(' ', 1)[0] or '?'}".strip()]
    if relay.tls == "implicit":
        steps.insert(0, "TLS")
    if relay.tls == "starttls":
        steps.append("STARTTLS")
    if relay.username:
        steps.append(f"AUTH as {relay.username}")
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
    return RelayProbe(where, tuple(steps))
