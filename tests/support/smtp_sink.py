"""A recording SMTP sink: the fake relay that outbound tests talk to over a real socket.

It is a real aiosmtpd server on 127.0.0.1 and a free port. Tests steer it through
its own control methods, the way GNU Mailman's ``testing/mta.py`` does, never by
patching smtplib::

    with SmtpSink() as sink:
        sink.fail_next(451, "4.3.0 try later")          # next DATA gets 451
        sink.fail_next(550, "5.7.1 no", at="rcpt")        # next RCPT gets 550
        ...                                               # code under test sends
        got = sink.wait_for(1)                            # list[Received]

Recipients at ``@reject.invalid`` are always refused with 550 at RCPT. Optional
``tls="starttls"|"implicit"`` uses a throwaway self-signed certificate made with
the ``openssl`` CLI (``sink.cafile`` lets a client trust it), and ``auth=(user,
password)`` turns on AUTH PLAIN/LOGIN.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

REJECT_DOMAIN = "@reject.invalid"
REJECT_REPLY = "550 5.1.1 <{address}>: no such user"
ACCEPT_REPLY = "250 2.0.0 queued as {n}"

Stage = Literal["mail", "rcpt", "data"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_test_cert(directory: Path, cn: str = "localhost") -> tuple[Path, Path]:
    """Write a self-signed EC certificate for ``cn`` and 127.0.0.1; returns (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={cn}",
            "-addext",
            f"subjectAltName=DNS:{cn},IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass(frozen=True)
class Received:
    """One mail the sink accepted with 250, exactly as it came off the wire."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: tuple[str, int]
    tls: bool = False
    auth_user: str | None = None
    received_at: float = field(default_factory=time.time)

    @property
    def message(self) -> EmailMessage:
        """The data parsed with the modern email policy."""
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Recorder:
    """The aiosmtpd handler; all state is guarded by ``cond`` (hooks run on the sink thread)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.messages: list[Received] = []
        self.failures: dict[str, deque[str]] = {"mail": deque(), "rcpt": deque(), "data": deque()}
        self.on_data: Callable[[Received], None] | None = None
        self.hook_errors: list[BaseException] = []
        self.data_commands = 0

    def _injected(self, stage: str) -> str | None:
        with self.cond:
            queue = self.failures[stage]
            return queue.popleft() if queue else None

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        failure = self._injected("mail")
        if failure is not None:
            return failure
        # Having this hook means aiosmtpd leaves the envelope to us.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower().endswith(REJECT_DOMAIN):
            return REJECT_REPLY.format(address=address)
        failure = self._injected("rcpt")
        if failure is not None:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.cond:
            self.data_commands += 1
        failure = self._injected("data")
        if failure is not None:
            return failure
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        auth = session.auth_data
        transport = server.transport
        got = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=raw,
            peer=tuple(session.peer),  # type: ignore[arg-type]
            tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
            auth_user=auth.login.decode() if isinstance(auth, LoginPassword) else None,
        )
        hook = self.on_data
        if hook is not None:
            # The hook runs while the client waits for the final reply: tests use
            # it to act "between the relay's work and its 250".
            try:
                hook(got)
            except Exception as exc:
                with self.cond:
                    self.hook_errors.append(exc)
                return "451 4.3.0 sink hook failed"
        with self.cond:
            self.messages.append(got)
            n = len(self.messages)
            self.cond.notify_all()
        return ACCEPT_REPLY.format(n=n)


class SmtpSink:
    """A real SMTP server on loopback that records mail and fails on demand."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        tls: Literal["none", "starttls", "implicit"] = "none",
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.tls = tls
        self.auth = auth
        self.cafile: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._recorder = _Recorder()
        kwargs: dict[str, Any] = {}
        server_ctx: ssl.SSLContext | None = None
        if tls != "none":
            self._tmp = tempfile.TemporaryDirectory(prefix="smtp-sink-")
            cert, key = make_test_cert(Path(self._tmp.name))
            self.cafile = cert
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(cert, key)
        if tls == "starttls":
            kwargs.update(tls_context=server_ctx, require_starttls=True)
        if auth is not None:
            # aiosmtpd only knows about STARTTLS; with implicit TLS the whole
            # connection is encrypted, so AUTH must not wait for a STARTTLS.
            kwargs.update(authenticator=self._authenticate, auth_require_tls=tls == "starttls")
        self.controller = Controller(
            self._recorder,
            hostname=host,
            port=self.port,
            ssl_context=server_ctx if tls == "implicit" else None,
            server_hostname="localhost",
            **kwargs,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self.auth is not None
        ok = (
            isinstance(auth_data, LoginPassword)
            and (
                auth_data.login.decode(),
                auth_data.password.decode(),
            )
            == self.auth
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def client_context(self) -> ssl.SSLContext:
        """A verifying client TLS context that trusts this sink's certificate."""
        return ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)

    @property
    def messages(self) -> list[Received]:
        """A snapshot of every accepted mail, oldest first."""
        with self._recorder.cond:
            return list(self._recorder.messages)

    @property
    def data_commands(self) -> int:
        """How many DATA commands reached the sink, failed ones included."""
        with self._recorder.cond:
            return self._recorder.data_commands

    @property
    def hook_errors(self) -> list[BaseException]:
        """Exceptions raised by an ``on_data`` hook (each answered with 451)."""
        with self._recorder.cond:
            return list(self._recorder.hook_errors)

    def fail_next(self, code: int, text: str, count: int = 1, at: Stage = "data") -> None:
        """Answer the next ``count`` MAIL, RCPT or DATA commands with ``code text``."""
        if at not in self._recorder.failures:
            raise ValueError(f"cannot fail at {at!r}")
        with self._recorder.cond:
            self._recorder.failures[at].extend([f"{code} {text}"] * count)

    def on_data(self, hook: Callable[[Received], None] | None) -> None:
        """Run ``hook`` on each good DATA before the 250 is sent (None removes it)."""
        self._recorder.on_data = hook

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        """Block until at least ``n`` mails arrived; AssertionError after ``timeout``."""
        rec = self._recorder
        with rec.cond:
            if not rec.cond.wait_for(lambda: len(rec.messages) >= n, timeout):
                raise AssertionError(f"sink got {len(rec.messages)} messages, wanted {n}")
            return list(rec.messages)

    def clear(self) -> None:
        """Forget recorded mail, pending failures and the hook."""
        rec = self._recorder
        with rec.cond:
            rec.messages.clear()
            rec.hook_errors.clear()
            rec.data_commands = 0
            for queue in rec.failures.values():
                queue.clear()
            rec.on_data = None

    def start(self) -> SmtpSink:
        """Start listening; returns self."""
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop listening and remove the throwaway certificate."""
        self.controller.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
