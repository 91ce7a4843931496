"""The SMTP and LMTP listeners: validate the envelope, spool the raw bytes, answer.

This is stage 1 → 2 of the mail path (receive → durable spool). The handler
does no parsing and no ticket work: it checks that each recipient is ours,
caps recipients, lets aiosmtpd enforce the size and line limits, writes the
raw message with its envelope to the ``spool`` table in a short transaction
on a worker thread (so the event loop keeps serving other sessions), and says
``250`` only after that commit. A failed write is ``451`` so the sending MTA
retries; we never answer our own failure with a 5xx (Mailman's runners/lmtp.py
lesson, inverted).

aiosmtpd ≥ 1.4.6 is required: 1.4.5 fixed SMTP smuggling (CVE-2024-27305)
and 1.4.6 the STARTTLS buffer injection (CVE-2024-34083). aiosmtpd has no
connection limit of its own, so the protocol classes here add one (total and
per peer IP, ``421`` when full), and every refusal is logged as one
structured line on the ``mailticket.smtp`` logger.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, AnyStr

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthenticatorType, Envelope, Session, TLSSetupException
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailticket import log
from mailticket.config import ListenerConfig
from mailticket.mail.addresses import is_our_address
from mailticket.store.db import transaction
from mailticket.store.schema import SpoolItem
from mailticket.store.workqueue import put_spool

# Defaults for the connection caps; the lead will move them into ListenerConfig.
MAX_CONNECTIONS = 100
MAX_CONNECTIONS_PER_IP = 10
# aiosmtpd's timeout is an idle timeout, reset by every command, so a client
# sending RSET once a minute would hold a slot for ever. A session has this
# much wall-clock time and this many commands in all (an MTA reusing one
# connection for a hundred messages needs about 500), then it gets 421.
MAX_SESSION_SECONDS = 1800.0
MAX_COMMANDS_PER_SESSION = 5000

REPLY_OK = "250 OK"
REPLY_BAD_RECIPIENT = "550 5.1.1 <{address}>: recipient not accepted here"
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
REPLY_QUEUED = "250 2.0.0 Ok: queued as {spool_id}"
REPLY_TEMPFAIL = "451 4.3.0 Temporary failure, please retry"
REPLY_TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try later"
REPLY_TOO_MANY_COMMANDS = "421 4.7.0 Too many commands in one session, goodbye"
REPLY_SESSION_TOO_LONG = "421 4.4.2 Session time limit reached, goodbye"

# Per-session command budgets. MAIL/RCPT/DATA/RSET fall under "*" and stay
# generous because an MTA reuses one connection for many messages; commands
# that only keep a session alive (NOOP resets the idle timer) are capped so a
# client cannot hold a connection slot for ever. Over budget → 421 and close.
COMMAND_CALL_LIMITS: dict[str, int] = {
    "*": 100_000,
    "NOOP": 20,
    "HELP": 10,
    "VRFY": 10,
    "EXPN": 10,
    "HELO": 10,
    "EHLO": 10,
    "LHLO": 10,
    "STARTTLS": 2,
    "AUTH": 10,
}

_log = log.get("smtp")


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (the default clock)."""
    return datetime.now(UTC)


def peer_ip(peer: Any) -> str:
    """The IP part of a socket peer name; a Unix-socket peer (``""``) is ``"local"``."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "local"


def format_peer(peer: Any) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6) for the spool row and the logs."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return "local"


def _log_refusal(peer: Any, reply: str) -> None:
    code, _, reason = reply.partition(" ")
    _log.info(
        "smtp refusal",
        extra={"peer": format_peer(peer), "code": code, "reason": reason},
    )


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


@dataclass(frozen=True)
class _Received:
    """Everything the spool row needs, copied off the aiosmtpd objects on the loop thread."""

    source: str
    mail_from: str
    rcpt_tos: list[str]
    peer: str
    auth_user: str | None
    raw: bytes
    received_at: datetime


class SpoolHandler:
    """aiosmtpd handler: accept our recipients, spool each message, answer after commit."""

    def __init__(
        self,
        factory: sessionmaker[DbSession],
        support_addresses: tuple[str, ...],
        *,
        source: str = "smtp",
        max_recipients: int = 20,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._factory = factory
        self._support_addresses = support_addresses
        self._source = source
        self._max_recipients = max_recipients
        self._clock = clock

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
        received = _Received(
            source=self._source,
            # The null reverse-path (bounces) is stored as "", not "<>".
            mail_from="" if mail_from == "<>" else mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            peer=format_peer(session.peer),
            auth_user=_auth_user(session),
            raw=envelope.original_content or b"",
            received_at=self._clock(),
        )
        try:
            spool_id = await asyncio.to_thread(self._spool, received)
        except Exception:
            # Any failure to make the message durable is our problem, not the
            # sender's: 451 makes the MTA keep it and retry.
            _log.warning(
                "spool write failed",
                extra={"peer": received.peer, "size": len(received.raw)},
                exc_info=True,
            )
            reply = REPLY_TEMPFAIL
        else:
            _log.info(
                "spooled",
                extra={
                    "peer": received.peer,
                    "spool_id": spool_id,
                    "size": len(received.raw),
                    "source": self._source,
                },
            )
            reply = REPLY_QUEUED.format(spool_id=spool_id)
        if isinstance(server, LMTP):
            # LMTP wants one reply per accepted recipient, in RCPT order; one
            # spool row carries them all, so they share its fate.
            return "\r\n".join([reply] * len(received.rcpt_tos))
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

    def _spool(self, received: _Received) -> int:
        """Insert one spool row and commit; runs on a worker thread. Returns the row id."""
        with transaction(self._factory) as db:
            item, _ = put_spool(
                db,
                SpoolItem(
                    source=received.source,
                    mail_from=received.mail_from,
                    rcpt_tos=received.rcpt_tos,
                    peer=received.peer,
                    auth_user=received.auth_user,
                    raw=received.raw,
                    size=len(received.raw),
                    next_attempt_at=received.received_at,
                    created_at=received.received_at,
                ),
            )
            spool_id = item.id
        # Only reached after the commit succeeded.
        return spool_id


class ConnectionLimiter:
    """Counts open sessions in total and per peer IP; used from the event loop thread only."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self._per_ip: Counter[str] = Counter()

    @property
    def total(self) -> int:
        """How many sessions are open now."""
        return sum(self._per_ip.values())

    def acquire(self, ip: str) -> str | None:
        """Take a slot for ``ip``; returns None, or the reason it was refused."""
        if self.total >= self.max_total:
            return "too many connections in total"
        if self._per_ip[ip] >= self.max_per_ip:
            return "too many connections from this IP"
        self._per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        """Give back the slot taken by :meth:`acquire`."""
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP with connection, command and session-time caps, logging every refusal."""

    def __init__(
        self,
        handler: Any,
        *,
        limiter: ConnectionLimiter,
        max_session_seconds: float = MAX_SESSION_SECONDS,
        max_commands: int = MAX_COMMANDS_PER_SESSION,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._limiter = limiter
        self._slot_ip: str | None = None
        self._refused = False
        self._max_session_seconds = max_session_seconds
        self._max_commands = max_commands
        self._commands = 0
        self._session_timer: asyncio.TimerHandle | None = None
        # Every command aiosmtpd dispatches goes through this table, so counting
        # here sees each one exactly once (the unknown ones have their own cap).
        self._smtp_methods = {
            name: self._counted(method) for name, method in self._smtp_methods.items()
        }

    def _counted(self, method: Callable[[str | None], Any]) -> Callable[[str | None], Any]:
        @functools.wraps(method)
        async def run(arg: str | None) -> None:
            self._commands += 1
            if self._commands > self._max_commands:
                await self.push(REPLY_TOO_MANY_COMMANDS)
                if self.transport is not None:
                    self.transport.close()
                return
            await method(arg)

        return run

    def _session_expired(self) -> None:
        """The wall-clock budget is spent: say 421 and close, whatever the client is doing."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        peer = self.session.peer if self.session is not None else None
        _log_refusal(peer, REPLY_SESSION_TOO_LONG)
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(REPLY_SESSION_TOO_LONG.encode() + b"\r\n")
        transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Take a connection slot, or answer 421 and close before the greeting."""
        # After STARTTLS aiosmtpd calls this again with the TLS transport; the
        # slot taken for the plain connection still covers it.
        if self._slot_ip is None:
            peer = transport.get_extra_info("peername")
            ip = peer_ip(peer)
            reason = self._limiter.acquire(ip)
            if reason is not None:
                self._refused = True
                _log.info(
                    "smtp refusal",
                    extra={
                        "peer": format_peer(peer),
                        "code": REPLY_TOO_MANY_CONNECTIONS[:3],
                        "reason": reason,
                    },
                )
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(REPLY_TOO_MANY_CONNECTIONS.encode() + b"\r\n")
                transport.close()
                return
            self._slot_ip = ip
            self._session_timer = asyncio.get_running_loop().call_later(
                self._max_session_seconds, self._session_expired
            )
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        """Release the connection slot (a refused connection never started a session)."""
        if self._refused:
            return
        if self._session_timer is not None:
            self._session_timer.cancel()
            self._session_timer = None
        if self._slot_ip is not None:
            self._limiter.release(self._slot_ip)
            self._slot_ip = None
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        """Send a reply; log it first when it refuses something (4xx/5xx)."""
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        if text[:1] in ("4", "5") and self.session is not None:
            # LMTP replies to DATA are several lines sharing one outcome: log the first.
            _log_refusal(self.session.peer, text.split("\r\n", 1)[0])
        await super().push(status)


class LimitedLMTP(LimitedSMTP, LMTP):
    """The LMTP variant (LHLO instead of HELO/EHLO) with the same caps and logging."""


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
    handler = SpoolHandler(
        factory,
        support_addresses,
        source=_source(listener),
        max_recipients=listener.max_recipients,
        clock=clock,
    )
    context = tls_context(listener)
    limiter = ConnectionLimiter(max_connections, max_connections_per_ip)
    protocol = LimitedLMTP if listener.protocol == "lmtp" else LimitedSMTP
    kwargs: dict[str, Any] = {
        "limiter": limiter,
        "max_session_seconds": max_session_seconds,
        "max_commands": max_commands,
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
