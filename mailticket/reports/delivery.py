"""Deliver a monthly report: as one HTML mail with an inline chart and a CSV, or as files.

The mail goes through the outbox like every other mail. Its HTML part is a
``multipart/related`` with the chart PNG under a ``cid:`` (so mail clients show
it without fetching anything), and the CSV is an ordinary attachment. The
scheduled run sends each contract its previous month once: an audit marker
records the send, and on PostgreSQL an advisory lock serialises instances
that wake up at the same minute.
"""

from __future__ import annotations

import email
import email.policy
import zlib
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from mailticket.log import get as get_logger
from mailticket.mail import compose
from mailticket.outbound import notify
from mailticket.outbound.notify import Notifier
from mailticket.reports import monthly as reports
from mailticket.reports.chart import chart_png
from mailticket.reports.monthly import MonthlyReport
from mailticket.store.db import transaction
from mailticket.store.schema import AuditEvent, OutboxItem

log = get_logger("reports")
MARKER = "monthly_report"


def stem(report: MonthlyReport) -> str:
    """The base name of the report's files: ``report-acme-2026-10``."""
    return f"report-{report.contract_id}-{report.month}"


def chart(report: MonthlyReport, locale: str) -> bytes:
    """The report's PNG chart (hours and weekdays)."""
    return chart_png(report.by_hour, report.by_weekday, locale,
                     f"{report.contract_name} — {report.month}")


def _locale(notifier: Notifier, report: MonthlyReport) -> str:
    contract = notifier.config.contracts.get(report.contract_id)
    return contract.locale if contract else notifier.config.mail.default_locale


def write_files(notifier: Notifier, report: MonthlyReport, out_dir: Path) -> list[Path]:
    """``--out DIR``: the HTML (pointing at the PNG beside it), the PNG and the CSV."""
    out_dir.mkdir(parents=True, exist_ok=True)
    locale = _locale(notifier, report)
    base = stem(report)
    png_path, csv_path, html_path = (out_dir / f"{base}{ext}" for ext in (".png", ".csv", ".html"))
    png_path.write_bytes(chart(report, locale))
    csv_path.write_text(reports.to_csv(report), encoding="utf-8", newline="")
    context = reports.template_context(report, png_path.name, csv_path.name)
    rendered = notifier.renderer.render("monthly_report", locale, context)
    html_path.write_text(rendered.html or "", encoding="utf-8")
    return [html_path, png_path, csv_path]


def recipients(notifier: Notifier, contract_id: str) -> list[str]:
    """The contract's contacts and ``reports.recipients``; the admins if that is nobody."""
    config = notifier.config
    contract = config.contracts.get(contract_id)
    found = [*(contract.contacts if contract else ()), *config.reports.recipients]
    return list(dict.fromkeys(found)) or list(config.mail.admin_addresses)


def embed_image(item: OutboxItem, png: bytes, cid: str) -> None:
    """Put ``png`` beside the HTML part of a queued mail as the inline image ``cid``."""
    msg = email.message_from_bytes(item.raw, policy=compose.SMTP_POLICY)
    assert isinstance(msg, EmailMessage)
    html = next((p for p in msg.walk() if p.get_content_type() == "text/html"), None)
    if html is None:
        raise ValueError("the report mail has no HTML part to carry the chart")
    assert isinstance(html, EmailMessage)
    html.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>",
                     disposition="inline", filename="chart.png")
    item.raw = compose.to_bytes(msg)


def queue(
    session: Session, notifier: Notifier, report: MonthlyReport, now: datetime
) -> OutboxItem | None:
    """Queue the report mail (chart inline, CSV attached) and record that it was sent."""
    to = recipients(notifier, report.contract_id)
    if not to:
        log.warning("monthly report has nobody to go to", extra={"contract": report.contract_id})
        return None
    locale = _locale(notifier, report)
    cid = f"chart-{report.contract_id}-{report.month}@{notifier.domain}"
    csv_name = f"{stem(report)}.csv"
    item = notify.queue_mail(
        session, notifier, kind=MARKER, to=to[:1], cc=to[1:], template="monthly_report",
        locale=locale, context=reports.template_context(report, f"cid:{cid}", csv_name),
        now=now, attachments=[(csv_name, "text/csv", reports.to_csv(report).encode())],
    )
    if item is None:
        return None
    embed_image(item, chart(report, locale), cid)
    session.add(AuditEvent(ticket_id=None, at=now, actor="mailticket", action=MARKER,
                           detail={"contract": report.contract_id, "month": report.month,
                                   "outbox_id": item.id}))
    return item


def already_sent(session: Session, contract_id: str, month: str) -> bool:
    """Whether the report of ``contract_id`` for ``month`` was queued before."""
    details = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == MARKER))
    return any(d.get("contract") == contract_id and d.get("month") == month for d in details)


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
