"""Metrics: observe_* counters, scrape-time queue gauges, and the HTTP endpoint."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from sqlalchemy.orm import Session, sessionmaker

from mailticket.metrics import Metrics, start_metrics_server
from mailticket.store.db import make_engine, make_sessionmaker, transaction
from mailticket.store.schema import Base, OutboxItem, QueueState, SpoolItem

NOW = datetime(2026, 11, 20, 16, 50, tzinfo=UTC)


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    Base.metadata.create_all(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def _spool(factory: sessionmaker[Session], state: str, created: datetime) -> None:
    with transaction(factory) as s:
        s.add(SpoolItem(source="smtp", mail_from="a@b.example", rcpt_tos=["s@p.example"],
                        raw=b"x", size=1, state=state, next_attempt_at=created,
                        created_at=created))


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_observe_processed_counts_outcomes_rejections_and_quarantines() -> None:
    m = Metrics()
    m.observe_processed(QueueState.DONE, "new", 0.02)
    m.observe_processed(QueueState.DONE, "new", 0.2)
    m.observe_processed(QueueState.REJECTED, "unknown_sender", 0.01)
    m.observe_processed(QueueState.QUARANTINED, "unparseable", 0.01)
    m.observe_worker_failure(quarantined=True, seconds=3.0)
    m.observe_worker_failure(quarantined=False, seconds=3.0)
    assert _sample(m, "mailticket_mail_processed_total", outcome="new") == 2
    assert _sample(m, "mailticket_mail_rejected_total", reason="unknown_sender") == 1
    assert _sample(m, "mailticket_mail_quarantined_total", reason="unparseable") == 1
    assert _sample(m, "mailticket_mail_quarantined_total", reason="max_attempts") == 1
    assert _sample(m, "mailticket_pipeline_seconds_count") == 6
    assert _sample(m, "mailticket_pipeline_seconds_bucket", le="0.025") == 3
    assert _sample(m, "mailticket_pipeline_seconds_sum") == pytest.approx(6.24)


def test_observe_intake_relay_and_sla() -> None:
    m = Metrics()
    m.observe_received("smtp")
    m.observe_received("imap")
    m.observe_received("smtp")
    m.observe_rejected("552_too_large")
    m.observe_sent("ack", 0.3)
    m.observe_delivery_failure(permanent=True, seconds=0.1)
    m.observe_delivery_failure(permanent=False, seconds=30.0)
    m.observe_sla_event("first_response", "breach")
    assert _sample(m, "mailticket_mail_received_total", source="smtp") == 2
    assert _sample(m, "mailticket_mail_received_total", source="imap") == 1
    assert _sample(m, "mailticket_mail_rejected_total", reason="552_too_large") == 1
    assert _sample(m, "mailticket_mail_sent_total", kind="ack") == 1
    assert _sample(m, "mailticket_delivery_failures_total", kind="permanent") == 1
    assert _sample(m, "mailticket_delivery_failures_total", kind="temporary") == 1
    assert _sample(m, "mailticket_relay_seconds_count") == 3
    assert _sample(m, "mailticket_relay_seconds_bucket", le="0.25") == 1
    assert _sample(m, "mailticket_sla_events_total", timer="first_response", kind="breach") == 1


def test_two_instances_do_not_share_figures() -> None:
    a, b = Metrics(), Metrics()
    a.observe_received("smtp")
    assert _sample(b, "mailticket_mail_received_total", source="smtp") is None


def test_queue_gauges_are_read_at_scrape_time(factory: sessionmaker[Session]) -> None:
    m = Metrics()
    m.watch_queues(factory, clock=lambda: NOW)
    m.watch_queues(factory, clock=lambda: NOW)  # a second call must not register twice
    assert _sample(m, "mailticket_queue_depth", queue="spool", state="queued") == 0
    assert _sample(m, "mailticket_queue_oldest_age_seconds", queue="spool") == 0
    _spool(factory, QueueState.QUEUED, NOW - timedelta(minutes=10))
    _spool(factory, QueueState.CLAIMED, NOW - timedelta(minutes=3))
    _spool(factory, QueueState.QUARANTINED, NOW - timedelta(days=2))
    _spool(factory, QueueState.DONE, NOW - timedelta(days=9))
    assert _sample(m, "mailticket_database_up") == 1
    assert _sample(m, "mailticket_queue_depth", queue="spool", state="queued") == 1
    assert _sample(m, "mailticket_queue_depth", queue="spool", state="claimed") == 1
    assert _sample(m, "mailticket_queue_depth", queue="spool", state="quarantined") == 1
    assert _sample(m, "mailticket_queue_depth", queue="spool", state="done") is None
    assert _sample(m, "mailticket_queue_depth", queue="outbox", state="failed") == 0
    assert _sample(m, "mailticket_queue_oldest_age_seconds", queue="spool") == 600


def test_unreadable_database_reports_down(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables at all
    m = Metrics()
    m.watch_queues(make_sessionmaker(engine), clock=lambda: NOW)
    text = generate_latest(m.registry).decode()
    assert "mailticket_database_up 0.0" in text
    assert "mailticket_queue_depth" not in text
    engine.dispose()


def test_http_endpoint_serves_the_registry(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        s.add(OutboxItem(kind="ack", envelope_from="s@p.example", rcpt_tos=["a@b.example"],
                         message_id="m@x", raw=b"x", next_attempt_at=NOW,
                         created_at=NOW - timedelta(seconds=90)))
    server = start_metrics_server("127.0.0.1", 0, factory, clock=lambda: NOW)
    try:
        server.metrics.observe_received("lmtp")
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            body = r.read().decode()
        assert 'mailticket_mail_received_total{source="lmtp"} 1.0' in body
        assert 'mailticket_queue_depth{queue="outbox",state="queued"} 1.0' in body
        assert 'mailticket_queue_oldest_age_seconds{queue="outbox"} 90.0' in body
    finally:
        server.close()
