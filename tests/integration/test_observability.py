"""The kit's observability in real nameko containers on the real broker.

Two small services run in :class:`ObservedContainer`, as ``deploy/nameko.yaml`` makes every service
run: ``probe`` handles ``speech.report_submitted`` and asks ``peer`` over RPC who it is working for.
Metrics are read from the process registry (deltas, so other tests' figures do not matter) and once
from the metrics server itself; nothing here waits on a clock.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from kombu import Connection
from nameko.rpc import RpcProxy, rpc
from nameko.testing.services import entrypoint_waiter
from nameko.testing.utils import get_container
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text

from lianhu import logs
from lianhu.bus import ConfirmedPublisher
from lianhu.config import kit_settings
from lianhu.events import Reporter, ReportSubmitted, utcnow
from lianhu.metrics import GaugeSpec
from lianhu.nameko_ext import DatabaseGauges, call_rpc, subscribe
from lianhu.topology import declare, subscription
from tests.support.platform import free_port

QUEUE = subscription("speech", ReportSubmitted)
OBSERVED = "lianhu.nameko_ext.ObservedContainer"
HANDLED: list[dict] = []
# One metrics server per process, as in production: every test of this module scrapes it here.
METRICS_PORT = free_port()
SPEC = GaugeSpec("lianhu_test_rows", "Rows of the probe's table by colour", ("colour",))


class Broken(Exception):
    """A bug in a handler: not transient, so it is dead-lettered once the limit is reached."""


def rows_by_colour(session) -> list:
    return [
        (SPEC.name, {"colour": colour}, count)
        for colour, count in session.execute(text("SELECT colour, count(*) FROM things GROUP BY colour"))
    ]


class Peer:
    name = "peer"

    @rpc
    def whoami(self) -> dict:
        return logs.current()


class Probe:
    name = "probe"

    peer = RpcProxy("peer")
    figures = DatabaseGauges("probe", [SPEC], rows_by_colour)

    @subscribe("speech", ReportSubmitted)
    def handle(self, event: ReportSubmitted) -> None:
        if event.text == "break":
            raise Broken("a bug")
        HANDLED.append({"here": logs.current(), "peer": call_rpc(self.peer.whoami)})


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def observed(lianhu_env, runner_factory, monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'probe.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE things (colour TEXT)"))
        connection.execute(text("INSERT INTO things VALUES ('red'), ('red'), ('blue')"))
    engine.dispose()
    monkeypatch.setenv("LIANHU_PROBE_DATABASE_URL", url)
    monkeypatch.setenv("LIANHU_METRICS_PORT", str(METRICS_PORT))
    monkeypatch.setenv("LIANHU_DELIVERY_LIMIT", "1")
    kit_settings.cache_clear()
    declare(kit_settings())
    with Connection(kit_settings().amqp_uri) as connection:
        connection.default_channel.queue_purge(QUEUE.queue)
        connection.default_channel.queue_purge(QUEUE.dead_letter_queue)
    runner = runner_factory({**lianhu_env, "SERVICE_CONTAINER_CLS": OBSERVED}, Probe, Peer)
    runner.start()
    publisher = ConfirmedPublisher(kit_settings())
    HANDLED.clear()
    yield {"runner": runner, "publisher": publisher}
    publisher.close()


def submit(observed, text: str = "牛病了") -> ReportSubmitted:
    event = ReportSubmitted(
        report_id=f"r-{utcnow().timestamp()}",
        text=text,
        reporter=Reporter(username="w", role="liaison_worker"),
        submitted_at=utcnow(),
    )
    probe = get_container(observed["runner"], Probe)
    with entrypoint_waiter(probe, "handle"):
        body = json.dumps(event.to_wire()).encode()
        observed["publisher"].publish("intake.events", "report_submitted", body, event.event_id)
    return event


def test_the_report_id_follows_the_event_into_the_handler_and_over_rpc(observed):
    event = submit(observed)
    (seen,) = HANDLED
    assert seen["here"] == {"service": "probe", "report_id": event.report_id}
    # The RPC request carried it in its nameko headers: the peer's worker logs it too.
    assert seen["peer"] == {"service": "peer", "report_id": event.report_id}


def test_a_handled_event_is_counted_timed_and_its_report_age_observed(observed):
    queue = {"queue": QUEUE.queue}
    before = {
        name: sample(name, **queue)
        for name in (
            "lianhu_events_consumed_total",
            "lianhu_event_handler_duration_seconds_count",
            "lianhu_report_latency_seconds_count",
        )
    }
    rpc_before = sample(
        "lianhu_entrypoint_duration_seconds_count", service="peer", kind="rpc", method="whoami"
    )
    # The peer answers before its worker is done: wait for that too.
    with entrypoint_waiter(get_container(observed["runner"], Peer), "whoami"):
        submit(observed)
    for name, value in before.items():
        assert sample(name, **queue) == value + 1, name
    after = sample("lianhu_entrypoint_duration_seconds_count", service="peer", kind="rpc", method="whoami")
    assert after == rpc_before + 1


def test_a_failing_handler_is_counted_and_dead_lettered(observed):
    queue = QUEUE.queue
    failed = sample("lianhu_events_failed_total", queue=queue, transient="false")
    parked = sample("lianhu_events_dead_lettered_total", queue=queue, reason="failures")
    submit(observed, "break")
    assert sample("lianhu_events_failed_total", queue=queue, transient="false") == failed + 1
    assert sample("lianhu_events_dead_lettered_total", queue=queue, reason="failures") == parked + 1


def test_the_metrics_server_shows_queue_depths_and_database_gauges(observed):
    submit(observed, "break")  # one dead letter to see
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as response:
        exposition = response.read().decode()
    lines = set(exposition.splitlines())
    assert f'lianhu_dead_letters{{queue="{QUEUE.queue}"}} 1.0' in lines
    assert f'lianhu_queue_consumers{{queue="{QUEUE.queue}"}} 1.0' in lines
    assert f'lianhu_queue_messages{{queue="{QUEUE.queue}"}} 0.0' in lines
    assert 'lianhu_test_rows{colour="red"} 2.0' in lines
    assert 'lianhu_test_rows{colour="blue"} 1.0' in lines
