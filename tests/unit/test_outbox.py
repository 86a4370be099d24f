"""The outbox relay: rows leave only when the broker confirmed them, in order, once per relay."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from lianhu.bus import OutboxRelay, PublishFailed, enqueue, outbox_table
from lianhu.db import make_engine, make_metadata, make_session_factory
from lianhu.events import Reporter, ReportSubmitted, utcnow


@pytest.fixture
def store(database_url):
    metadata = make_metadata()
    table = outbox_table(metadata)
    engine = make_engine(database_url)
    metadata.create_all(engine)
    yield make_session_factory(engine), table
    engine.dispose()


def event(n: int) -> ReportSubmitted:
    return ReportSubmitted(
        report_id=f"r{n}",
        text=f"report {n}",
        reporter=Reporter(username="u", role="liaison_worker"),
        submitted_at=utcnow(),
    )


class FlakyBroker:
    def __init__(self, fail_at: set[int] | None = None):
        self.fail_at = fail_at or set()
        self.published: list[tuple[str, str, dict]] = []
        self.calls = 0

    def publish(self, exchange: str, routing_key: str, body: bytes, message_id: str) -> None:
        self.calls += 1
        if self.calls in self.fail_at:
            raise PublishFailed("broker away")
        self.published.append((exchange, routing_key, json.loads(body)))


def add(sessions, table, events) -> None:
    with sessions.begin() as session:
        for e in events:
            enqueue(session, table, e)


def test_relay_publishes_in_order_and_marks_rows_sent(store):
    sessions, table = store
    add(sessions, table, [event(n) for n in range(5)])
    broker = FlakyBroker()
    assert OutboxRelay(sessions, table, broker.publish, service="test").relay_once() == 5
    assert [p[2]["report_id"] for p in broker.published] == [f"r{n}" for n in range(5)]
    assert {(p[0], p[1]) for p in broker.published} == {("intake.events", "report_submitted")}
    assert OutboxRelay(sessions, table, broker.publish, service="test").relay_once() == 0
    with sessions() as session:
        assert session.execute(select(table.c.sent_at).where(table.c.sent_at.is_(None))).all() == []


def test_unconfirmed_row_stays_with_its_error_and_is_sent_later(store):
    sessions, table = store
    add(sessions, table, [event(n) for n in range(3)])
    broker = FlakyBroker(fail_at={2})
    relay = OutboxRelay(sessions, table, broker.publish, service="test")
    with pytest.raises(PublishFailed):
        relay.relay_once()
    assert [p[2]["report_id"] for p in broker.published] == ["r0"]
    with sessions() as session:
        failed = session.execute(
            select(table.c.attempts, table.c.last_error).where(table.c.attempts > 0)
        ).one()
    assert failed == (1, "broker away")
    assert relay.backlog()[0] == 2
    assert relay.relay_once() == 2
    assert [p[2]["report_id"] for p in broker.published] == ["r0", "r1", "r2"]
    assert relay.backlog() == (0, None)


def test_run_loop_survives_failures_and_stops(store):
    sessions, table = store
    add(sessions, table, [event(1)])
    broker = FlakyBroker(fail_at={1})
    relay = OutboxRelay(sessions, table, broker.publish, service="test")
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop, 0.05, 0.1))
    thread.start()
    try:
        for _ in range(200):
            if broker.published:
                break
            stop.wait(0.02)
    finally:
        stop.set()
        relay.wake.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert [p[2]["report_id"] for p in broker.published] == ["r1"]
    assert relay.broker_ok


def test_relay_reports_its_backlog_and_what_it_published(store):
    sessions, table = store
    service = f"test-{uuid.uuid4().hex}"  # counters are per process: a label of this test's own
    relay = OutboxRelay(sessions, table, FlakyBroker(fail_at={2}).publish, service=service)
    assert relay.gauges() == [
        ("lianhu_outbox_backlog", {"service": service}, 0),
        ("lianhu_outbox_oldest_age_seconds", {"service": service}, 0.0),
    ]
    add(sessions, table, [event(n) for n in range(3)])
    (_, _, backlog), (_, _, age) = relay.gauges()
    assert backlog == 3 and age >= 0

    def counted(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"service": service}) or 0.0

    with pytest.raises(PublishFailed):
        relay.relay_once()
    assert counted("lianhu_outbox_published_total") == 1
    assert counted("lianhu_outbox_publish_failures_total") == 1
    assert relay.relay_once() == 2
    assert counted("lianhu_outbox_published_total") == 3
    assert relay.gauges()[0][2] == 0
