"""Prometheus metrics of every Lianhu process, and the figures services compute when scraped.

The gateway serves them at ``/metrics`` on its own port; each nameko process serves them on
``LIANHU_METRICS_PORT`` (``lianhu.nameko_ext.ObservedContainer``). Labels are small closed sets
(queue, route, township, category …), never ids: one series per report would sink Prometheus.

Three kinds of metric live here:

- what the kit records itself (HTTP requests, event consumers, RPC and timer entrypoints, the
  outbox relay, queue depths);
- what a service records through objects defined here, so alert rules and dashboards can name them
  before the service does (routing's reports, escalations and resolutions; notify's deliveries);
- gauges a service computes from its own database at scrape time (:class:`ScrapeGauges`, e.g.
  routing's open and overdue cases by township: :data:`CASE_GAUGES`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)


class MetricsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIANHU_", extra="ignore")

    # Where a nameko process serves /metrics; unset: nowhere (tests, several services on one host
    # without a port each). The gateway always serves them on its own HTTP port.
    metrics_port: int | None = None


# Buckets at the targets: the gateway answers in tens of milliseconds, a report reaches its inboxes
# within 2 s (speech has buckets of its own: services/speech/metrics.py).
HTTP_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PIPELINE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

# --- the gateway ----------------------------------------------------------------------------------

HTTP_REQUESTS = Counter("lianhu_http_requests", "Gateway requests answered", ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "lianhu_http_request_duration_seconds",
    "Gateway request duration, from the first byte in to the last byte out",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)

# --- nameko entrypoints (lianhu.nameko_ext) -------------------------------------------------------

ENTRYPOINT_DURATION = Histogram(
    "lianhu_entrypoint_duration_seconds",
    "Duration of an RPC method or timer of a nameko service",
    ["service", "kind", "method"],
    buckets=HANDLER_BUCKETS,
)
ENTRYPOINT_FAILURES = Counter(
    "lianhu_entrypoint_failures", "RPC methods and timers that raised", ["service", "kind", "method"]
)

# --- event consumers, by work queue (lianhu.nameko_ext.EventSubscriber) -------------------------------

EVENTS_CONSUMED = Counter("lianhu_events_consumed", "Deliveries handed to a handler", ["queue"])
EVENTS_REDELIVERED = Counter(
    "lianhu_events_redelivered",
    "Deliveries the broker made again because a consumer went away before acking",
    ["queue"],
)
EVENTS_FAILED = Counter(
    "lianhu_events_failed",
    "Handler failures; transient ones (an outage) are retried for as long as it lasts",
    ["queue", "transient"],
)
EVENTS_RETRIED = Counter("lianhu_events_retried", "Failed deliveries put back for another try", ["queue"])
EVENTS_DEAD_LETTERED = Counter(
    "lianhu_events_dead_lettered",
    "Messages parked in <queue>.dead: contract (bad payload), failures (limit reached), crashes",
    ["queue", "reason"],
)
EVENT_HANDLER_DURATION = Histogram(
    "lianhu_event_handler_duration_seconds",
    "Time an event handler took, failures included, retry pauses not",
    ["queue"],
    buckets=HANDLER_BUCKETS,
)
REPORT_LATENCY = Histogram(
    "lianhu_report_latency_seconds",
    "From a report's submission to a handler done with one of its events "
    "(queue notify.report_routed: the report is in its inboxes)",
    ["queue"],
    buckets=PIPELINE_BUCKETS,
)

# --- the outbox relay (lianhu.bus) ------------------------------------------------------------------

OUTBOX_PUBLISHED = Counter("lianhu_outbox_published", "Outbox rows confirmed by the broker", ["service"])
OUTBOX_PUBLISH_FAILURES = Counter(
    "lianhu_outbox_publish_failures", "Outbox publishing passes that failed (broker away)", ["service"]
)

# --- what routing and notify record (the contract the rules and dashboards rely on) -----------------
# Labels: category and urgency as in the rules file; township = the name of the township (乡镇) the
# matter lies in, "county" for a matter of the county as a whole; level = the level a case was
# escalated to (township, county, department); on_time = "true" | "false".

REPORTS_ROUTED = Counter(
    "lianhu_reports_routed",
    "Reports routed for the first time (one per report, not per revision)",
    ["category", "urgency"],
)
CASE_ESCALATIONS = Counter(
    "lianhu_case_escalations", "Cases escalated to a higher level", ["township", "level"]
)
CASES_RESOLVED = Counter("lianhu_cases_resolved", "Cases resolved, on time or not", ["township", "on_time"])
NOTIFICATIONS_SENT = Counter("lianhu_notifications_sent", "Notifications delivered, by channel", ["channel"])
NOTIFICATIONS_FAILED = Counter(
    "lianhu_notifications_failed", "Notifications that could not be delivered, by channel", ["channel"]
)


# --- gauges read at scrape time ---------------------------------------------------------------------


@dataclass(frozen=True)
class GaugeSpec:
    """A gauge family a :class:`ScrapeGauges` yields: its name, help text and label names."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()

    def family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labels)


# One value: (gauge name, {label: value}, value).
Sample = tuple[str, dict[str, str], float]

CASE_GAUGES = (
    GaugeSpec("lianhu_cases_open", "Cases not yet resolved", ("township", "urgency")),
    GaugeSpec("lianhu_cases_overdue", "Open cases past their current deadline", ("township", "urgency")),
)
OUTBOX_GAUGES = (
    GaugeSpec("lianhu_outbox_backlog", "Outbox rows not yet confirmed by the broker", ("service",)),
    GaugeSpec(
        "lianhu_outbox_oldest_age_seconds", "Age of the oldest unsent outbox row (0: none)", ("service",)
    ),
)
QUEUE_GAUGES = (
    GaugeSpec("lianhu_queue_messages", "Messages ready in a work queue", ("queue",)),
    GaugeSpec("lianhu_queue_consumers", "Consumers reading a work queue", ("queue",)),
    GaugeSpec("lianhu_dead_letters", "Messages parked in the work queue's <queue>.dead", ("queue",)),
)


def _direct(work: Callable[[], Any]) -> Any:
    return work()


class ScrapeGauges(Collector):
    """Gauges computed by ``read()`` when Prometheus scrapes, reused for ``ttl_seconds``.

    ``read`` returns :data:`Sample` tuples for the families in ``specs``; anything else is a bug and
    is dropped with an error in the log. ``run`` runs ``read`` (e.g. off nameko's hub). A failing
    read leaves the families out of the scrape (an absent series, which alert rules can see) rather
    than failing the whole scrape.
    """

    def __init__(
        self,
        specs: Sequence[GaugeSpec],
        read: Callable[[], Iterable[Sample]],
        ttl_seconds: float = 5.0,
        run: Callable[[Callable[[], Any]], Any] = _direct,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.specs = {spec.name: spec for spec in specs}
        self.read = read
        self.ttl_seconds = ttl_seconds
        self.run = run
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: list[Sample] | None = None
        self._read_at = 0.0

    def describe(self) -> list[GaugeMetricFamily]:
        # Registering must not read the database: the names are known without it.
        return [spec.family() for spec in self.specs.values()]

    def _samples(self) -> list[Sample] | None:
        with self._lock:
            now = self.clock()
            if self._cached is None or now - self._read_at >= self.ttl_seconds:
                try:
                    self._cached = list(self.run(lambda: list(self.read())))
                except Exception:  # a scrape must survive a database or broker that is away
                    log.warning("could not read %s", ", ".join(self.specs), exc_info=True)
                    self._cached = None
                    return None
                self._read_at = now
            return self._cached

    def collect(self) -> Iterable[GaugeMetricFamily]:
        samples = self._samples()
        if samples is None:
            return
        families = {name: spec.family() for name, spec in self.specs.items()}
        for name, labels, value in samples:
            spec = self.specs.get(name)
            if spec is None or set(labels) != set(spec.labels):
                log.error("dropping sample %s%s: not one of %s", name, sorted(labels), sorted(self.specs))
                continue
            families[name].add_metric([str(labels[label]) for label in spec.labels], float(value))
        yield from families.values()


_installed: dict[str, Collector] = {}
_install_lock = threading.Lock()


def install(key: str, collector: Collector, registry: CollectorRegistry = REGISTRY) -> Collector:
    """Register ``collector`` under ``key``, replacing one installed earlier under the same key (a
    restarted container, another app in the same test process)."""
    with _install_lock:
        previous = _installed.pop(key, None)
        if previous is not None:
            registry.unregister(previous)
        registry.register(collector)
        _installed[key] = collector
    return collector


def uninstall(key: str, registry: CollectorRegistry = REGISTRY) -> None:
    with _install_lock:
        collector = _installed.pop(key, None)
        if collector is not None:
            registry.unregister(collector)
