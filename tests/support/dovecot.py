"""A throwaway Dovecot IMAP server for integration tests: real server, own config, free ports.

The IMAP poller must be tested against a real server (IDLE timing, MOVE,
UIDVALIDITY and restarts are exactly what a fake would get wrong). Each
instance writes a complete ``dovecot.conf`` into a fresh ``tempfile.mkdtemp()``
directory (not pytest's ``tmp_path``: as root, Dovecot's unprivileged users
must be able to traverse it), listens on 127.0.0.1 only, runs in the
foreground as our child, and never reads or touches the system configuration::

    with DovecotServer(users={"alice": "secret"}) as srv:
        srv.append("alice", "INBOX", raw_bytes)
        srv.uids("alice", "INBOX")      # -> [1]
        srv.restart()                   # same ports, same mail

Plain IMAP on ``srv.port``, implicit TLS on ``srv.imaps_port``, STARTTLS on
``srv.port``; ``srv.cafile`` is the self-signed certificate (SAN localhost and
127.0.0.1) to trust. A missing ``dovecot`` binary is an error naming the
install step, never a skip.

Pitfall: after one failed login Dovecot's anvil delays the *next* login from
127.0.0.1 by 4 s (``auth_failure_delay = 0`` does not remove that), so a
wrong-password test needs its own instance.
"""

from __future__ import annotations

import datetime
import grp
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from imapclient import IMAPClient

INSTALL_HINT = "bash scripts/install-test-deps.sh"


class DovecotMissing(RuntimeError):
    """Dovecot is not installed; the message says how to install it."""


def dovecot_binary() -> str:
    """Path of the ``dovecot`` binary, or raise :class:`DovecotMissing` naming the install step."""
    found = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None
    )
    if found is None:
        raise DovecotMissing(
            "dovecot is not installed; the IMAP integration tests need a real Dovecot. "
            f"Install it with: {INSTALL_HINT}"
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_self_signed(certfile: Path, keyfile: Path, cn: str = "localhost") -> None:
    """Write a self-signed certificate (SAN localhost and 127.0.0.1) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName(cn), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    keyfile.chmod(0o600)
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


CONF_TEMPLATE = """\
# Generated for one test run; nothing here is read from /etc/dovecot.
instance_name = {instance}
base_dir = {root}/run
state_dir = {root}/state
protocols = imap
listen = 127.0.0.1
log_path = /dev/stderr
info_log_path = /dev/stderr
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {mail_uid}
last_valid_uid = 0
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_min_protocol = TLSv1.2
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
{extra}
"""


class DovecotServer:
    """One Dovecot instance with plain IMAP and IMAPS on free ports; a context manager."""

    def __init__(self, users: dict[str, str] | None = None, extra_conf: str = "") -> None:
        self.binary = dovecot_binary()
        self.users = users or {"alice": "secret"}
        self.extra_conf = extra_conf
        self.root = Path(tempfile.mkdtemp(prefix="mt-dovecot-"))
        self.host = "127.0.0.1"
        self.port = free_port()
        self.imaps_port = free_port()
        self.cafile = self.root / "cert.pem"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        root = self.root
        for sub in ("run", "state", "home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # Dovecot refuses uid 0 for mail access: mail belongs to the 'dovecot' user.
            mail = pwd.getpwnam("dovecot")
            internal_user = internal_group = "dovecot"
            login_user = "dovenull"
            root.chmod(0o755)
            os.chown(root / "home", mail.pw_uid, mail.pw_gid)
        else:
            mail = pwd.getpwuid(os.getuid())
            internal_user = login_user = mail.pw_name
            internal_group = grp.getgrgid(mail.pw_gid).gr_name
        make_self_signed(self.cafile, root / "key.pem")
        (root / "passwd").write_text(
            "".join(f"{user}:{{PLAIN}}{pw}::::::\n" for user, pw in self.users.items())
        )
        (root / "dovecot.conf").write_text(
            CONF_TEMPLATE.format(
                instance=f"mt-test-{self.port}",
                root=root,
                internal_user=internal_user,
                internal_group=internal_group,
                login_user=login_user,
                mail_uid=mail.pw_uid,
                mail_gid=mail.pw_gid,
                port=self.port,
                imaps_port=self.imaps_port,
                extra=self.extra_conf,
            )
        )

    def start(self, timeout: float = 10.0) -> DovecotServer:
        """Run Dovecot in the foreground and wait until both listeners answer."""
        log = (self.root / "dovecot.log").open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not (_greets(self.host, self.port) and _accepts(self.host, self.imaps_port)):
            if self._proc.poll() is not None:
                raise RuntimeError(f"dovecot exited at start:\n{self.read_log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dovecot did not listen within {timeout} s:\n{self.read_log()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop Dovecot and every child (open IMAP sessions are cut); keep the mail."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGKILL to the whole process group: the master's graceful SIGTERM path waits
        # about a second, and a throwaway instance has nothing to flush.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def restart(self) -> None:
        """Stop and start again on the same ports with the same mail (a server restart)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the instance directory (set KEEP_DOVECOT_DIR=1 to keep it)."""
        self.stop()
        if not os.environ.get("KEEP_DOVECOT_DIR"):
            shutil.rmtree(self.root, ignore_errors=True)

    def read_log(self) -> str:
        """Dovecot's own log, for failure messages."""
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- helpers that act as "another mail client" ------------------------------

    def client(self, user: str = "alice") -> IMAPClient:
        """A logged-in plain IMAP connection as ``user`` (the caller logs out)."""
        conn = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        conn.login(user, self.users[user])
        return conn

    def append(
        self, user: str, folder: str, raw: bytes | list[bytes], flags: tuple[bytes, ...] = ()
    ) -> None:
        """APPEND one message (or several) to ``folder``, creating the folder if needed."""
        conn = self.client(user)
        try:
            if not conn.folder_exists(folder):
                conn.create_folder(folder)
            if isinstance(raw, bytes):
                conn.append(folder, raw, flags=flags)
            else:
                # One MULTIAPPEND instead of a round trip (and an fsync) per message.
                conn.multiappend(folder, [{"msg": one, "flags": flags} for one in raw])
        finally:
            conn.logout()

    def uids(self, user: str, folder: str) -> list[int]:
        """UIDs of the undeleted messages in ``folder`` ([] when the folder does not exist)."""
        conn = self.client(user)
        try:
            if not conn.folder_exists(folder):
                return []
            conn.select_folder(folder, readonly=True)
            return sorted(int(uid) for uid in conn.search(["UNDELETED"]))
        finally:
            conn.logout()

    def uidvalidity(self, user: str, folder: str) -> int:
        """The folder's current UIDVALIDITY."""
        conn = self.client(user)
        try:
            return int(conn.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])
        finally:
            conn.logout()

    def flags(self, user: str, folder: str) -> dict[int, tuple[bytes, ...]]:
        """Flags of every message in ``folder`` keyed by UID."""
        conn = self.client(user)
        try:
            conn.select_folder(folder, readonly=True)
            return {int(uid): tuple(fl) for uid, fl in conn.get_flags(conn.search()).items()}
        finally:
            conn.logout()

    def recreate_folder(self, user: str, folder: str) -> None:
        """Delete ``folder`` and create it again empty: the server gives it a new UIDVALIDITY."""
        conn = self.client(user)
        try:
            if conn.folder_exists(folder):
                conn.delete_folder(folder)
            conn.create_folder(folder)
        finally:
            conn.logout()


def _greets(host: str, port: int) -> bool:
    """True once imap-login answers ``* OK`` (the auth process is up too)."""
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.settimeout(1)
            ok = sock.recv(512).startswith(b"* OK")
            sock.sendall(b"a LOGOUT\r\n")
            return ok
    except OSError:
        return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
