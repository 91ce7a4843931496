"""Session guards for the SMTP/LMTP listeners: connection, command and time caps, refusals counted.

aiosmtpd has no connection limit of its own, and its timeout is an idle
timeout reset by every command, so a client sending RSET or NOOP could hold a
slot until the session cap. The protocol classes here add a cap on open
sessions (in total and per peer IP, ``421`` when full, with a reserve only
trusted peers may use, so idle strangers cannot lock our own MTA out), a
wall-clock budget and a command budget per session, and an idle timer that
only progress restarts: a command that moves a transaction further than it
has been since the last delivered message (MAIL, RCPT, DATA, the end of
data). Other commands (RSET, NOOP, HELP, EHLO …) restart it only for the
first ``FREE_IDLE_RESETS`` after each step of progress.
Every refusal we send (any 4xx/5xx reply) is one structured line on the
``mailticket.smtp`` logger and one ``mailticket_mail_rejected`` count with a
short reason, so an admin sees both what happened and how often.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections import Counter
from collections.abc import Callable
from typing import Any, AnyStr

from aiosmtpd.lmtp import LMTP

from mailticket import log
from mailticket.intake.smtp_fast import FastSMTP
from mailticket.metrics import Metrics

# Defaults for the connection caps (ListenerConfig carries the configured ones).
MAX_CONNECTIONS = 100
MAX_CONNECTIONS_PER_IP = 10
# A session has this much wall-clock time and this many commands in all (an
# MTA reusing one connection for a hundred messages needs about 500), then 421.
MAX_SESSION_SECONDS = 1800.0
MAX_COMMANDS_PER_SESSION = 5000
# Commands that move no transaction forward (RSET, NOOP, HELP, EHLO …) restart
# the idle timer only this many times after each step of progress; enough for
# EHLO, STARTTLS, EHLO, AUTH and an MTA's RSET probe before reusing a connection.
FREE_IDLE_RESETS = 5

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

# Reply prefix → the ``reason`` label of mailticket_mail_rejected; first match wins.
REFUSAL_REASONS: tuple[tuple[str, str], ...] = (
    ("550 5.1.1", "550_recipient"),
    ("452 4.5.3", "452_too_many_recipients"),
    ("552 ", "552_too_large"),
    ("500 Line too long", "500_line_too_long"),
    ("451 ", "451_tempfail"),
    (REPLY_TOO_MANY_CONNECTIONS, "421_too_many_connections"),
    (REPLY_TOO_MANY_COMMANDS, "421_too_many_commands"),
    (REPLY_SESSION_TOO_LONG, "421_session_too_long"),
    ("421 ", "421_command_limit"),
    ("530 ", "530_auth_required"),
    ("535 ", "535_auth_failed"),
    ("554 ", "554_refused"),
)

_log = log.get("smtp")


def refusal_reason(reply: str) -> str:
    """The metrics label for a 4xx/5xx reply (``<code>_protocol`` for command errors)."""
    for prefix, reason in REFUSAL_REASONS:
        if reply.startswith(prefix):
            return reason
    return f"{reply[:3]}_protocol"


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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: tuple[str, ...]) -> tuple[Network, ...]:
    """``("127.0.0.0/8", "::1")`` → networks (a bare address is a one-address network)."""
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


def is_trusted(ip: str, networks: tuple[Network, ...]) -> bool:
    """Whether peer ``ip`` lies in one of ``networks``; a Unix-socket peer is local, so trusted."""
    if ip == "local":
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


class ConnectionLimiter:
    """Counts open sessions in total and per peer IP; used from the event loop thread only.

    The per-IP cap is for strangers: a trusted peer (our own MTA, which opens
    up to its LMTP concurrency, Postfix's 20, from one address while it
    flushes a backlog) is never held to it, or it would be told 421 and wait
    out its retry backoff. The total cap applies to everybody. ``reserve``
    slots of it are kept for trusted peers: a stranger is refused once
    ``max_total - reserve`` sessions are open, a trusted peer only at
    ``max_total``. Without trusted networks there is nobody to keep them for.
    """

    def __init__(
        self,
        max_total: int,
        max_per_ip: int,
        *,
        trusted: tuple[Network, ...] = (),
        reserve: int = 0,
    ) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.trusted = trusted
        # Strangers always keep at least one slot: a reserve is not a shutdown.
        self.reserve = max(0, min(reserve, max_total - 1)) if trusted else 0
        self._per_ip: Counter[str] = Counter()

    @property
    def total(self) -> int:
        """How many sessions are open now."""
        return sum(self._per_ip.values())

    def acquire(self, ip: str) -> str | None:
        """Take a slot for ``ip``; returns None, or the reason it was refused."""
        trusted = is_trusted(ip, self.trusted)
        extra = self.reserve if trusted else 0
        if self.total >= self.max_total - self.reserve + extra:
            return "too many connections in total"
        if not trusted and self._per_ip[ip] >= self.max_per_ip:
            return "too many connections from this IP"
        self._per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        """Give back the slot taken by :meth:`acquire`."""
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]


class LimitedSMTP(FastSMTP):
    """aiosmtpd's SMTP with connection, command and session-time caps, logging every refusal."""

    def __init__(
        self,
        handler: Any,
        *,
        limiter: ConnectionLimiter,
        max_session_seconds: float = MAX_SESSION_SECONDS,
        max_commands: int = MAX_COMMANDS_PER_SESSION,
        metrics: Metrics | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._limiter = limiter
        self._metrics = metrics
        self._slot_ip: str | None = None
        self._refused = False
        self._max_session_seconds = max_session_seconds
        self._max_commands = max_commands
        self._commands = 0
        self._session_timer: asyncio.TimerHandle | None = None
        # The idle timer: how far a transaction got since the last delivered
        # message (MAIL = 1, +1 per accepted recipient), and how many restarts
        # by other commands are left before the next step of progress.
        self._furthest = 0
        self._free_resets = FREE_IDLE_RESETS
        self._last_reply = ""
        # Every command aiosmtpd dispatches goes through this table, so counting
        # here sees each one exactly once (the unknown ones have their own cap).
        self._smtp_methods = {
            name: self._counted(name, method) for name, method in self._smtp_methods.items()
        }

    def _counted(
        self, name: str, method: Callable[[str | None], Any]
    ) -> Callable[[str | None], Any]:
        @functools.wraps(method)
        async def run(arg: str | None) -> None:
            self._commands += 1
            if self._commands > self._max_commands:
                await self.push(REPLY_TOO_MANY_COMMANDS)
                if self.transport is not None:
                    self.transport.close()
                return
            data = name == "DATA" and self.envelope is not None and bool(self.envelope.rcpt_tos)
            if data:
                # The body gets the whole timeout, however long the client dawdled before.
                self._restart_idle()
            elif self._free_resets > 0:
                self._free_resets -= 1
                self._restart_idle()
            await method(arg)
            if data and self._last_reply[:1] == "2":
                # A message delivered: the next transaction starts from nothing.
                self._furthest = 0
                self._progress()
            elif name in ("MAIL", "RCPT") and self._last_reply[:1] == "2":
                reached = self._position()
                if reached > self._furthest:
                    self._furthest = reached
                    self._progress()

        return run

    def _position(self) -> int:
        """How far the open transaction is: 0 none, 1 after MAIL, +1 per recipient."""
        envelope = self.envelope
        if envelope is None or envelope.mail_from is None:
            return 0
        return 1 + len(envelope.rcpt_tos)

    def _progress(self) -> None:
        """A step of progress: the idle timer starts again and the free restarts refill."""
        self._free_resets = FREE_IDLE_RESETS
        self._restart_idle()

    def _restart_idle(self) -> None:
        super()._reset_timeout()

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd calls this at connect and before every command; only the first arms it.

        Which commands restart the timer is decided in :meth:`_counted`.
        """
        if self._timeout_handle is None or duration is not None:
            super()._reset_timeout(duration)

    def _refusal(self, peer: Any, reply: str, reason: str | None = None) -> None:
        """Log one refusal line and count it."""
        code, _, text = reply.partition(" ")
        _log.info(
            "smtp refusal",
            extra={"peer": format_peer(peer), "code": code, "reason": reason or text},
        )
        if self._metrics is not None:
            self._metrics.observe_rejected(refusal_reason(reply))

    def _session_expired(self) -> None:
        """The wall-clock budget is spent: say 421 and close, whatever the client is doing."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        peer = self.session.peer if self.session is not None else None
        self._refusal(peer, REPLY_SESSION_TOO_LONG)
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
                self._refusal(peer, REPLY_TOO_MANY_CONNECTIONS, reason)
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
        """Send a reply; log and count it first when it refuses something (4xx/5xx)."""
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        self._last_reply = text
        if text[:1] in ("4", "5") and self.session is not None:
            # LMTP replies to DATA are several lines sharing one outcome: count the first.
            self._refusal(self.session.peer, text.split("\r\n", 1)[0])
        await super().push(status)


class LimitedLMTP(LimitedSMTP, LMTP):
    """The LMTP variant (LHLO instead of HELO/EHLO) with the same caps and logging."""
