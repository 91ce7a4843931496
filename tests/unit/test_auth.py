"""authenticate: engineers only with evidence, customers by contract, everyone else unknown."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from pathlib import Path

import pytest

from mailticket.config import Config, MailConfig
from mailticket.mail.addresses import make_reply_token, reply_address
from mailticket.mail.parse import InboundMail
from mailticket.model import (
    Contract,
    Engineer,
    Envelope,
    Evidence,
    Line,
    Principal,
    PrincipalKind,
)
from mailticket.policy.auth import Authentication, authenticate

SECRET = "unit-test-secret"
TODAY = date(2026, 1, 5)
ANNA = "anna@example.com"
BORIS = "boris@example.com"
MX = "mx.example.com"

CONFIG = Config(
    path=Path("t.toml"),
    engineers={
        ANNA: Engineer(address=ANNA, name="Anna", line=Line.L1),
        BORIS: Engineer(address=BORIS, name="Boris", line=Line.L2),
    },
    contracts={
        "acme": Contract(
            id="acme",
            name="Acme",
            sla_plan="gold",
            contacts=("CEO@Partner.example",),
            domains=("acme.example",),
        ),
        "partner": Contract(
            id="partner",
            name="Partner",
            sla_plan="gold",
            domains=("partner.example", "acme.example", "пример.рф"),
        ),
    },
    mail=MailConfig(
        support_addresses=("support@example.com",),
        reply_token_secret=SECRET,
        trusted_authserv_ids=(MX,),
    ),
)


def make_mail(
    from_addr: str,
    *,
    to: tuple[str, ...] = ("support@example.com",),
    cc: tuple[str, ...] = (),
    auth_results: tuple[str, ...] = (),
) -> InboundMail:
    headers: dict[str, tuple[str, ...]] = {"from": (from_addr,), "to": to}
    if auth_results:
        headers["authentication-results"] = auth_results
    return InboundMail(
        message_id="m1@client.example",
        in_reply_to=(),
        references=(),
        subject="Re: [#MT-42] Backup",
        from_addr=from_addr,
        from_name="",
        to=to,
        cc=cc,
        reply_to=(),
        date=None,
        text="Done.",
        html=None,
        attachments=(),
        headers=headers,
        content_type="text/plain",
    )


def envelope(*rcpt: str, auth_user: str | None = None, source: str = "smtp") -> Envelope:
    return Envelope(
        mail_from="x@client.example",
        rcpt_tos=rcpt or ("support@example.com",),
        auth_user=auth_user,
        source=source,
    )


def token_rcpt(ticket: int = 42, engineer: str = ANNA, issued: date = TODAY) -> str:
    return reply_address("support@example.com", make_reply_token(SECRET, ticket, engineer, issued))


def run_full(mail: InboundMail, env: Envelope | None = None,
             config: Config = CONFIG) -> Authentication:
    return authenticate(mail, env or envelope(), config, TODAY)


def run(mail: InboundMail, env: Envelope | None = None, config: Config = CONFIG) -> Authentication:
    """The verdict without the issue-18 detail (refusals, strength, token facts), for
    the tests that predate it; ``run_full`` keeps everything."""
    return dataclasses.replace(run_full(mail, env, config), refusals=(), verified=False,
                               token=None, token_issued=None, token_owner_ticket_id=None)


def forged(reason: str, address: str = ANNA, **extra: object) -> Authentication:
    return Authentication(
        principal=Principal(PrincipalKind.UNKNOWN, address, claimed_engineer=address),
        token_ticket_id=None,
        forged=True,
        reason=reason,
        **extra,  # type: ignore[arg-type]
    )


def engineer(evidence: Evidence, reason: str, ticket: int | None = None) -> Authentication:
    return Authentication(
        principal=Principal(PrincipalKind.ENGINEER, ANNA, evidence=evidence),
        token_ticket_id=ticket,
        forged=False,
        reason=reason,
    )


# --- engineers: forged From and reply tokens ----------------------------------------------


def test_forged_from_without_any_evidence() -> None:
    assert run(make_mail(ANNA)) == forged(f"From claims engineer {ANNA} without evidence")


def test_engineer_address_is_matched_case_insensitively() -> None:
    assert run(make_mail("Anna@EXAMPLE.com")).forged is True


def test_valid_token_in_envelope() -> None:
    result = run(make_mail(ANNA), envelope(token_rcpt()))
    assert result == engineer(
        Evidence.REPLY_TOKEN,
        f"engineer {ANNA} by reply_token; reply token for ticket 42 verified for the sender",
        ticket=42,
    )


def test_valid_token_in_cc_header_when_envelope_has_none() -> None:
    result = run(make_mail(ANNA, cc=(token_rcpt(),)), envelope("support@example.com"))
    assert (result.principal.kind, result.token_ticket_id) == (PrincipalKind.ENGINEER, 42)


def test_token_for_another_ticket_is_still_valid_the_pipeline_checks_the_thread() -> None:
    mail = make_mail(ANNA, to=(token_rcpt(ticket=42),))
    result = run(mail, envelope(token_rcpt(ticket=7)))
    # The envelope comes first; the ticket id is returned as the token says.
    assert (result.principal.evidence, result.token_ticket_id) == (Evidence.REPLY_TOKEN, 7)


def test_token_of_engineer_a_used_by_engineer_b_is_refused() -> None:
    result = run(make_mail(BORIS), envelope(token_rcpt(engineer=ANNA)))
    assert result == forged(
        f"From claims engineer {BORIS} without evidence; reply token belongs to {ANNA}, "
        "not to the sender",
        address=BORIS,
        token_owner=ANNA,
    )


def test_token_of_an_engineer_used_by_a_customer_gives_no_ticket() -> None:
    result = run(make_mail("olga@acme.example"), envelope(token_rcpt(engineer=ANNA)))
    assert result == Authentication(
        principal=Principal(PrincipalKind.CUSTOMER, "olga@acme.example", contract_id="acme"),
        token_ticket_id=None,
        forged=False,
        reason=f"customer: domain of contract acme (first in config order; also matches "
        f"partner); reply token of {ANNA} presented by olga@acme.example: not accepted",
        token_owner=ANNA,
    )


def test_expired_token() -> None:
    result = run(make_mail(ANNA), envelope(token_rcpt(issued=TODAY - timedelta(days=91))))
    assert result == forged(
        f"From claims engineer {ANNA} without evidence; reply token refused: expired"
    )


def test_tampered_mac_and_ticket() -> None:
    good = token_rcpt(ticket=42)
    local, domain = good.split("@")
    bad_mac = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"
    bad_ticket = good.replace("-42-", "-43-")
    for rcpt in (bad_mac, bad_ticket):
        assert run(make_mail(ANNA), envelope(rcpt)) == forged(
            f"From claims engineer {ANNA} without evidence; reply token refused: bad mac"
        )


def test_token_at_a_foreign_address_is_not_looked_at() -> None:
    foreign = token_rcpt().replace("@example.com", "@elsewhere.example")
    assert run(make_mail(ANNA, to=(foreign,))).forged is True


# --- engineers: Authentication-Results ----------------------------------------------------


def test_trusted_dkim_pass_aligned() -> None:
    ar = f"{MX}; dkim=pass (2048-bit key) header.d=example.com header.i=@example.com; spf=pass"
    assert run(make_mail(ANNA, auth_results=(ar,))) == engineer(
        Evidence.DKIM, f"engineer {ANNA} by dkim; aligned DKIM/DMARC pass from {MX}"
    )


def test_dkim_pass_of_a_parent_domain_is_aligned() -> None:
    config = Config(
        path=Path("t.toml"),
        engineers={"anna@eu.example.com": Engineer("anna@eu.example.com", "Anna", Line.L1)},
        mail=MailConfig(trusted_authserv_ids=(MX,)),
    )
    mail = make_mail("anna@eu.example.com", auth_results=(f"{MX}; dkim=pass header.d=example.com",))
    assert run(mail, config=config).principal.evidence is Evidence.DKIM


def test_dmarc_pass_for_the_from_domain() -> None:
    ar = f"{MX}; spf=fail; dkim=fail header.d=example.com; dmarc=pass (p=reject) header.from=example.com"
    assert run(make_mail(ANNA, auth_results=(ar,))).principal.evidence is Evidence.DKIM


def test_untrusted_authserv_id_is_ignored() -> None:
    ar = "mx.attacker.example; dkim=pass header.d=example.com"
    assert run(make_mail(ANNA, auth_results=(ar,))) == forged(
        f"From claims engineer {ANNA} without evidence; "
        "Authentication-Results from untrusted 'mx.attacker.example' ignored"
    )


def test_lower_header_with_trusted_id_means_forged() -> None:
    ours = f"{MX}; dkim=pass header.d=example.com"
    typed_by_sender = f"{MX}; dkim=pass header.d=example.com"
    result = run(make_mail(ANNA, auth_results=(ours, typed_by_sender)))
    assert result == forged(
        f"From claims engineer {ANNA} without evidence; forged Authentication-Results: "
        "a lower header claims a trusted authserv-id",
        forged_auth_results=True,
    )


def test_lower_trusted_header_under_an_untrusted_one_is_forged_too() -> None:
    result = run(
        make_mail(
            ANNA, auth_results=("other.example; none", f"{MX}; dkim=pass header.d=example.com")
        )
    )
    assert (result.forged, result.forged_auth_results) == (True, True)


def test_dkim_pass_for_another_domain() -> None:
    for d in ("attacker.example", "com", "mail.example.com"):
        ar = f"{MX}; dkim=pass header.d={d}"
        result = run(make_mail(ANNA, auth_results=(ar,)))
        assert result.reason.endswith(f"no aligned DKIM/DMARC pass from {MX}"), d
        assert result.forged is True


def test_spf_pass_alone_is_not_evidence() -> None:
    ar = f"{MX}; spf=pass smtp.mailfrom=anna@example.com; dkim=none"
    assert run(make_mail(ANNA, auth_results=(ar,))).forged is True


def test_dkim_fail_and_dmarc_for_another_domain() -> None:
    ar = f"{MX}; dkim=fail header.d=example.com; dmarc=pass header.from=attacker.example"
    assert run(make_mail(ANNA, auth_results=(ar,))).forged is True


def test_unparseable_header_is_no_evidence() -> None:
    ar = f"{MX}; dkim=pass header.d=example.com; ===;;"
    assert run(make_mail(ANNA, auth_results=(ar,))) == forged(
        f"From claims engineer {ANNA} without evidence; "
        "Authentication-Results unparseable: no evidence"
    )


def test_no_trusted_ids_configured() -> None:
    config = Config(path=Path("t.toml"), engineers=CONFIG.engineers, mail=MailConfig())
    ar = f"{MX}; dkim=pass header.d=example.com"
    assert run(make_mail(ANNA, auth_results=(ar,)), config=config).reason == (
        f"From claims engineer {ANNA} without evidence; "
        "Authentication-Results ignored: no trusted authserv-id"
    )


# --- engineers: SMTP AUTH -----------------------------------------------------------------


def test_smtp_auth_on_submission() -> None:
    result = run(make_mail(ANNA), envelope(auth_user="Anna@example.com", source="submission"))
    assert result == engineer(
        Evidence.SMTP_AUTH,
        f"engineer {ANNA} by smtp_auth; SMTP AUTH as the sender on the submission listener",
    )


def test_smtp_auth_outside_submission_does_not_count() -> None:
    assert run(make_mail(ANNA), envelope(auth_user=ANNA, source="smtp")).forged is True


def test_smtp_auth_as_another_engineer() -> None:
    result = run(make_mail(ANNA), envelope(auth_user=BORIS, source="submission"))
    assert result == forged(
        f"From claims engineer {ANNA} without evidence; SMTP AUTH as {BORIS}, not as the sender"
    )


def test_smtp_auth_and_token_keep_the_ticket() -> None:
    env = Envelope("a@b", (token_rcpt(),), auth_user=ANNA, source="submission")
    result = run(make_mail(ANNA), env)
    assert (result.principal.evidence, result.token_ticket_id) == (Evidence.SMTP_AUTH, 42)


# --- customers and unknown senders -----------------------------------------------------------


def customer(address: str, contract: str, reason: str) -> Authentication:
    return Authentication(
        principal=Principal(PrincipalKind.CUSTOMER, address, contract_id=contract),
        token_ticket_id=None,
        forged=False,
        reason=reason,
    )


def test_customer_by_exact_contact_beats_domain() -> None:
    # partner.example is partner's domain, but this address is an acme contact.
    assert run(make_mail("ceo@partner.example")) == customer(
        "ceo@partner.example", "acme", "customer: contact of contract acme"
    )


def test_customer_by_domain() -> None:
    assert run(make_mail("olga@partner.example")) == customer(
        "olga@partner.example", "partner", "customer: domain of contract partner"
    )


def test_customer_by_subdomain_and_idna() -> None:
    assert run(make_mail("olga@msk.partner.example")).principal.contract_id == "partner"
    assert run(make_mail("olga@Офис.Пример.РФ")) == customer(
        "olga@xn--h1alkk.xn--e1afmkfd.xn--p1ai", "partner", "customer: domain of contract partner"
    )


def test_lookalike_domain_is_not_a_subdomain() -> None:
    assert run(make_mail("olga@notpartner.example")).principal.kind is PrincipalKind.UNKNOWN


def test_unknown_sender() -> None:
    assert run(make_mail("someone@random.example")) == Authentication(
        principal=Principal(PrincipalKind.UNKNOWN, "someone@random.example"),
        token_ticket_id=None,
        forged=False,
        reason="unknown sender",
    )


def test_our_own_address_and_empty_from() -> None:
    assert run(make_mail("Support@example.com")).reason == (
        "From is one of our own support addresses"
    )
    empty = run(make_mail(""))
    assert (empty.principal.kind, empty.reason) == (PrincipalKind.UNKNOWN, "no usable From address")


# --- issue 18: strength, refusals, ambiguous fields, DKIM l= --------------------------------


def with_headers(mail: InboundMail, **extra: tuple[str, ...]) -> InboundMail:
    headers = dict(mail.headers)
    headers.update({name.replace("_", "-"): values for name, values in extra.items()})
    return dataclasses.replace(mail, headers=headers)


def codes(result: Authentication) -> list[str]:
    return [r.code.value for r in result.refusals]


def test_a_token_alone_is_evidence_but_not_verified() -> None:
    result = run_full(make_mail(ANNA), envelope(token_rcpt()))
    assert result.principal.kind is PrincipalKind.ENGINEER and not result.verified
    assert result.token_issued == TODAY and result.token is not None


def test_smtp_auth_or_aligned_dkim_verify_the_sender() -> None:
    by_auth = run_full(make_mail(ANNA), envelope(token_rcpt(), auth_user=ANNA,
                                                  source="submission"))
    by_dkim = run_full(make_mail(ANNA, auth_results=(f"{MX}; dkim=pass header.d=example.com",)),
                       envelope(token_rcpt()))
    assert by_auth.verified and by_dkim.verified


def test_another_engineers_token_is_refused_by_code_and_names_its_ticket() -> None:
    result = run_full(make_mail(BORIS), envelope(token_rcpt(7, ANNA), auth_user=BORIS,
                                                  source="submission"))
    assert codes(result) == ["token_owner_mismatch"]
    assert (result.token_owner, result.token_owner_ticket_id) == (ANNA, 7)


@pytest.mark.parametrize("field", ["from", "sender", "subject", "message-id", "date", "to", "cc",
                                   "reply-to", "in-reply-to", "references"])
def test_a_duplicate_single_field_makes_the_mail_ambiguous_for_everyone(field: str) -> None:
    mail = with_headers(make_mail(ANNA, auth_results=(f"{MX}; dkim=pass header.d=example.com",)),
                        **{field.replace("-", "_"): ("a", "b")})
    result = run_full(mail, envelope(token_rcpt()))
    assert result.principal.kind is PrincipalKind.UNKNOWN and result.ambiguous is not None
    assert result.ambiguous.code == ("duplicate_from" if field == "from" else "duplicate_header")
    customer = run_full(with_headers(make_mail("ceo@partner.example"),
                                     **{field.replace("-", "_"): ("a", "b")}))
    assert customer.principal.kind is PrincipalKind.UNKNOWN and customer.ambiguous is not None


def test_from_with_two_addresses_needs_a_sender() -> None:
    mail = dataclasses.replace(make_mail(ANNA), from_addresses=(ANNA, "x@evil.example"))
    result = run_full(mail, envelope(token_rcpt()))
    assert result.ambiguous is not None and result.ambiguous.code == "multiple_from"
    assert run_full(with_headers(mail, sender=(ANNA,)), envelope(token_rcpt())).ambiguous is None


SIG = "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=x; b=QUJD REVG"


@pytest.mark.parametrize(("signature", "header_b", "verified", "refused"), [
    (SIG, "", True, []),
    (SIG + "; l=10", "", False, ["dkim_length_tag"]),
    (SIG + "; l=10", " header.b=QUJDREVG", False, ["dkim_length_tag"]),
    # header.b names another signature of the same domain: the l= one is not the one that passed.
    (SIG.replace("QUJD REVG", "WFla") + "; l=10", " header.b=QUJDREVG", True, []),
])
def test_a_dkim_pass_for_a_signature_with_l_is_not_evidence(
    signature: str, header_b: str, verified: bool, refused: list[str],
) -> None:
    mail = with_headers(
        make_mail(ANNA, auth_results=(f"{MX}; dkim=pass header.d=example.com{header_b}",)),
        dkim_signature=(signature,))
    result = run_full(mail)
    assert (result.verified, codes(result)) == (verified, refused)


def test_a_dmarc_pass_resting_on_an_l_signature_is_not_evidence() -> None:
    mail = with_headers(make_mail(ANNA, auth_results=(f"{MX}; dmarc=pass header.from=example.com",)),
                        dkim_signature=(SIG + "; l=5",))
    assert codes(run_full(mail)) == ["dkim_length_tag"] and run_full(mail).forged


def test_unaligned_pass_and_forged_results_are_named() -> None:
    unaligned = run_full(make_mail(ANNA, auth_results=(f"{MX}; dkim=pass header.d=evil.example",)))
    assert codes(unaligned) == ["dkim_unaligned"]
    forged_ar = run_full(make_mail(ANNA, auth_results=(f"{MX}; dkim=fail", f"{MX}; dkim=pass")))
    assert codes(forged_ar) == ["forged_authres"]
