"""Timed jobs beside the workers: the SLA scan, the monthly reports, housekeeping.

APScheduler's ``AsyncIOScheduler`` with its in-memory job store runs the jobs on
the daemon's event loop, each in the loop's thread pool so a slow scan never
blocks the listeners. Nothing about the jobs is kept in APScheduler: all state
that matters is in our tables (``next_sla_check_at``, ``sla_events``, audit
markers), so a restart loses nothing, and the first scan runs at start-up to
catch up on whatever came due while the daemon was down.

The job functions are plain methods taking the time from ``clock``, so tests
call them directly with a simulated clock instead of waiting for minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import delete

from mailticket.app import App
from mailticket.digest import admin as admin_digest
from mailticket.digest import handover as handover_digest
from mailticket.digest import morning as morning_digest
from mailticket.digest import weekly as weekly_digest
from mailticket.escalation import scan as sla_scan
from mailticket.log import get as get_logger
from mailticket.model import utc_now
from mailticket.reports import delivery as report_delivery
from mailticket.store.db import transaction
from mailticket.store.schema import AutoReplyLog

log = get_logger("scheduler")

# Automatic-mail counters are read over the last 24 hours; a week of them is plenty.
AUTO_REPLY_LOG_DAYS = 7



class Scheduler:
    """The daemon's timed jobs; ``start`` needs a running asyncio loop."""

    def __init__(self, app: App, *, clock: Callable[[], datetime] = utc_now) -> None:
        """``app`` is read once per job run; a reload replaces it whole (``mailticket.app``)."""
        self.app = app
        self.factory = app.factory
        self.clock = clock
        self.last_scan: sla_scan.ScanResult | None = None
        self._scheduler: AsyncIOScheduler | None = None

    def sla_scan(self) -> sla_scan.ScanResult:
        """Send every SLA event due by now, once (multi-instance safe)."""
        self.last_scan = sla_scan.scan(self.factory, self.app.notifier, self.clock())
        return self.last_scan

    def monthly_reports(self) -> int:
        """Queue each contract's report for the previous month, unless already sent.

        The first build of a month that has ended freezes it (``reports.month_close``),
        so the mail sent here and any later rebuild print the same figures.
        """
        return report_delivery.monthly_run(self.factory, self.app.notifier, self.clock())

    def morning_digests(self) -> list[str]:
        """Queue each engineer's morning digest once their working day has begun (issue 16)."""
        return morning_digest.send_due(self.factory, self.app.notifier, self.clock())

    def handover_mail(self) -> list[str]:
        """Queue the on-call handover mail to the incoming pair, once per shift (issue 16)."""
        return handover_digest.send_due(self.factory, self.app.notifier, self.clock())

    def weekly_summaries(self) -> list[str]:
        """Queue each contract's weekly summary to its dedicated engineer, once (issue 16)."""
        return weekly_digest.send_due(self.factory, self.app.notifier, self.clock())

    def admin_digest(self) -> int:
        """Queue the admins' failure digest if one is due and there is news (issue 15)."""
        return len(admin_digest.send_due(self.factory, self.app.notifier, self.clock()))

    def housekeeping(self) -> int:
        """Prune old automatic-mail counters; returns the rows removed.

        Expired leases need no job: ``workqueue.claim`` takes them back by itself.
        """
        cutoff = self.clock() - timedelta(days=AUTO_REPLY_LOG_DAYS)
        with transaction(self.factory) as session:
            removed = session.execute(delete(AutoReplyLog).where(AutoReplyLog.sent_at < cutoff))
            count = int(getattr(removed, "rowcount", 0) or 0)
        if count:
            log.info("housekeeping", extra={"auto_reply_log_pruned": count})
        return count

    def _guarded(self, name: str, job: Callable[[], object]) -> Callable[[], None]:
        """The job boundary: log a failure and keep the schedule (the next run retries)."""

        def run() -> None:
            try:
                job()
            except Exception:
                log.exception("scheduled job failed", extra={"job": name})

        return run

    def start(self) -> None:
        """Add the jobs and start; the first SLA scan runs at once (start-up catch-up)."""
        scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
        scheduler.add_job(self._guarded("sla_scan", self.sla_scan), IntervalTrigger(minutes=1),
                          id="sla_scan", next_run_time=datetime.now(UTC))
        scheduler.add_job(self._guarded("housekeeping", self.housekeeping),
                          IntervalTrigger(hours=1), id="housekeeping")
        # Always on: an engineer may turn their digest on by mail when [digest] is off.
        scheduler.add_job(self._guarded("morning_digests", self.morning_digests),
                          IntervalTrigger(minutes=1), id="morning_digests")
        scheduler.add_job(self._guarded("weekly_summaries", self.weekly_summaries),
                          IntervalTrigger(minutes=5), id="weekly_summaries")
        # Always on, like the morning digests: a reload may add mail.admin_addresses.
        scheduler.add_job(self._guarded("admin_digest", self.admin_digest),
                          IntervalTrigger(minutes=1), id="admin_digest")
        if self.app.config.oncall.rota and self.app.config.digest.handover:
            scheduler.add_job(self._guarded("handover_mail", self.handover_mail),
                              IntervalTrigger(minutes=1), id="handover_mail")
        reports = self.app.config.reports
        if reports.monthly:
            trigger = CronTrigger(day=reports.day, hour=reports.at.hour, minute=reports.at.minute,
                                  timezone=reports.timezone)
            scheduler.add_job(self._guarded("monthly_reports", self.monthly_reports), trigger,
                              id="monthly_reports")
        scheduler.start()
        self._scheduler = scheduler
        log.info("scheduler started", extra={"jobs": ",".join(j.id for j in scheduler.get_jobs())})

    def job_ids(self) -> list[str]:
        """The ids of the scheduled jobs (empty before ``start``)."""
        return [job.id for job in self._scheduler.get_jobs()] if self._scheduler else []

    def next_run_time(self, job_id: str) -> datetime | None:
        """When APScheduler will next run ``job_id`` (None before ``start`` or if absent)."""
        job = self._scheduler.get_job(job_id) if self._scheduler else None
        return job.next_run_time if job is not None else None


    def shutdown(self) -> None:
        """Stop scheduling; a job already running finishes in its thread."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None
