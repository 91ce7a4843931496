"""The dispatch table: each kind of recipient (and sender) reaches its path, every exit is listed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path as FsPath

import pytest
from support.configs import SECRET, make_config
from support.mails import build

from mailticket.config import Config
from mailticket.mail.addresses import (
    make_reply_token,
    rating_address,
    reply_address,
    verp_return_path,
)
from mailticket.model import Envelope, MailKind
from mailticket.processing import dispatch
from mailticket.processing.dispatch import EXITS, INTAKE_EXITS, PATHS, ROUTES, Path, route
from mailticket.processing.stages import drop_duplicate, drop_loop
from mailticket.processing.work import Context, Disposition, Work

NOW = datetime(2026, 11, 20, 16, 50, tzinfo=UTC)
SUPPORT = "support@provider.example"
CUSTOMER = "ivan@acme.example"
ANNA = "anna@provider.example"
ZABBIX = "zabbix@initech.example"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    tmp: FsPath = tmp_path_factory.mktemp("dispatch")
    return make_config(tmp, f"sqlite:///{tmp / 'unused.db'}")


def _intake(config: Config, raw: bytes, *, rcpt: str = SUPPORT, mail_from: str = CUSTOMER,
            source: str = "smtp", auth_user: str | None = None) -> Work:
    """Run the intake (pure for readable mail: no database is touched) and return the Work."""
    ctx = Context(session=None, config=config, notifier=None, now=NOW)  # type: ignore[arg-type]
    work = Work(spool_id=1, source=source, envelope=Envelope(
        mail_from=mail_from, rcpt_tos=(rcpt,), source=source, auth_user=auth_user,
        received_at=NOW), raw=raw)
    for stage in dispatch.INTAKE:
        result = stage(work, ctx)
        assert isinstance(result, Work), result
        work = result
    return work


def _dsn(to: str) -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.acme.example\r\nTo: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.acme.example>\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "MIME-Version: 1.0\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.acme.example"
        f"\r\n\r\nFinal-Recipient: rfc822; {CUSTOMER}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "\r\n--B--\r\n"
    ).encode()


def _token(engineer: str = ANNA) -> str:
    return reply_address(SUPPORT, make_reply_token(SECRET, 7, engineer, NOW.date()))


# --- routing: one case per kind of recipient, then the senders that decide before it ---


def test_verp_return_path_with_a_delivery_report_goes_to_bounces(config: Config) -> None:
    verp = verp_return_path(SUPPORT, 42, SECRET)
    work = _intake(config, _dsn(verp), rcpt=verp, mail_from="")
    assert route(work, config) is Path.BOUNCES


def test_rating_address_goes_to_ratings(config: Config) -> None:
    rate = rating_address(SUPPORT, SECRET, 7, 5)
    assert route(_intake(config, build(from_=CUSTOMER, to=rate), rcpt=rate), config) is Path.RATINGS


def test_reply_token_of_the_sender_goes_to_the_engineer_path(config: Config) -> None:
    token = _token()
    work = _intake(config, build(from_=ANNA, to=token), rcpt=token, mail_from=ANNA)
    assert route(work, config) is Path.ENGINEER


def test_plain_support_address_goes_to_the_customer_path(config: Config) -> None:
    assert route(_intake(config, build(from_=CUSTOMER)), config) is Path.CUSTOMER


def test_monitoring_sender_goes_to_alerts(config: Config) -> None:
    work = _intake(config, build(from_=ZABBIX, subject="Problem: Disk full on db01"),
                   mail_from=ZABBIX)
    assert route(work, config) is Path.ALERTS


# --- where the order is not "by recipient alone" (kept as it always was) --------------


def test_monitoring_sender_wins_even_with_a_bounce_to_a_verp_address(config: Config) -> None:
    verp = verp_return_path(SUPPORT, 42, SECRET)
    raw = _dsn(verp).replace(b"MAILER-DAEMON@mx.acme.example", ZABBIX.encode())
    assert route(_intake(config, raw, rcpt=verp, mail_from=ZABBIX), config) is Path.ALERTS


def test_a_bounce_to_the_plain_address_still_goes_to_bounces(config: Config) -> None:
    work = _intake(config, _dsn(SUPPORT), mail_from="")
    assert route(work, config) is Path.BOUNCES  # where it ends as bounce_unmatched


def test_an_out_of_office_reply_to_a_verp_address_is_no_bounce(config: Config) -> None:
    verp = verp_return_path(SUPPORT, 42, SECRET)
    raw = build(from_=CUSTOMER, to=verp, subject="Автоответ: Принтер",
                headers={"Auto-Submitted": "auto-replied"})
    work = _intake(config, raw, rcpt=verp)
    assert (work.kind, route(work, config)) == (MailKind.AUTO_REPLY, Path.CUSTOMER)


def test_rating_address_in_cc_counts_and_comes_before_the_engineer(config: Config) -> None:
    rate = rating_address(SUPPORT, SECRET, 7, 1)
    assert route(_intake(config, build(from_=CUSTOMER, cc=[rate])), config) is Path.RATINGS
    token = _token()
    engineer = _intake(config, build(from_=ANNA, to=token, cc=[rate]), rcpt=token, mail_from=ANNA)
    assert route(engineer, config) is Path.RATINGS  # refused there: only customers rate


def test_a_forged_rating_address_goes_to_ratings_to_be_refused(config: Config) -> None:
    forged = "support+rate-7-5-aaaaaaaaaaaaaaaa@provider.example"
    assert route(_intake(config, build(from_=CUSTOMER, to=forged), rcpt=forged),
                 config) is Path.RATINGS


def test_an_engineer_proven_without_a_token_goes_to_the_engineer_path(config: Config) -> None:
    work = _intake(config, build(from_=ANNA), mail_from=ANNA, source="submission", auth_user=ANNA)
    assert route(work, config) is Path.ENGINEER


def test_someone_elses_reply_token_proves_nothing(config: Config) -> None:
    token = _token()
    assert route(_intake(config, build(from_=CUSTOMER, to=token), rcpt=token),
                 config) is Path.CUSTOMER
    forged = _intake(config, build(from_=ANNA), mail_from=ANNA)  # From: an engineer, no evidence
    assert (forged.auth is not None and forged.auth.forged, route(forged, config)) == (
        True, Path.CUSTOMER)


def test_our_own_mail_back_is_routed_then_dropped_at_the_head_of_its_path(config: Config) -> None:
    work = _intake(config, build(from_=SUPPORT))
    assert (work.kind, route(work, config)) == (MailKind.LOOP, Path.CUSTOMER)


# --- the table itself ------------------------------------------------------------------


def test_every_path_has_one_route_one_chain_and_its_exits() -> None:
    assert [p for p, _ in ROUTES] == list(Path)
    assert set(PATHS) == set(EXITS) == set(Path)
    assert all(PATHS[p] for p in Path)


def test_loops_and_duplicates_stop_at_the_head_of_every_path_that_answers_people() -> None:
    for path in (Path.RATINGS, Path.ENGINEER, Path.CUSTOMER):
        assert PATHS[path][:2] == (drop_loop, drop_duplicate)
        assert EXITS[path][:2] == (Disposition.LOOP, Disposition.DUPLICATE)


def test_every_exit_is_listed_for_some_path_and_in_the_module_docstring() -> None:
    listed = set(INTAKE_EXITS).union(*EXITS.values())
    assert set(Disposition) - listed == {Disposition.PROCESSED}
    doc = dispatch.__doc__ or ""
    assert [d.code for d in Disposition if d.code not in doc] == []


def test_codes_and_spool_states_are_the_ones_admins_already_know() -> None:
    rejected = {"too_large", "rating_forged", "rating_refused", "token_mismatch",
                "engineer_no_ticket", "forged_engineer", "unknown_sender", "queue_refused"}
    expected = {
        **dict.fromkeys(rejected, "rejected"), "unparseable": "quarantined", "deferred": "queued",
        "ambiguous_headers": "quarantined",
        **dict.fromkeys((
            "loop", "duplicate", "bounce", "bounce_unmatched", "alert_ignored", "alert_new",
            "alert_repeat", "alert_flap", "alert_flap_noted", "alert_resolved", "alert_ok_noted",
            "alert_info", "alert_ok_unmatched", "alert_info_unmatched", "rated",
            "engineer_auto", "unverified_note", "replayed", "command_token_expired",
            "commands_refused", "engineer_reply", "auto_unthreaded", "new",
            "reply", "reopened", "closed", "auto", "processed",
            "status_answered", "queue_answered", "digest_set"), "done"),
    }
    assert {d.code: d.state for d in Disposition} == expected
    assert len({d.code for d in Disposition}) == len(Disposition)


def test_a_completed_path_ends_with_the_disposition_of_its_event() -> None:
    assert Disposition.of_event("engineer_reply") is Disposition.ENGINEER_REPLY
    assert Disposition.of_event("reopened") is Disposition.REOPENED
    assert Disposition.of_event("") is Disposition.PROCESSED

