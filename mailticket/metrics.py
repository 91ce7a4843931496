"""Prometheus metrics: what the daemon counts as it works, and what the queues hold right now.

Two kinds of figures live here. Event counters and latency histograms are
bumped by the parts that see the event (the worker after each spool item, the
relay after each send, the scheduler for SLA events) through the small
``observe_*`` methods of :class:`Metrics`. Queue depth and the age of the
oldest waiting item are *not* counted as they change: :class:`QueueCollector`
asks the database at scrape time, so the figure is right even with several
instances sharing one PostgreSQL and after a restart.

Nothing is global: a :class:`Metrics` owns its own ``CollectorRegistry`` and is
passed to whoever reports into it, so tests and several daemons in one process
never see each other's numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailticket import log
from mailticket.model import utc_now
from mailticket.store.schema import OutboxItem, QueueState, SpoolItem

_log = log.get("metrics")

# States worth a gauge: the ones an admin acts on. Finished rows (done,
# rejected, dropped) only grow; the event counters already cover them.
WATCHED_STATES = (
    QueueState.QUEUED,
    QueueState.CLAIMED,
    QueueState.QUARANTINED,
    QueueState.FAILED,
)
# Mail handling takes milliseconds to seconds; relays can take up to their timeout.
PIPELINE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)



class QueueCollector(Collector):
    """Queue depth per state and oldest waiting item age, read from the database per scrape.

    A database that cannot be read must not break the scrape (the other
    metrics still matter most then): ``mailticket_database_up`` says 0 instead.
    """

    def __init__(
        self, factory: sessionmaker[Session], clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._factory = factory
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """Yield the gauges (called by prometheus_client for each scrape)."""
        up = GaugeMetricFamily(
            "mailticket_database_up", "1 if the queue figures could be read from the database"
        )
        depth = GaugeMetricFamily(
            "mailticket_queue_depth",
            "Rows in a work queue by state (finished rows are not counted)",
            labels=["queue", "state"],
        )
        age = GaugeMetricFamily(
            "mailticket_queue_oldest_age_seconds",
            "Age of the oldest queued or claimed row (0 when the queue is empty)",
            labels=["queue"],
        )
        try:
            figures = self._read()
        except SQLAlchemyError as exc:
            _log.warning("metrics: database unreadable", extra={"error": str(exc)[:200]})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for queue, (counts, oldest) in figures.items():
            for state in WATCHED_STATES:
                depth.add_metric([queue, state], counts.get(state, 0))
            age.add_metric([queue], oldest)
        yield from (up, depth, age)

    def _read(self) -> dict[str, tuple[dict[str, int], float]]:
        now = self._clock()
        out: dict[str, tuple[dict[str, int], float]] = {}
        with self._factory() as session:
            for queue, model in (("spool", SpoolItem), ("outbox", OutboxItem)):
                # Filtering on state first lets the (state, next_attempt_at) index
                # skip the long tail of finished rows.
                rows = session.execute(
                    select(model.state, func.count())
                    .where(model.state.in_(WATCHED_STATES))
                    .group_by(model.state)
                ).all()
                oldest = session.scalar(
                    select(func.min(model.created_at)).where(
                        model.state.in_([QueueState.QUEUED, QueueState.CLAIMED])
                    )
                )
                seconds = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
                out[queue] = ({state: int(n) for state, n in rows}, seconds)
        return out


class Metrics:
    """All of mailticket's collectors, in one registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._queues: QueueCollector | None = None
        r = self.registry
        self.mail_in = Counter(
            "mailticket_mail_received", "Mail accepted into the spool", ["source"], registry=r
        )
        self.mail_processed = Counter(
            "mailticket_mail_processed", "Spool items finished, by outcome", ["outcome"],
            registry=r,
        )
        self.mail_out = Counter(
            "mailticket_mail_sent", "Outbox mail handed to the relay", ["kind"], registry=r
        )
        self.mail_rejected = Counter(
            "mailticket_mail_rejected", "Mail refused (SMTP or pipeline), by reason", ["reason"],
            registry=r,
        )
        self.mail_quarantined = Counter(
            "mailticket_mail_quarantined", "Spool items quarantined, by reason", ["reason"],
            registry=r,
        )
        self.sla_events = Counter(
            "mailticket_sla_events", "SLA warnings and breaches recorded", ["timer", "kind"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "mailticket_delivery_failures",
            "Relay attempts that failed (temporary: retried; permanent: given up)",
            ["kind"],
            registry=r,
        )
        self.imap_polls = Counter(
            "mailticket_imap_polls", "IMAP polls by account and outcome (ok or the fault kind)",
            ["account", "outcome"], registry=r,
        )
        self.pipeline_seconds = Histogram(
            "mailticket_pipeline_seconds", "Time to process one spool item",
            buckets=PIPELINE_BUCKETS, registry=r,
        )
        self.relay_seconds = Histogram(
            "mailticket_relay_seconds", "Time to hand one outbox row to the relay",
            buckets=RELAY_BUCKETS, registry=r,
        )

    def watch_queues(
        self, factory: sessionmaker[Session], clock: Callable[[], datetime] = utc_now
    ) -> None:
        """Add the scrape-time queue gauges for ``factory`` (once; later calls are no-ops)."""
        if self._queues is None:
            self._queues = QueueCollector(factory, clock)
            self.registry.register(self._queues)

    def observe_received(self, source: str) -> None:
        """One mail committed to the spool (``smtp``, ``lmtp``, ``submission``, ``imap``,
        ``imap-oversize``)."""
        self.mail_in.labels(source=source).inc()

    def observe_processed(self, state: str, code: str, seconds: float) -> None:
        """One spool item finished by the worker, with the pipeline Outcome's state and code.

        A ``rejected`` outcome also counts as a rejection and a ``quarantined``
        one as a quarantine, both with the outcome code as the reason.
        """
        self.mail_processed.labels(outcome=code).inc()
        self.pipeline_seconds.observe(seconds)
        if state == QueueState.REJECTED:
            self.mail_rejected.labels(reason=code).inc()
        elif state == QueueState.QUARANTINED:
            self.mail_quarantined.labels(reason=code).inc()

    def observe_worker_failure(self, quarantined: bool, seconds: float) -> None:
        """The pipeline raised: the item is retried later, or quarantined after the last try."""
        self.pipeline_seconds.observe(seconds)
        if quarantined:
            self.mail_quarantined.labels(reason="max_attempts").inc()

    def observe_rejected(self, reason: str) -> None:
        """A refusal outside the pipeline: every 4xx/5xx the listener sends, by reason
        (``550_recipient``, ``552_too_large``, ``451_tempfail``, ``421_too_many_connections``…)."""
        self.mail_rejected.labels(reason=reason).inc()

    def observe_imap_poll(self, account: str, outcome: str) -> None:
        """One IMAP poll finished: ``ok`` or a fault kind such as ``login_failed``."""
        self.imap_polls.labels(account=account, outcome=outcome).inc()

    def observe_sent(self, kind: str, seconds: float) -> None:
        """One outbox row accepted by the relay; ``kind`` is the outbox row's kind."""
        self.mail_out.labels(kind=kind).inc()
        self.relay_seconds.observe(seconds)

    def observe_delivery_failure(self, permanent: bool, seconds: float) -> None:
        """One relay attempt failed; ``permanent`` for 5xx (given up), else it is retried."""
        self.delivery_failures.labels(kind="permanent" if permanent else "temporary").inc()
        self.relay_seconds.observe(seconds)

    def observe_sla_event(self, timer: str, kind: str) -> None:
        """One SLA event row inserted (``timer`` first_response/resolution, ``kind`` warning/breach)."""
        self.sla_events.labels(timer=timer, kind=kind).inc()


@dataclass
class MetricsServer:
    """The running ``/metrics`` HTTP endpoint; ``close()`` stops it."""

    metrics: Metrics
    httpd: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        return int(self.httpd.server_port)

    def close(self) -> None:
        """Stop serving and release the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def start_metrics_server(
    host: str,
    port: int,
    factory: sessionmaker[Session],
    metrics: Metrics | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> MetricsServer:
    """Serve ``metrics`` (a new :class:`Metrics` when None) on ``http://host:port/metrics``.

    The queue gauges read ``factory``'s database at each scrape. Bind to
    127.0.0.1 unless the scraper is remote: the figures reveal traffic volume.
    """
    metrics = metrics or Metrics()
    metrics.watch_queues(factory, clock)
    httpd, thread = start_http_server(port, addr=host, registry=metrics.registry)
    _log.info("metrics endpoint started", extra={"host": host, "port": httpd.server_port})
    return MetricsServer(metrics, httpd, thread)
