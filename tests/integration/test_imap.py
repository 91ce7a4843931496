"""The IMAP poller against a real Dovecot: exactly-once spooling, IDLE, faults, TLS, backlog.

Nothing is mocked: a throwaway Dovecot (tests/support/dovecot.py) serves the
mailbox and a fresh SQLite database holds the spool. Each test works in its
own folders of one module-scoped server. Tests that make a login fail get an
instance of their own, because Dovecot then delays the next login from
127.0.0.1 by 4 s. Measured figures (IDLE latency, backlog msgs/s) are printed
(run with ``-s``) and recorded as junit properties.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support.dovecot import DovecotServer
from support.metrics import scrape_metrics

from mailticket.cli.status import collect_status, format_status
from mailticket.config import ImapAccountConfig
from mailticket.intake.imap import (
    ImapPoller,
    PollerThread,
    check_login,
    return_path,
    start_pollers,
)
from mailticket.metrics import Metrics, start_metrics_server
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import SpoolItem

USER, PASSWORD = "alice", "secret"
SUPPORT = "support@example.net"
RecordProperty = Callable[[str, object], None]
Factory = sessionmaker[Session]


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with DovecotServer(users={USER: PASSWORD}) as srv:
        yield srv


@pytest.fixture
def factory(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    """A session factory on a fresh migrated SQLite database (the default backend)."""
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def folder(request: pytest.FixtureRequest) -> str:
    """A folder name of this test's own, so tests sharing the server never see each other."""
    name = request.node.name.removeprefix("test_")
    return "t-" + "".join(ch if ch.isalnum() else "-" for ch in name)[:60]


def account(srv: DovecotServer, folder: str, **changes: object) -> ImapAccountConfig:
    base = ImapAccountConfig(
        name="support",
        host="127.0.0.1",
        user=USER,
        address=SUPPORT,
        port=srv.port,
        tls="none",
        password=PASSWORD,
        folder=folder,
        processed_folder=f"{folder}-done",
        oversize_folder=f"{folder}-big",
        poll_interval=0.2,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def message(n: int, body: str = "Здравствуйте, принтер не печатает.") -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["Return-Path"] = f"<customer{n}@example.org>"
    msg["From"] = f"Customer {n} <customer{n}@example.org>"
    msg["To"] = SUPPORT
    msg["Subject"] = f"Request {n}"
    msg["Message-ID"] = f"<req-{n}-{time.monotonic_ns()}@example.org>"
    msg.set_content(body)
    return msg.as_bytes()


def rows(factory: sessionmaker[Session]) -> list[SpoolItem]:
    with factory() as session:
        return list(session.scalars(select(SpoolItem).order_by(SpoolItem.id)))


def imap_records(caplog: pytest.LogCaptureFixture, **fields: object) -> list[logging.LogRecord]:
    """Records of the mailticket.imap logger whose extra fields match ``fields``."""
    return [
        r
        for r in caplog.records
        if r.name == "mailticket.imap"
        and all(getattr(r, key, None) == value for key, value in fields.items())
    ]


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.01) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


@pytest.fixture(autouse=True)
def _imap_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailticket.imap")


def test_return_path_parsing() -> None:
    assert return_path(b"Return-Path: <a@b.example>\r\nSubject: x\r\n\r\nbody") == "a@b.example"
    assert return_path(b"return-path: <>\r\n\r\n") == ""
    assert return_path(b"Subject: x\r\n\r\nReturn-Path: <in@body.example>\r\n") == ""
    assert return_path(b"Return-Path: <a@b.example\x00\x07>\n\n") == "a@b.example"


def test_new_mail_is_spooled_then_moved(
    dovecot: DovecotServer, folder: str, factory: Factory
) -> None:
    raw = message(1)
    dovecot.append(USER, folder, raw)
    poller = ImapPoller(account(dovecot, folder), factory)
    try:
        assert poller.poll_once() == 1
        assert poller.poll_once() == 0
    finally:
        poller.close()
    uidvalidity = dovecot.uidvalidity(USER, folder)
    [row] = rows(factory)
    assert row.idempotency_key == f"imap:support:{uidvalidity}:1"
    assert row.source == "imap:support"
    assert row.mail_from == "customer1@example.org"
    assert row.rcpt_tos == [SUPPORT]
    assert row.raw == raw
    assert row.size == len(raw)
    assert row.state == "queued"
    assert dovecot.uids(USER, folder) == []
    assert dovecot.uids(USER, f"{folder}-done") == [1]
    assert poller.last_error is None
    assert poller.last_poll_at is not None


def test_seen_mode_without_processed_folder(
    dovecot: DovecotServer, folder: str, factory: Factory
) -> None:
    dovecot.append(USER, folder, [message(1), message(2)])
    poller = ImapPoller(account(dovecot, folder, processed_folder=None), factory)
    try:
        assert poller.poll_once() == 2
        assert poller.poll_once() == 0
    finally:
        poller.close()
    assert len(rows(factory)) == 2
    assert dovecot.uids(USER, folder) == [1, 2]
    assert all(b"\\Seen" in flags for flags in dovecot.flags(USER, folder).values())
    assert dovecot.uids(USER, f"{folder}-done") == []


def test_idle_wakes_within_two_seconds(
    dovecot: DovecotServer, folder: str, factory: Factory, record_property: RecordProperty,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailticket.imap")
    dovecot.append(USER, folder, message(0))
    stop = threading.Event()
    [thread] = start_pollers([account(dovecot, folder)], factory, stop)
    try:
        poller = thread.poller  # type: ignore[attr-defined]
        wait_until(lambda: poller.last_poll_at is not None, 5)
        # The poller has drained the backlog and sits in IDLE.
        wait_until(lambda: imap_records(caplog, msg="imap idle"), 5)
        dovecot.append(USER, folder, message(1))
        latency = wait_until(lambda: len(rows(factory)) == 2, 2.0)
        wait_until(lambda: dovecot.uids(USER, folder) == [], 2.0)
    finally:
        stop.set()
        stopped_in = time.monotonic()
        thread.join(5)
        stopped_in = time.monotonic() - stopped_in
    print(f"\nIDLE wake-up latency (APPEND -> spool row committed): {latency * 1000:.0f} ms")
    record_property("idle_latency_ms", round(latency * 1000))
    assert latency < 2.0
    assert not thread.is_alive()
    assert stopped_in < 1.5
    assert dovecot.uids(USER, f"{folder}-done") == [1, 2]


def test_idle_is_reissued_without_losing_mail(
    dovecot: DovecotServer, folder: str, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailticket.imap")
    dovecot.append(USER, folder, message(0))
    stop = threading.Event()
    poller = ImapPoller(account(dovecot, folder), factory, idle_reissue_seconds=0.3)
    thread = PollerThread(poller, stop)
    thread.start()
    try:
        wait_until(lambda: len(imap_records(caplog, msg="imap idle")) >= 4, 3)
        dovecot.append(USER, folder, message(1))
        wait_until(lambda: len(rows(factory)) == 2, 2)
    finally:
        stop.set()
        thread.join(3)
    assert not thread.is_alive()
    assert imap_records(caplog, fault="connection_lost") == []
    assert len(imap_records(caplog, msg="imap connected")) == 1


def test_restart_during_idle_reconnects(
    dovecot: DovecotServer, folder: str, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailticket.imap")
    dovecot.append(USER, folder, message(0))
    stop = threading.Event()
    [thread] = start_pollers([account(dovecot, folder)], factory, stop)
    try:
        poller = thread.poller  # type: ignore[attr-defined]
        wait_until(lambda: imap_records(caplog, msg="imap idle"), 5)
        dovecot.restart()
        # This mail exists only on the restarted server: the poller must reconnect for it.
        dovecot.append(USER, folder, message(1))
        recovered = wait_until(lambda: len(rows(factory)) == 2, 8)
        wait_until(lambda: dovecot.uids(USER, folder) == [], 2)
    finally:
        stop.set()
        thread.join(5)
    print(f"\nrestart during IDLE: new mail spooled {recovered:.2f} s after the restart")
    assert not thread.is_alive()
    [lost] = imap_records(caplog, fault="connection_lost")
    assert lost.levelno == logging.ERROR
    assert lost.account == "support"  # type: ignore[attr-defined]
    assert lost.retry_in == 1.0  # type: ignore[attr-defined]
    assert len(imap_records(caplog, msg="imap connected")) == 2
    assert poller.last_error is None


def test_crash_between_commit_and_move(
    dovecot: DovecotServer, folder: str, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    dovecot.append(USER, folder, message(1))
    first = ImapPoller(account(dovecot, folder), factory)
    uidvalidity = first.select_folder()
    fetched = first.fetch(first.search_pending())
    assert first.spool(uidvalidity, fetched) == 1
    # The process dies here: committed, but the message was never moved.
    first.close()
    assert dovecot.uids(USER, folder) == [1]

    second = ImapPoller(account(dovecot, folder), factory)
    try:
        assert second.poll_once() == 0
    finally:
        second.close()
    [row] = rows(factory)
    assert row.idempotency_key == f"imap:support:{uidvalidity}:1"
    assert dovecot.uids(USER, folder) == []
    assert dovecot.uids(USER, f"{folder}-done") == [1]
    assert len(imap_records(caplog, msg="imap message already spooled", uid=1)) == 1


def test_crash_between_fetch_and_commit(
    dovecot: DovecotServer, folder: str, factory: Factory
) -> None:
    raw = message(1)
    dovecot.append(USER, folder, raw)
    first = ImapPoller(account(dovecot, folder), factory)
    first.select_folder()
    assert [f.raw for f in first.fetch(first.search_pending())] == [raw]
    # The process dies here: fetched (with PEEK, so still unseen) but nothing committed.
    first.close()
    assert rows(factory) == []

    second = ImapPoller(account(dovecot, folder), factory)
    try:
        assert second.poll_once() == 1
    finally:
        second.close()
    [row] = rows(factory)
    assert row.raw == raw
    assert dovecot.uids(USER, f"{folder}-done") == [1]


def test_uidvalidity_change_is_logged_and_keys_stay_unique(
    dovecot: DovecotServer, folder: str, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    raw = message(1)
    dovecot.append(USER, folder, raw)
    poller = ImapPoller(account(dovecot, folder, processed_folder=None), factory)
    try:
        assert poller.poll_once() == 1
        old = poller.uidvalidity
        # The folder is recreated (a restore, an index rebuild) with the same mail in it,
        # while the poller's connection still has the old one selected.
        dovecot.recreate_folder(USER, folder)
        dovecot.append(USER, folder, raw)
        new = dovecot.uidvalidity(USER, folder)
        assert new != old
        assert poller.poll_once() == 1
        assert poller.poll_once() == 0
    finally:
        poller.close()
    [warning] = imap_records(caplog, old_uidvalidity=old, new_uidvalidity=new)
    assert warning.levelno == logging.WARNING
    keys = [row.idempotency_key for row in rows(factory)]
    assert keys == [f"imap:support:{old}:1", f"imap:support:{new}:1"]
    # Both rows carry the same Message-ID; the pipeline's Message-ID dedupe is what keeps
    # the second one from becoming a second ticket. The spool's job is only that one
    # (account, UIDVALIDITY, UID) never gives two rows.
    assert [row.raw for row in rows(factory)] == [raw, raw]


def test_wrong_password_logs_once_and_keeps_running(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    # Own instances: after a failed login Dovecot delays the next one from 127.0.0.1 by 4 s.
    with DovecotServer(users={USER: PASSWORD}) as srv:
        acct = account(srv, "INBOX", password="wrong")
        stop = threading.Event()
        [thread] = start_pollers([acct], factory, stop)
        try:
            wait_until(lambda: bool(imap_records(caplog, fault="login_failed")), 3)
        finally:
            stop.set()
            thread.join(3)
        assert not thread.is_alive()
    [failed] = imap_records(caplog, fault="login_failed")
    assert failed.levelno == logging.ERROR
    assert failed.account == "support"  # type: ignore[attr-defined]
    assert "login as 'alice' refused" in failed.error  # type: ignore[attr-defined]
    assert "AUTHENTICATIONFAILED" in failed.error  # type: ignore[attr-defined]
    assert failed.retry_in == 1.0  # type: ignore[attr-defined]
    assert thread.poller.last_error.startswith("login_failed: ")  # type: ignore[attr-defined]
    with DovecotServer(users={USER: PASSWORD}) as srv:
        error = check_login(account(srv, "INBOX", password="wrong"))
    assert error is not None and error.startswith("login_failed: login as 'alice' refused")


def test_password_file_and_check_login(dovecot: DovecotServer, tmp_path: Path) -> None:
    secret = tmp_path / "imap.pw"
    secret.write_text(f"{PASSWORD}\n")
    assert check_login(account(dovecot, "INBOX", password=None, password_file=secret)) is None


def test_implicit_tls_with_test_ca(dovecot: DovecotServer, folder: str, factory: Factory) -> None:
    acct = account(dovecot, folder, tls="implicit", port=dovecot.imaps_port, ca_file=dovecot.cafile)
    dovecot.append(USER, folder, message(1))
    assert check_login(acct) is None
    poller = ImapPoller(acct, factory)
    try:
        assert poller.poll_once() == 1
    finally:
        poller.close()


def test_starttls_with_test_ca(dovecot: DovecotServer, folder: str, factory: Factory) -> None:
    acct = account(dovecot, folder, tls="starttls", ca_file=dovecot.cafile)
    dovecot.append(USER, folder, message(1))
    assert check_login(acct) is None
    poller = ImapPoller(acct, factory)
    try:
        assert poller.poll_once() == 1
    finally:
        poller.close()


def test_tls_failure_without_the_ca(
    dovecot: DovecotServer, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    implicit = account(dovecot, "INBOX", tls="implicit", port=dovecot.imaps_port)
    error = check_login(implicit)
    assert error is not None and error.startswith("tls_failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in error
    starttls = account(dovecot, "INBOX", tls="starttls")
    error = check_login(starttls)
    assert error is not None and error.startswith("tls_failed: ")
    assert ImapPoller(implicit, factory).poll_once() == 0
    [record] = imap_records(caplog, fault="tls_failed")
    assert record.host == "127.0.0.1"  # type: ignore[attr-defined]


def test_plaintext_to_other_hosts_is_refused(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    remote = ImapAccountConfig(
        name="remote",
        host="192.0.2.10",
        user=USER,
        address=SUPPORT,
        port=143,
        tls="none",
        password=PASSWORD,
    )
    started = time.monotonic()
    error = check_login(remote)
    assert error == (
        "plaintext_refused: tls = none is only allowed to 127.0.0.1/localhost, not '192.0.2.10'"
    )
    assert ImapPoller(remote, factory).poll_once() == 0
    # Refused before any connection attempt (192.0.2.10 would just time out).
    assert time.monotonic() - started < 0.5
    [record] = imap_records(caplog, fault="plaintext_refused", account="remote")
    assert record.levelno == logging.ERROR
    typo = check_login(replace(remote, tls="ssl"))
    assert typo == "bad_config: tls must be implicit, starttls or none, not 'ssl'"


def test_server_down_is_a_connect_fault(factory: Factory, caplog: pytest.LogCaptureFixture) -> None:
    with DovecotServer(users={USER: PASSWORD}) as srv:
        acct = account(srv, "INBOX")
    error = check_login(acct)
    assert error is not None and error.startswith("connect_failed: cannot connect to 127.0.0.1:")
    assert ImapPoller(acct, factory).poll_once() == 0
    assert len(imap_records(caplog, fault="connect_failed")) == 1


def test_missing_folder_is_reported(
    dovecot: DovecotServer, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    acct = account(dovecot, "no-such-folder")
    error = check_login(acct)
    assert error is not None and error.startswith("folder_missing: cannot open folder")
    poller = ImapPoller(acct, factory)
    try:
        assert poller.poll_once() == 0
    finally:
        poller.close()
    [record] = imap_records(caplog, fault="folder_missing")
    assert "no-such-folder" in record.error  # type: ignore[attr-defined]


def test_folder_deleted_while_idle_is_reported_and_survived(
    dovecot: DovecotServer, folder: str, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    dovecot.append(USER, folder, message(0))
    stop = threading.Event()
    [thread] = start_pollers([account(dovecot, folder)], factory, stop)
    try:
        poller = thread.poller  # type: ignore[attr-defined]
        wait_until(lambda: poller.last_poll_at is not None, 5)
        conn = dovecot.client(USER)
        conn.delete_folder(folder)
        conn.logout()
        wait_until(lambda: bool(imap_records(caplog, fault="folder_missing")), 3)
        assert poller.last_error.startswith("folder_missing: cannot select folder")
        # An admin recreates the folder and mail arrives again: the poller carries on.
        dovecot.append(USER, folder, message(1))
        wait_until(lambda: len(rows(factory)) == 2, 6)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    [bye] = imap_records(caplog, fault="connection_lost")
    assert bye.error.startswith("server ended the session: ")  # type: ignore[attr-defined]
    [missing] = imap_records(caplog, fault="folder_missing")
    assert missing.retry_in == 2.0  # type: ignore[attr-defined]
    assert poller.last_error is None


def test_folder_recreated_while_idle_is_noticed_and_its_new_mail_fetched_at_once(
    dovecot: DovecotServer, folder: str, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 18.7: a folder deleted and recreated under the IDLE (new UIDVALIDITY) sent no
    # EXISTS, so its new mail waited for the 10-minute re-issue. Default intervals here.
    caplog.set_level(logging.DEBUG, logger="mailticket.imap")
    dovecot.append(USER, folder, message(0))
    stop = threading.Event()
    poller = ImapPoller(account(dovecot, folder), factory)
    thread = PollerThread(poller, stop)
    thread.start()
    try:
        wait_until(lambda: bool(imap_records(caplog, msg="imap idle")), 5)
        old = poller.uidvalidity
        dovecot.recreate_folder(USER, folder)
        dovecot.append(USER, folder, message(1))
        new = dovecot.uidvalidity(USER, folder)
        taken = wait_until(lambda: len(rows(factory)) == 2, 5)
        wait_until(lambda: dovecot.uids(USER, folder) == [], 2)
    finally:
        stop.set()
        thread.join(5)
    print(f"\nfolder recreated during IDLE: new mail spooled {taken:.2f} s later")
    assert not thread.is_alive()
    assert new != old
    [complaint] = imap_records(caplog, msg="imap server complained while idling; "
                                           "selecting the folder again")
    assert complaint.levelno == logging.WARNING
    [change] = imap_records(caplog, old_uidvalidity=old, new_uidvalidity=new)
    assert change.levelno == logging.WARNING
    assert [row.idempotency_key for row in rows(factory)] == [
        f"imap:support:{old}:1", f"imap:support:{new}:1"]
    assert poller.last_error is None


def test_a_missing_folder_is_tried_again_every_reissue_interval_not_after_minutes(
    dovecot: DovecotServer, folder: str, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 18.7: a folder that stays missing for a while used to be retried with the
    # connection backoff (1, 2, 4 … 300 s), so an admin's recreated folder waited up to
    # 5 minutes. It is retried at least every IDLE re-issue interval (a minute; 0.5 s here).
    dovecot.append(USER, folder, message(0))
    stop = threading.Event()
    poller = ImapPoller(account(dovecot, folder), factory, idle_reissue_seconds=0.5)
    thread = PollerThread(poller, stop)
    thread.start()
    try:
        wait_until(lambda: len(rows(factory)) == 1, 5)
        conn = dovecot.client(USER)
        conn.delete_folder(folder)
        conn.logout()
        # The BYE is retried after 1 s, then each refusal after 0.5 s: four refusals
        # in about 2.5 s (they waited 2, 4, 8 s before: 15 s).
        wait_until(lambda: len(imap_records(caplog, fault="folder_missing")) >= 4, 4.5)
        dovecot.append(USER, folder, message(1))
        taken = wait_until(lambda: len(rows(factory)) == 2, 2)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    delays = [r.retry_in for r in imap_records(caplog, fault="folder_missing")]  # type: ignore[attr-defined]
    assert delays[:4] == [0.5] * 4
    print(f"\nmissing folder recreated: mail spooled {taken:.2f} s later")


def test_oversize_mail_is_recorded_and_left_for_an_admin(
    dovecot: DovecotServer, folder: str, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    small, big = message(1), message(2, body="x" * 60 + "\n" * 1 + ("y" * 70 + "\n") * 200)
    dovecot.append(USER, folder, [small, big])
    poller = ImapPoller(account(dovecot, folder, max_message_size=5000), factory)
    try:
        assert poller.poll_once() == 2
    finally:
        poller.close()
    first, second = rows(factory)
    assert (first.source, first.raw) == ("imap:support", small)
    assert second.source == "imap-oversize:support"
    header_end = big.index(b"\r\n\r\n") + 4
    assert second.raw == big[:header_end]
    assert second.size == len(big)
    assert second.mail_from == "customer2@example.org"
    assert dovecot.uids(USER, folder) == []
    assert dovecot.uids(USER, f"{folder}-done") == [1]
    assert dovecot.uids(USER, f"{folder}-big") == [1]
    [moved] = imap_records(caplog, msg="imap oversize message left for an admin")
    assert moved.folder == f"{folder}-big"  # type: ignore[attr-defined]


def test_move_and_idle_missing_fall_back_to_copy_expunge_and_polling(factory: Factory) -> None:
    # A server that offers neither MOVE nor IDLE (Dovecot told to advertise less).
    caps = "imap_capability = IMAP4rev1 LITERAL+ UIDPLUS"
    with DovecotServer(users={USER: PASSWORD}, extra_conf=caps) as srv:
        conn = srv.client(USER)
        assert not {b"MOVE", b"IDLE"} & set(conn.capabilities())
        conn.logout()
        srv.append(USER, "INBOX", message(1))
        stop = threading.Event()
        [thread] = start_pollers([account(srv, "INBOX")], factory, stop)
        try:
            wait_until(lambda: len(rows(factory)) == 1, 3)
            srv.append(USER, "INBOX", message(2))
            wait_until(lambda: len(rows(factory)) == 2, 3)
            wait_until(lambda: srv.uids(USER, "INBOX") == [], 2)
        finally:
            stop.set()
            thread.join(3)
        assert not thread.is_alive()
        assert srv.uids(USER, "INBOX-done") == [1, 2]
        # UID EXPUNGE removed them, not just flagged them \Deleted.
        assert srv.flags(USER, "INBOX") == {}


def test_backlog_of_200_is_drained_on_start(
    dovecot: DovecotServer, folder: str, db_url: str, record_property: RecordProperty
) -> None:
    # Run on both backends: SQLite (the default) and PostgreSQL (several instances).
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    backend = engine.dialect.name
    dovecot.append(USER, folder, [message(n) for n in range(200)])
    poller = ImapPoller(account(dovecot, folder, batch_size=50), factory)
    started = time.monotonic()
    try:
        assert poller.poll_once() == 200
    finally:
        poller.close()
    elapsed = time.monotonic() - started
    rate = 200 / elapsed
    print(
        f"\nbacklog ({backend}): 200 messages spooled and moved in {elapsed:.2f} s = {rate:.0f} msgs/s"
    )
    record_property(f"backlog_msgs_per_s_{backend}", round(rate))
    spooled = rows(factory)
    engine.dispose()
    assert len(spooled) == 200
    assert len({row.idempotency_key for row in spooled}) == 200
    assert dovecot.uids(USER, folder) == []
    assert dovecot.uids(USER, f"{folder}-done") == list(range(1, 201))


def test_last_poll_is_saved_for_status_and_counted_on_the_metrics_endpoint(
    dovecot: DovecotServer, folder: str, factory: Factory
) -> None:
    dovecot.append(USER, folder, [message(1), message(2), message(3, body="x" * 6000)])
    metrics = Metrics()
    now = [datetime(2026, 11, 20, 16, 5, tzinfo=UTC)]
    poller = ImapPoller(account(dovecot, folder, max_message_size=5000), factory,
                        clock=lambda: now[0], metrics=metrics)
    try:
        assert poller.poll_once() == 3
    finally:
        poller.close()
    [state] = collect_status(factory)["imap"]
    assert state == {"account": "support", "polled_at": "2026-11-20T16:05:00+00:00",
                     "outcome": "ok", "error": None, "fetched": 3, "spooled": 3,
                     "last_ok_at": "2026-11-20T16:05:00+00:00"}
    # The same account, its folder gone: the fault replaces the outcome, the last
    # good poll stays.
    now[0] = datetime(2026, 11, 20, 16, 10, tzinfo=UTC)
    broken = ImapPoller(account(dovecot, f"{folder}-gone"), factory,
                        clock=lambda: now[0], metrics=metrics)
    try:
        assert broken.poll_once() == 0
    finally:
        broken.close()
    status = collect_status(factory, imap_accounts=("support",))
    [state] = status["imap"]
    assert (state["polled_at"], state["outcome"], state["fetched"]) == (
        "2026-11-20T16:10:00+00:00", "folder_missing", 0)
    assert state["error"].startswith(f"cannot select folder '{folder}-gone':")
    assert state["last_ok_at"] == "2026-11-20T16:05:00+00:00"
    [line] = [x for x in format_status(status).splitlines() if x.startswith("  support: ")]
    assert line.startswith(
        "  support: 2026-11-20T16:10:00+00:00 folder_missing, 0 fetched, 0 new: cannot select "
    )
    assert line.endswith("; last ok 2026-11-20T16:05:00+00:00")
    server = start_metrics_server("127.0.0.1", 0, factory, metrics)
    try:
        lines = scrape_metrics(server.port)
    finally:
        server.close()
    assert 'mailticket_mail_received_total{source="imap"} 2.0' in lines
    assert 'mailticket_mail_received_total{source="imap-oversize"} 1.0' in lines
    assert 'mailticket_imap_polls_total{account="support",outcome="ok"} 1.0' in lines
    assert 'mailticket_imap_polls_total{account="support",outcome="folder_missing"} 1.0' in lines
    assert 'mailticket_queue_depth{queue="spool",state="queued"} 3.0' in lines
