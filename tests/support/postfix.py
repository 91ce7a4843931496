"""A throwaway Postfix 3.7 for the deployment test: own config, queue and maildirs, loopback ports.

The recipe is ../shared/INFRA.md's (infra/postfix_lmtp_demo.py): a main.cf and
master.cf of our own in a temp dir, chroot off, smtpd on a free loopback port,
every log line in ``maillog_file``. Nothing under /etc/postfix is read or
written, so a system Postfix (if any) is untouched. Local "customers" and
"engineers" get their mail from Postfix's ``virtual`` agent into Maildirs
under ``mail/``, owned by ``nobody`` (``virtual`` refuses to deliver as root).
Postfix is installed by ``scripts/install-test-deps.sh``.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
INSTALL_HINT = "bash scripts/install-test-deps.sh"
MAIL_UID = pwd.getpwnam("nobody").pw_uid
MAIL_GID = pwd.getpwnam("nobody").pw_gid

# Every service this instance needs, chroot off (a chroot would need copies of
# /etc files in the queue directory). Column 1 of ``smtp inet`` is filled in.
MASTER_CF = """\
{smtp_listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# What makes this a sandbox rather than a mail server; the deployment settings
# come from the guide (docs/deploy-postfix.md) and are appended after these.
SANDBOX_CF = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.provider.example
mydestination =
alias_maps =
alias_database =
smtpd_peername_lookup = no
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
virtual_mailbox_domains = {local_domains}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/conf/mailboxes
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
"""


class PostfixMissing(RuntimeError):
    """Postfix is not installed; the message says how to install it."""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostfixServer:
    """One sandboxed Postfix: ``start()``, ``send()``, ``maildir()``, ``queue()``, ``stop()``.

    :param settings: main.cf lines (the guide's, already adapted to this sandbox).
    :param tables: lookup tables to write into the config dir, name → text;
        ``hash:`` tables are compiled with ``postmap``.
    :param mailboxes: local addresses that get a Maildir (address → None).
    """

    def __init__(self, settings: str, tables: Mapping[str, str], mailboxes: Sequence[str]) -> None:
        """``@CONF@`` in ``settings`` stands for this instance's config dir (where tables go)."""
        if not os.access(POSTFIX, os.X_OK):
            raise PostfixMissing("postfix is not installed; the deployment test needs a real "
                                 f"Postfix 3.7. Install it with: {INSTALL_HINT}")
        if os.geteuid() != 0:
            # The master runs its daemons as mail_owner and virtual delivers as nobody.
            raise PostfixMissing("the Postfix deployment test must run as root (CI does)")
        self.root = Path(tempfile.mkdtemp(prefix="mt-postfix-"))
        self.root.chmod(0o755)  # the daemons run as 'postfix' and chdir here
        self.conf = self.root / "conf"
        self.conf.mkdir()
        (self.root / "queue").mkdir()  # root-owned; `postfix check` fills it in
        (self.root / "data").mkdir()
        shutil.chown(self.root / "data", "postfix", "postfix")
        mail = self.root / "mail"
        mail.mkdir()
        shutil.chown(mail, MAIL_UID, MAIL_GID)
        self.port = free_port()
        settings = settings.replace("@CONF@", str(self.conf))
        self.mailboxes = {address: self._mailbox_path(address) for address in mailboxes}
        (self.conf / "mailboxes").write_text(
            "".join(f"{a} {p}/\n" for a, p in self.mailboxes.items()))
        local_domains = sorted({a.rpartition("@")[2] for a in mailboxes})
        (self.conf / "master.cf").write_text(MASTER_CF.format(smtp_listen=f"127.0.0.1:{self.port}"))
        (self.conf / "main.cf").write_text(
            SANDBOX_CF.format(d=self.root, local_domains=" ".join(local_domains),
                              uid=MAIL_UID, gid=MAIL_GID) + settings)
        for name, text in tables.items():
            (self.conf / name).write_text(text)
        for line in settings.splitlines():
            for word in line.split():
                if word.startswith("hash:"):
                    self._run("postmap", "-c", str(self.conf), word)

    @staticmethod
    def _mailbox_path(address: str) -> str:
        local, _, domain = address.partition("@")
        return f"{domain}/{local}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if result.returncode:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): "
                                 f"{result.stderr}\n{self.read_log()[-2000:]}")
        return result

    def postfix(self, verb: str) -> None:
        self._run(POSTFIX, "-c", str(self.conf), verb)

    def start(self, timeout: float = 20.0) -> PostfixServer:
        # Postfix writes its errors only to maillog_file: read it on failure.
        self.postfix("check")
        self.postfix("start")
        deadline = time.monotonic() + timeout
        while True:
            try:
                smtplib.SMTP("127.0.0.1", self.port, timeout=1).quit()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"postfix did not answer:\n{self.read_log()}") from None
                time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        subprocess.run([POSTFIX, "-c", str(self.conf), "stop"], capture_output=True, timeout=30)
        # `postfix stop` returns before master exits; wait for its pid to go.
        pid_file = self.root / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().strip())
                Path(f"/proc/{pid}").stat()
            except (OSError, ValueError):
                break
            time.sleep(0.05)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostfixServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def send(self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> float:
        """Submit one mail over SMTP; the monotonic time Postfix said 250 to its DATA."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.sendmail(mail_from, list(rcpt_tos), raw)
            return time.monotonic()

    def maildir(self, address: str) -> list[Path]:
        """The delivered files of a local mailbox, oldest first."""
        new = self.root / "mail" / self.mailboxes[address] / "new"
        return sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns) if new.is_dir() else []

    def queue(self) -> list[dict[str, Any]]:
        """Postfix's queue as ``postqueue -j`` reports it (one dict per mail)."""
        out = self._run("postqueue", "-c", str(self.conf), "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def flush(self) -> None:
        """``postqueue -f``: deliver deferred mail now (and forget that a destination was dead)."""
        self._run("postqueue", "-c", str(self.conf), "-f")
