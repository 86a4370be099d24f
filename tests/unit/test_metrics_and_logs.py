"""The kit's metrics and logs without a service: JSON lines that follow a report and never hold an ID
number or a secret; gauges read at scrape time; the gateway's per-route figures and access lines;
speech's figures. Counters are per process, so tests compare before and after."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from lianhu import logs, metrics
from lianhu.deadletters import depths
from lianhu.events import ReportTranscribed, TranscriptionFailed
from lianhu.metrics import GaugeSpec, ScrapeGauges
from lianhu.topology import SUBSCRIPTIONS
from services.speech import metrics as speech_metrics
from tests.unit.test_gateway import gateway  # noqa: F401 - the fixture

# --- logs ------------------------------------------------------------------------------------------


def formatted(message: str, *args, exc_info=None, **extra) -> dict:
    record = logging.LogRecord("lianhu.test", logging.INFO, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    return json.loads(logs.JsonFormatter().format(record))


def test_a_line_is_one_json_object_with_the_context_it_was_written_in():
    with logs.bound(service="routing", report_id="r-1"):
        line = formatted("routed %s", "to 江千乡", fields={"case": "c-1"})
    assert line["message"] == "routed to 江千乡"
    assert (line["level"], line["logger"]) == ("INFO", "lianhu.test")
    assert (line["service"], line["report_id"], line["case"]) == ("routing", "r-1", "c-1")
    assert "report_id" not in formatted("outside any context")


def test_an_annotation_reaches_every_line_of_its_context_and_ends_with_it():
    with logs.bound(service="intake"):
        logs.annotate(report_id="r-2")
        assert formatted("stored")["report_id"] == "r-2"
        with logs.bound(report_id="r-3"):
            assert formatted("inner")["report_id"] == "r-3"
        assert formatted("after")["report_id"] == "r-2"
    assert logs.current() == {}


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("632623199001011234", "[id-number]"),
        ("63262319900101123X", "[id-number]"),
        ("632623900101123", "[id-number]"),
        ("Bearer eyJhbGciOi.abc.def", "Bearer [token]"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "[token]"),
        ("password=hunter2", "password=[secret]"),
        ('{"password": "hunter2"}', '{"password": "[secret]"}'),
        ("amqp://lianhu:p4ss@rabbitmq:5672/", "amqp://lianhu:[secret]@rabbitmq:5672/"),
    ],
)
def test_id_numbers_tokens_and_passwords_are_masked(secret, shown):
    assert formatted("got %s", secret)["message"] == f"got {shown}"


def test_masking_reaches_tracebacks_and_spares_ordinary_numbers():
    try:
        raise ValueError("no household for 632623199001011234")
    except ValueError:
        line = formatted("failed", exc_info=sys.exc_info())
    assert "632623199001011234" not in line["error"] and "[id-number]" in line["error"]
    kept = "report r-1712345678901 at 13:05, phone 13800138000, 1136 households"
    assert formatted(kept)["message"] == kept


# --- gauges read at scrape time --------------------------------------------------------------------

SPEC = GaugeSpec("lianhu_test_widgets", "Widgets by colour", ("colour",))


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scraped(registry: CollectorRegistry) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def test_scrape_gauges_read_once_per_ttl_and_survive_a_failing_read():
    reads = []
    answers = [[("lianhu_test_widgets", {"colour": "red"}, 2)], RuntimeError("database away")]

    def read():
        reads.append(1)
        answer = answers[min(len(reads), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = Clock()
    registry = CollectorRegistry()
    metrics.install("test:widgets", ScrapeGauges([SPEC], read, ttl_seconds=5, clock=clock), registry)
    assert not reads, "registering reads nothing"
    red = ("lianhu_test_widgets", (("colour", "red"),))
    assert scraped(registry)[red] == 2
    clock.now = 4.9
    assert scraped(registry)[red] == 2 and len(reads) == 1
    clock.now = 5.0
    assert scraped(registry) == {}, "a failed read leaves the family out, and the scrape stands"
    answers[1] = [("lianhu_test_widgets", {"colour": "blue"}, 1)]
    assert scraped(registry) == {("lianhu_test_widgets", (("colour", "blue"),)): 1}
    metrics.uninstall("test:widgets", registry)
    assert scraped(registry) == {}


def test_scrape_gauges_drop_samples_outside_their_specs(caplog):
    samples = [
        ("lianhu_test_widgets", {"colour": "red"}, 1),
        ("lianhu_test_widgets", {"colour": "red", "report_id": "r-1"}, 1),  # an id as a label: a bug
        ("lianhu_unknown", {}, 1),
    ]
    registry = CollectorRegistry()
    metrics.install("test:strict", ScrapeGauges([SPEC], lambda: samples), registry)
    assert scraped(registry) == {("lianhu_test_widgets", (("colour", "red"),)): 1}
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2
    metrics.uninstall("test:strict", registry)


def test_installing_again_under_a_key_replaces_the_earlier_collector():
    registry = CollectorRegistry()
    for value in (1, 2):
        metrics.install(
            "test:again", ScrapeGauges([SPEC], lambda v=value: [(SPEC.name, {"colour": "x"}, v)]), registry
        )
    assert scraped(registry) == {("lianhu_test_widgets", (("colour", "x"),)): 2}
    metrics.uninstall("test:again", registry)


def test_queue_depths_come_from_passive_declarations():
    class Channel:
        def __init__(self):
            self.declared = []

        def queue_declare(self, name, passive):
            assert passive, "asking must never create a queue"
            self.declared.append(name)
            ready = 3 if name.endswith(".dead") else 7
            return type("Ok", (), {"message_count": ready, "consumer_count": 0 if ready == 3 else 2})()

    channel = Channel()
    speech = [sub for sub in SUBSCRIPTIONS if sub.consumer == "speech"]
    (depth,) = depths(channel, speech)
    assert (depth.sub.queue, depth.ready, depth.consumers, depth.dead) == ("speech.report_submitted", 7, 2, 3)
    assert channel.declared == ["speech.report_submitted", "speech.report_submitted.dead"]


# --- the gateway -----------------------------------------------------------------------------------


def requests(method: str, route: str, status: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "lianhu_http_requests_total", {"method": method, "route": route, "status": status}
        )
        or 0.0
    )


def test_requests_are_counted_by_route_template_never_by_path(gateway):  # noqa: F811
    headers = gateway.token()
    before = requests("GET", "/v1/reports/{report_id}", "404")
    unmatched = requests("GET", "unmatched", "404")
    for report_id in ("a", "b", "c"):
        assert gateway.client.get(f"/v1/reports/{report_id}", headers=headers).status_code == 404
    gateway.client.get("/no/such/path/123")
    assert requests("GET", "/v1/reports/{report_id}", "404") == before + 3
    assert requests("GET", "unmatched", "404") == unmatched + 1
    timed = REGISTRY.get_sample_value(
        "lianhu_http_request_duration_seconds_count", {"method": "GET", "route": "/v1/reports/{report_id}"}
    )
    assert timed >= 3


def test_the_gateway_publishes_its_outbox_backlog(gateway):  # noqa: F811
    assert REGISTRY.get_sample_value("lianhu_outbox_backlog", {"service": "intake"}) is not None
    assert REGISTRY.get_sample_value("lianhu_outbox_oldest_age_seconds", {"service": "intake"}) is not None
    exposition = gateway.client.get("/metrics").text
    assert (
        "lianhu_http_requests_total{" in exposition
        and 'lianhu_outbox_backlog{service="intake"}' in exposition
    )


def test_a_report_request_leaves_an_access_line_with_its_report_and_no_query(gateway):  # noqa: F811
    # Formatted as it is written, as the services' stderr handler does: the context is the request's.
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(logs.JsonFormatter())
    access = logging.getLogger("lianhu.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        headers = gateway.token()
        created = gateway.client.post("/v1/reports", json={"text": "牛生病了"}, headers=headers)
        assert created.status_code == 201, created.text
        report_id = created.json()["id"]
        gateway.client.get(f"/v1/reports/{report_id}?reason=632623199001011234", headers=headers)
        gateway.client.get("/healthz")
    finally:
        access.removeHandler(handler)
        access.setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("POST", "/v1/reports", 201),
        ("GET", "/v1/reports/{report_id}", 200),
    ], "a line for each request about a report; the rest are in the metrics"
    assert {line["report_id"] for line in lines} == {report_id}
    assert all(line["service"] == "intake" and line["duration_ms"] >= 0 for line in lines)
    assert "632623199001011234" not in written.getvalue()


# --- speech ----------------------------------------------------------------------------------------


def test_speech_counts_outcomes_and_its_real_time_factor():
    def value(name: str, **labels) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    done = value("lianhu_transcriptions_total", language="zh", outcome="done")
    audio = value("lianhu_speech_audio_seconds_total", language="zh")
    rtf_sum = value("lianhu_speech_real_time_factor_sum", language="zh")
    no_model = value("lianhu_transcriptions_total", language="bo", outcome="no_model")
    speech_metrics.observe(
        ReportTranscribed(
            report_id="r",
            text="",
            language="zh",
            engine="vosk",
            model="m",
            audio_seconds=4.0,
            decode_seconds=1.0,
        )
    )
    speech_metrics.observe(TranscriptionFailed(report_id="r", language="bo", reason="no_model"))
    assert value("lianhu_transcriptions_total", language="zh", outcome="done") == done + 1
    assert value("lianhu_speech_audio_seconds_total", language="zh") == audio + 4.0
    assert value("lianhu_speech_real_time_factor_sum", language="zh") == pytest.approx(rtf_sum + 0.25)
    assert value("lianhu_transcriptions_total", language="bo", outcome="no_model") == no_model + 1
