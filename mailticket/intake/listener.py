"""The SMTP and LMTP listeners: validate the envelope, spool the raw bytes, answer.

This is stage 1 → 2 of the mail path (receive → durable spool). The handler
does no parsing and no ticket work: it checks that each recipient is ours,
caps recipients, lets aiosmtpd enforce the size and line limits, hands the
raw message with its envelope to the listener's :class:`SpoolWriter` (group
commit: one transaction for every mail waiting, off the event loop) and says
``250`` only after the transaction holding its row committed. A failed write
is ``451`` so the sending MTA retries; we never answer our own failure with a
5xx (Mailman's runners/lmtp.py lesson, inverted).

aiosmtpd ≥ 1.4.6 is required: 1.4.5 fixed SMTP smuggling (CVE-2024-27305)
and 1.4.6 the STARTTLS buffer injection (CVE-2024-34083). The session caps
(connections, commands, wall-clock time) live in ``smtp_limits``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthenticatorType, Envelope, Session, TLSSetupException
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailticket import log
from mailticket.config import ListenerConfig
from mailticket.intake.limits import (
    COMMAND_CALL_LIMITS,
    MAX_COMMANDS_PER_SESSION,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_IP,
    MAX_SESSION_SECONDS,
    ConnectionLimiter,
    LimitedLMTP,
    LimitedSMTP,
    format_peer,
    parse_networks,
)
from mailticket.intake.spool_writer import SpoolRequest, SpoolWriter
from mailticket.mail.addresses import is_our_address
from mailticket.metrics import Metrics
from mailticket.model import utc_now

REPLY_OK = "250 OK"
REPLY_BAD_RECIPIENT = "550 5.1.1 <{address}>: recipient not accepted here"
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
REPLY_QUEUED = "250 2.0.0 Ok: queued as {spool_id}"
REPLY_TEMPFAIL = "451 4.3.0 Temporary failure, please retry"

_log = log.get("smtp")



def _auth_user(session: Session) -> str | None:
    """The login of an authenticated session, whatever shape the authenticator gave it."""
    if not session.authenticated:
        return None
    data = session.auth_data
    login = getattr(data, "login", data)
    if isinstance(login, bytes):
        return login.decode("utf-8", "replace")
    if isinstance(login, str):
        return login
    return None


class SpoolHandler:
    """aiosmtpd handler: accept our recipients, spool each message, answer after commit."""

    def __init__(
        self,
        writer: SpoolWriter,
        support_addresses: tuple[str, ...],
        *,
        source: str = "smtp",
        max_recipients: int = 20,
        clock: Callable[[], datetime] = utc_now,
        metrics: Metrics | None = None,
    ) -> None:
        self.writer = writer
        self._support_addresses = support_addresses
        self._source = source
        self._max_recipients = max_recipients
        self._clock = clock
        self._metrics = metrics

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept only our (possibly plus-addressed) addresses, at most ``max_recipients``."""
        if not is_our_address(address, self._support_addresses):
            return REPLY_BAD_RECIPIENT.format(address=address)
        if len(envelope.rcpt_tos) >= self._max_recipients:
            return REPLY_TOO_MANY_RECIPIENTS
        # A handle_RCPT hook must record the recipient itself.
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return REPLY_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Write the message to the spool and return 250 (one line per recipient for LMTP)."""
        mail_from = envelope.mail_from or ""
        request = SpoolRequest(
            source=self._source,
            # The null reverse-path (bounces) is stored as "", not "<>".
            mail_from="" if mail_from == "<>" else mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            peer=format_peer(session.peer),
            auth_user=_auth_user(session),
            raw=envelope.original_content or b"",
            received_at=self._clock(),
        )
        size = len(request.raw)
        try:
            spooled = await self.writer.put(request)
        except Exception:
            # Any failure to make the message durable is our problem, not the
            # sender's: 451 makes the MTA keep it and retry.
            _log.warning(
                "spool write failed",
                extra={"peer": request.peer, "size": size},
                exc_info=True,
            )
            reply = REPLY_TEMPFAIL
        else:
            _log.info(
                "spooled",
                extra={
                    "peer": request.peer,
                    "spool_id": spooled.id,
                    "size": size,
                    "source": self._source,
                },
            )
            if self._metrics is not None:
                self._metrics.observe_received(self._source)
            reply = REPLY_QUEUED.format(spool_id=spooled.id)
        if isinstance(server, LMTP):
            # LMTP wants one reply per accepted recipient, in RCPT order; one
            # spool row carries them all, so they share its fate.
            return "\r\n".join([reply] * len(request.rcpt_tos))
        return reply

    async def handle_exception(self, error: Exception) -> str:
        """A bug in a hook is our failure: log it and answer 451, never 5xx."""
        if isinstance(error, TLSSetupException):
            # A client that botched the TLS handshake (scanners do); aiosmtpd
            # closes the connection and sends nothing, so this is no bug of ours.
            _log.info("tls handshake failed", extra={"reason": str(error.__cause__ or error)})
        else:
            _log.error("smtp handler error", exc_info=error)
        return REPLY_TEMPFAIL


def tls_context(listener: ListenerConfig) -> ssl.SSLContext | None:
    """A server TLS context from the listener's cert and key, or None when not configured."""
    if listener.tls_cert is None or listener.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(listener.tls_cert), str(listener.tls_key))
    return context


def _source(listener: ListenerConfig) -> str:
    if listener.submission:
        return "submission"
    return "lmtp" if listener.protocol == "lmtp" else "smtp"


async def start_listener(
    listener: ListenerConfig,
    factory: sessionmaker[DbSession],
    support_addresses: tuple[str, ...],
    *,
    clock: Callable[[], datetime] = utc_now,
    authenticator: AuthenticatorType | None = None,
    hostname: str | None = None,
    max_connections: int = MAX_CONNECTIONS,
    max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP,
    max_session_seconds: float = MAX_SESSION_SECONDS,
    max_commands: int = MAX_COMMANDS_PER_SESSION,
    metrics: Metrics | None = None,
) -> asyncio.base_events.Server:
    """Serve ``listener`` on the running event loop; the caller closes the returned server.

    :param authenticator: aiosmtpd authenticator for a ``submission`` listener
        (engineers' SMTP AUTH); put the login into ``AuthResult.auth_data`` (a
        ``LoginPassword`` or a ``str``) and it is recorded as the spool row's
        ``auth_user``. AUTH is offered only after STARTTLS (aiosmtpd default).
    :param hostname: name in the greeting; None looks up the FQDN once here
        (aiosmtpd would otherwise do a blocking lookup for every connection).
    """
    loop = asyncio.get_running_loop()
    if hostname is None:
        hostname = await asyncio.to_thread(socket.getfqdn)
    writer = SpoolWriter(factory)
    # Connect now: the first burst of mail must not wait for the connection and mappers.
    await writer.warm()
    handler = SpoolHandler(
        writer,
        support_addresses,
        source=_source(listener),
        max_recipients=listener.max_recipients,
        clock=clock,
        metrics=metrics,
    )
    context = tls_context(listener)
    limiter = ConnectionLimiter(
        max_connections,
        max_connections_per_ip,
        trusted=parse_networks(listener.trusted_peers),
        reserve=listener.reserved_connections,
    )
    protocol = LimitedLMTP if listener.protocol == "lmtp" else LimitedSMTP
    kwargs: dict[str, Any] = {
        "limiter": limiter,
        "max_session_seconds": max_session_seconds,
        "max_commands": max_commands,
        "metrics": metrics,
        "hostname": hostname,
        "ident": "mailticket",
        "data_size_limit": listener.max_message_size,
        "timeout": listener.timeout,
        "tls_context": context,
        # A submission listener carries passwords: no mail before STARTTLS.
        "require_starttls": (listener.submission or listener.require_starttls)
        and context is not None,
        "command_call_limit": COMMAND_CALL_LIMITS,
        "loop": loop,
    }
    if authenticator is not None:
        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = listener.submission
    server = await loop.create_server(
        lambda: protocol(handler, **kwargs), listener.host, listener.port
    )
    _log.info(
        "listener started",
        extra={
            "host": listener.host,
            # With port 0 the OS picked one; report the real port.
            "port": server.sockets[0].getsockname()[1],
            "protocol": listener.protocol,
            "source": _source(listener),
            "tls": context is not None,
        },
    )
    return server
