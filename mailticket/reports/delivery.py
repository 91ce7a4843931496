"""Deliver a monthly report: as one HTML mail with inline charts and a CSV, or as files.

The mail goes through the outbox like every other mail. Its HTML part is a
``multipart/related`` with each chart PNG under its own ``cid:`` (so mail
clients show them without fetching anything), and the CSV is an ordinary
attachment. The scheduled run sends each contract its previous month once: an
audit marker records the send, and on PostgreSQL an advisory lock serialises
instances that wake up at the same minute. The provider's internal variant
(``--internal``: routing rules, breach reasons, calendar ids) goes to
``mail.admin_addresses`` and is never counted as the contract's report.
"""

from __future__ import annotations

import email
import email.policy
import zlib
from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from mailticket.log import get as get_logger
from mailticket.mail import compose
from mailticket.outbound import notify
from mailticket.outbound.notify import Notifier
from mailticket.reports import chart as charts_mod
from mailticket.reports import export
from mailticket.reports import monthly as reports
from mailticket.reports.monthly import MonthlyReport
from mailticket.store.db import transaction
from mailticket.store.schema import AuditEvent, OutboxItem

log = get_logger("reports")
MARKER = "monthly_report"


def stem(report: MonthlyReport, *, internal: bool = False) -> str:
    """The base name of the report's files: ``report-acme-2026-10`` (``…-internal``)."""
    return f"report-{report.contract_id}-{report.month}" + ("-internal" if internal else "")


def charts(report: MonthlyReport, locale: str) -> dict[str, bytes]:
    """The report's PNG charts by name, in the order of :data:`export.CHARTS`."""
    title = f"{report.contract_name} — {report.month}"
    drawn = {
        "compliance": charts_mod.compliance_png(report.sla.rows, locale, title),
        "response": charts_mod.response_png(report.sla.rows, locale, title),
        "trend": charts_mod.trend_png(report.trend, report.previous_month, report.month,
                                      locale, title),
        "hours": charts_mod.chart_png(report.volume.by_hour, report.volume.by_weekday, locale,
                                      title),
    }
    return {name: drawn[name] for name in export.CHARTS}


def _locale(notifier: Notifier, report: MonthlyReport, internal: bool) -> str:
    contract = notifier.config.contracts.get(report.contract_id)
    if internal or contract is None:
        return notifier.config.mail.default_locale
    return contract.locale


def write_files(
    notifier: Notifier, report: MonthlyReport, out_dir: Path, *, internal: bool = False
) -> list[Path]:
    """``--out DIR``: the HTML (pointing at the PNGs beside it), the PNGs and the CSV."""
    out_dir.mkdir(parents=True, exist_ok=True)
    locale = _locale(notifier, report, internal)
    base = stem(report, internal=internal)
    pngs: dict[str, Path] = {}
    for name, png in charts(report, locale).items():
        pngs[name] = out_dir / f"{base}-{name}.png"
        pngs[name].write_bytes(png)
    csv_path, html_path = out_dir / f"{base}.csv", out_dir / f"{base}.html"
    csv_path.write_text(export.to_csv(report, internal=internal), encoding="utf-8", newline="")
    context = export.template_context(report, {n: p.name for n, p in pngs.items()},
                                      csv_path.name, internal=internal)
    rendered = notifier.renderer.render("monthly_report", locale, context)
    html_path.write_text(rendered.html or "", encoding="utf-8")
    return [html_path, *pngs.values(), csv_path]


def recipients(notifier: Notifier, contract_id: str) -> list[str]:
    """The contract's contacts and ``reports.recipients``; the admins if that is nobody."""
    config = notifier.config
    contract = config.contracts.get(contract_id)
    found = [*(contract.contacts if contract else ()), *config.reports.recipients]
    return list(dict.fromkeys(found)) or list(config.mail.admin_addresses)


def internal_recipients(notifier: Notifier) -> list[str]:
    """Who reads the provider's internal variant: ``mail.admin_addresses``."""
    return list(dict.fromkeys(notifier.config.mail.admin_addresses))


def embed_images(raw: bytes, images: Mapping[str, bytes], names: Mapping[str, str]) -> bytes:
    """A composed mail with each PNG beside its HTML part as the inline image of its ``cid``.

    ``images`` maps a Content-ID to the PNG, ``names`` the same Content-ID to a file name.
    """
    msg = email.message_from_bytes(raw, policy=compose.SMTP_POLICY)
    assert isinstance(msg, EmailMessage)
    html = next((p for p in msg.walk() if p.get_content_type() == "text/html"), None)
    if html is None:
        raise ValueError("the report mail has no HTML part to carry the charts")
    assert isinstance(html, EmailMessage)
    for cid, png in images.items():
        html.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>",
                         disposition="inline", filename=names[cid])
    return compose.to_bytes(msg)


def queue(
    session: Session, notifier: Notifier, report: MonthlyReport, now: datetime, *,
    internal: bool = False,
) -> OutboxItem | None:
    """Queue the report mail (charts inline, CSV attached) and record that it was sent."""
    to = internal_recipients(notifier) if internal else recipients(notifier, report.contract_id)
    if not to:
        log.warning("monthly report has nobody to go to",
                    extra={"contract": report.contract_id, "internal": internal})
        return None
    locale = _locale(notifier, report, internal)
    base = stem(report, internal=internal)
    cids = {name: f"{name}-{base}@{notifier.domain}" for name in export.CHARTS}
    csv_name = f"{base}.csv"
    context = export.template_context(report, {n: f"cid:{c}" for n, c in cids.items()},
                                      csv_name, internal=internal)
    def with_charts(raw: bytes) -> bytes:
        drawn = charts(report, locale)
        return embed_images(raw, {cids[n]: png for n, png in drawn.items()},
                            {cids[n]: f"{n}.png" for n in drawn})

    item = notify.queue_mail(
        session, notifier, kind=MARKER, to=to[:1], cc=to[1:], template="monthly_report",
        locale=locale, context=context, now=now,
        attachments=[(csv_name, "text/csv", export.to_csv(report, internal=internal).encode())],
        finish_raw=with_charts,
    )
    if item is None:
        return None
    detail: dict[str, object] = {"contract": report.contract_id, "month": report.month,
                                 "outbox_id": item.id}
    if internal:
        detail["internal"] = True
    session.add(AuditEvent(ticket_id=None, at=now, actor="mailticket", action=MARKER,
                           detail=detail))
    return item


def already_sent(session: Session, contract_id: str, month: str) -> bool:
    """Whether the report of ``contract_id`` for ``month`` was queued before."""
    details = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == MARKER))
    return any(d.get("contract") == contract_id and d.get("month") == month
               and not d.get("internal") for d in details)


def _lock(session: Session, contract_id: str, month: str) -> None:
    """On PostgreSQL, one instance at a time decides about one contract's month."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"{MARKER}:{contract_id}:{month}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def monthly_run(factory: sessionmaker[Session], notifier: Notifier, now: datetime) -> int:
    """The scheduled job: each contract's previous month, once; returns reports queued."""
    month = reports.previous_month(now, notifier.config.reports.timezone)
    queued = 0
    for contract_id in notifier.config.contracts:
        with transaction(factory) as session:
            _lock(session, contract_id, month)
            if already_sent(session, contract_id, month):
                continue
            report = reports.build(session, notifier.config, contract_id, month, now)
            if queue(session, notifier, report, now) is not None:
                queued += 1
    log.info("monthly reports", extra={"month": month, "queued": queued})
    return queued
