"""``check-config --connect`` (issue 15.5) against real servers: the relay, the database, IMAP.

It used to check IMAP only, so a relay on a closed port printed ``ok`` and
exit 0. Every server here is real: a closed port, the SMTP sink with STARTTLS
and AUTH, SQLite and PostgreSQL databases, Dovecot. The command runs as an
admin runs it (``main`` with the same arguments), reading a TOML file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from support import databases
from support.dovecot import DovecotServer
from support.smtp_sink import SmtpSink, free_port

from mailticket.cli.entry import main
from mailticket.store import migrate
from mailticket.store.db import make_engine

USER, PASSWORD = "alice", "secret"


def write_config(tmp: Path, *, db_url: str, relay: str = "", imap: str = "") -> Path:
    path = tmp / "mt.toml"
    path.write_text(f"""
[database]
url = "{db_url}"

[relay]
maildir = "{tmp / 'outgoing'}"
timeout = 5
{relay}

[mail]
support_addresses = ["support@provider.example"]
{imap}
""")
    return path


def run(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(["-c", str(config), "check-config", "--connect"])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with DovecotServer(users={USER: PASSWORD}) as srv:
        yield srv


def test_relay_on_a_closed_port_fails_with_exit_2(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    config = write_config(tmp_path, db_url=sqlite_url,
                          relay=f'host = "127.0.0.1"\nport = {port}')
    code, lines, err = run(config, capsys)
    assert code == 2
    assert lines[0] == f"relay 127.0.0.1:{port}: FAILED: connection refused (nothing listens there)"
    assert lines[1].startswith(f"database {sqlite_url}: ok (schema {migrate.head_revision()}")
    assert not any(line.endswith(": ok") and line.startswith(str(config)) for line in lines)
    assert "1 connection check(s) failed" in err


def test_relay_with_starttls_and_auth_is_ok_and_a_wrong_password_fails(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with SmtpSink(tls="starttls", auth=("relayuser", "s3cret")) as sink:
        relay = (f'host = "localhost"\nport = {sink.port}\ntls = "starttls"\n'
                 f'ca_file = "{sink.cafile}"\nusername = "relayuser"\n')
        good = write_config(tmp_path, db_url=sqlite_url, relay=relay + 'password = "s3cret"')
        code, lines, _ = run(good, capsys)
        assert code == 0, lines
        assert lines[0] == (f"relay localhost:{sink.port}: ok "
                            "(EHLO localhost, STARTTLS, AUTH as relayuser)")
        assert lines[-1] == f"{good}: ok"
        bad = write_config(tmp_path, db_url=sqlite_url, relay=relay + 'password = "wrong"')
        code, lines, _ = run(bad, capsys)
        assert code == 2
        assert lines[0].startswith(f"relay localhost:{sink.port}: FAILED: AUTH as 'relayuser' "
                                   "refused: 535")
        # Nothing was sent either time: the probe never says MAIL.
        assert sink.messages == []


def test_relay_without_starttls_when_starttls_is_configured_fails(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with SmtpSink() as sink:
        config = write_config(tmp_path, db_url=sqlite_url,
                              relay=f'host = "127.0.0.1"\nport = {sink.port}\ntls = "starttls"')
        code, lines, _ = run(config, capsys)
    assert code == 2
    assert lines[0] == (f"relay 127.0.0.1:{sink.port}: FAILED: the relay does not offer "
                        'STARTTLS (tls = "starttls")')


def test_no_relay_means_the_maildir(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = run(write_config(tmp_path, db_url=sqlite_url), capsys)
    assert code == 0
    assert lines[0] == f"relay none: ok (outgoing mail is written to {tmp_path / 'outgoing'}/new)"


def test_postgresql_current_schema_is_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with databases.postgres_database() as url:
        code, lines, _ = run(write_config(tmp_path, db_url=url), capsys)
        assert code == 0, lines
        shown = url.replace(":secret@", ":***@")
        assert lines[1] == f"database {shown}: ok (schema {migrate.head_revision()}, current)"


def test_postgresql_that_does_not_answer_or_has_no_such_database_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    code, lines, _ = run(write_config(tmp_path, db_url=closed), capsys)
    assert code == 2
    assert lines[1].startswith(f"database {closed}: FAILED: cannot connect: ")
    missing = databases.pg_url("mt_no_such_database")
    code, lines, _ = run(write_config(tmp_path, db_url=missing), capsys)
    assert code == 2
    assert 'database "mt_no_such_database" does not exist' in lines[1]


def test_old_sqlite_schema_fails_and_says_how_to_upgrade(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(sqlite_url)
    databases.downgrade(engine, "0008")
    engine.dispose()
    code, lines, _ = run(write_config(tmp_path, db_url=sqlite_url), capsys)
    assert code == 2
    assert lines[1] == (f"database {sqlite_url}: FAILED: schema is at 0008, this version needs "
                        f"{migrate.head_revision()}: run `mailticket -c CONFIG db upgrade`")


def test_missing_sqlite_file_is_ok_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "fresh" / "mt.db"
    code, lines, _ = run(write_config(tmp_path, db_url=f"sqlite:///{db}"), capsys)
    assert code == 0
    assert lines[1] == f"database sqlite:///{db}: ok (no database file yet; `serve` creates it)"
    assert not db.exists()


def test_empty_postgresql_database_is_ok_because_serve_initialises_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with databases.postgres_database() as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        code, lines, _ = run(write_config(tmp_path, db_url=url), capsys)
    assert code == 0
    assert lines[1].endswith(": ok (empty; `serve` initialises it)")


def test_imap_accounts_ok_and_wrong_password(
    tmp_path: Path, sqlite_url: str, dovecot: DovecotServer, capsys: pytest.CaptureFixture[str]
) -> None:
    def imap(password: str) -> str:
        return f"""
[[imap]]
name = "support"
host = "127.0.0.1"
port = {dovecot.port}
tls = "none"
user = "{USER}"
password = "{password}"
address = "support@provider.example"
"""
    code, lines, _ = run(write_config(tmp_path, db_url=sqlite_url, imap=imap(PASSWORD)), capsys)
    assert code == 0, lines
    assert lines[2] == f"imap support: ok ({USER}@127.0.0.1:{dovecot.port}, folder INBOX)"
    code, lines, _ = run(write_config(tmp_path, db_url=sqlite_url, imap=imap("wrong")), capsys)
    assert code == 2
    assert lines[2].startswith("imap support: FAILED: ")
    assert lines[2].endswith(f"({USER}@127.0.0.1:{dovecot.port})")


def test_from_address_outside_the_support_addresses_is_a_warning_not_a_failure(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 15.6: replies and VERP bounces are built on from_address.
    config = write_config(tmp_path, db_url=sqlite_url)
    config.write_text(config.read_text().replace(
        'support_addresses = ["support@provider.example"]',
        'support_addresses = ["support@provider.example"]\nfrom_address = "noreply@provider.example"'))
    code = main(["-c", str(config), "check-config"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.strip() == f"{config}: ok"
    [warning] = [line for line in err.splitlines() if "from_address" in line]
    assert warning.startswith(f"warning: {config}:")
    assert "'noreply@provider.example' is not one of mail.support_addresses" in warning
