"""IMAP connections for the poller: TLS modes, login, and every fault named by kind.

The poller (``transport.imap``) must never die of a server problem, and an
admin must be able to tell a wrong password from a dead server at a glance.
So everything imapclient, ssl and the socket layer can raise is translated
here into one :class:`ImapFault` whose ``kind`` (``login_failed``,
``tls_failed``, ``connect_failed``, ``connection_lost``, ``folder_missing``,
``server_refused``, ``store_failed``, ``bug`` …) is the ``fault`` field of the
log line, the outcome in ``mailticket status`` and a metrics label.

A password never travels in clear text to another host: ``tls = "none"`` is
refused for anything but a loopback address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from mailticket.config import ImapAccountConfig
from mailticket.errors import MailticketError, StoreError


class ImapFault(MailticketError):
    """One IMAP account cannot be served right now; ``kind`` is the log's ``fault`` field."""

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind
        self.text = " ".join(text.split())
        super().__init__(f"{kind}: {self.text}")


def _plain_allowed(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _password(account: ImapAccountConfig) -> str:
    if account.password is not None:
        return account.password
    if account.password_file is not None:
        try:
            return account.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ImapFault("no_password", f"cannot read password_file: {exc}") from exc
    raise ImapFault("no_password", "neither password nor password_file is set")


def connect(account: ImapAccountConfig, timeout: float = 60.0) -> IMAPClient:
    """Open a connection in the account's TLS mode and log in; faults raise :class:`ImapFault`."""
    # An unknown mode must never fall through to an unencrypted login.
    if account.tls not in ("implicit", "starttls", "none"):
        raise ImapFault(
            "bad_config", f"tls must be implicit, starttls or none, not {account.tls!r}"
        )
    if account.tls == "none" and not _plain_allowed(account.host):
        raise ImapFault(
            "plaintext_refused",
            f"tls = none is only allowed to 127.0.0.1/localhost, not {account.host!r}",
        )
    password = _password(account)
    context = None
    if account.tls != "none":
        cafile = str(account.ca_file) if account.ca_file else None
        context = ssl.create_default_context(cafile=cafile)
    where = f"{account.host}:{account.port}"
    try:
        client = IMAPClient(
            account.host,
            port=account.port,
            ssl=account.tls == "implicit",
            ssl_context=context,
            timeout=timeout,
        )
    except ssl.SSLError as exc:
        raise ImapFault("tls_failed", f"TLS handshake with {where} failed: {exc}") from exc
    except OSError as exc:
        raise ImapFault("connect_failed", f"cannot connect to {where}: {exc}") from exc
    try:
        if account.tls == "starttls":
            client.starttls(context)
        client.login(account.user, password)
    except LoginError as exc:
        shutdown(client)
        raise ImapFault("login_failed", f"login as {account.user!r} refused: {exc}") from exc
    except (ssl.SSLError, IMAPClientError) as exc:
        shutdown(client)
        kind = "tls_failed" if account.tls == "starttls" else "connection_lost"
        raise ImapFault(kind, f"STARTTLS/login with {where} failed: {exc}") from exc
    except OSError as exc:
        shutdown(client)
        raise ImapFault("connection_lost", f"{where} closed the connection: {exc}") from exc
    return client


def check_login(account: ImapAccountConfig, timeout: float = 15.0) -> str | None:
    """Try to log in and open the watched folder: None when fine, else the error text."""
    try:
        client = connect(account, timeout)
    except ImapFault as exc:
        return str(exc)
    try:
        client.select_folder(account.folder, readonly=True)
    except (IMAPClientError, OSError) as exc:
        return str(ImapFault("folder_missing", f"cannot open folder {account.folder!r}: {exc}"))
    finally:
        quietly_logout(client)
    return None


def quietly_logout(client: IMAPClient) -> None:
    """LOGOUT, or just close the socket when the connection is already broken."""
    try:
        client.logout()
    except Exception:
        # The connection is going away either way; a dead socket is not worth a log line.
        shutdown(client)


def shutdown(client: IMAPClient) -> None:
    """Close the socket without a word to the server."""
    # Closing an already broken socket can fail; there is nothing left to do then.
    with contextlib.suppress(Exception):
        client.shutdown()


def classify(exc: Exception) -> ImapFault:
    """Map a library error met after login to a fault kind (translated at the edge)."""
    if isinstance(exc, ImapFault):
        return exc
    if isinstance(exc, StoreError):
        return ImapFault("store_failed", str(exc))
    if isinstance(exc, IMAPClientAbortError | OSError | EOFError):
        return ImapFault("connection_lost", f"connection lost: {exc or type(exc).__name__}")
    if isinstance(exc, IMAPClientError):
        return ImapFault("server_refused", f"server refused a command: {exc}")
    return ImapFault("bug", f"{type(exc).__name__}: {exc}")
