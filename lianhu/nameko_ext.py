"""nameko building blocks shared by the services: a database dependency and an event subscriber.

nameko acks a message whose handler raised, which would lose it. :class:`EventSubscriber` never
lets a failure lose a message:

- a *transient* failure (a peer or the database away, an RPC timeout) is retried for as long as
  it lasts, with a growing pause: an outage must delay reports, not park them;
- any other failure (a bug, a record that cannot be stored) is retried ``LIANHU_DELIVERY_LIMIT``
  times, then dead-lettered to the visible ``<queue>.dead``, from where ``lianhu redrive``
  returns it after a fix;
- a payload that does not fit its contract is dead-lettered at once;
- a message that keeps killing its consumer process (the broker's own delivery count on quorum
  queues) is dead-lettered on arrival.

Retries are republished copies carrying their counts in headers (the original is acked after the
copy is confirmed), so they work on classic queues too and never exhaust the broker's count.

Observability comes with the kit: :class:`ObservedContainer` (``SERVICE_CONTAINER_CLS`` in
``deploy/nameko.yaml``) serves ``/metrics`` on ``LIANHU_METRICS_PORT``, times every RPC method and
timer, reports the depth of the service's queues and logs every worker with the report it is about;
the subscriber counts what happens to each message; :class:`DatabaseGauges` lets a service publish
figures read from its own database at scrape time.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import eventlet
import eventlet.semaphore
import eventlet.tpool
import eventlet.wsgi
from kombu import Connection
from kombu.pools import producers
from nameko.containers import ServiceContainer
from nameko.exceptions import ContainerBeingKilled, RemoteError, UnknownService
from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer
from nameko.rpc import Rpc, RpcConsumer
from nameko.timer import Timer
from prometheus_client import make_wsgi_app
from pydantic import ValidationError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, configure_mappers
from sqlalchemy.pool import NullPool

from lianhu import logs, metrics
from lianhu.config import kit_settings
from lianhu.db import make_engine, make_read_session_factory, make_session_factory
from lianhu.deadletters import depths
from lianhu.events import Event, utcnow
from lianhu.topology import Subscription, declare, subscription, work_queue

log = logging.getLogger(__name__)

MAX_RETRY_PAUSE_SECONDS = 30.0
T = TypeVar("T")


class RpcTimeout(Exception):
    """A peer did not answer in time (an ordinary exception, so the message is retried)."""


class NotYet(Exception):
    """The event refers to something not recorded here yet (a transcript that outran its report's
    routing): retried, like an outage, until it is."""


def in_native_thread(work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` in one of eventlet's native threads, with the caller's log context."""
    return eventlet.tpool.execute(contextvars.copy_context().run, work, *args)


class Sessions:
    """A service's database for one worker: ``with db() as s`` reads, ``with db.begin() as s`` writes,
    ``db.off_hub(work)`` runs long or lock-waiting work away from the hub."""

    def __init__(self, provider: Database):
        self._provider = provider

    def __call__(self) -> Session:
        # Read-only: on SQLite it takes no write lock, so reads go on while a writer holds it.
        return self._provider.read_sessions()

    def begin(self) -> AbstractContextManager[Session]:
        return self._provider.sessions.begin()

    def off_hub(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work(sessionmaker, *args)`` in a native thread, one such work at a time.

        The database drivers block in C: a write that waits for a lock, or an import that runs for a
        minute, would freeze every other worker and the broker heartbeats on the eventlet hub. The
        native thread gets its own engine without a pool, so it never shares a lock with the hub's
        threads; one at a time, because a registry write serialises on the database anyway.
        """
        with self._provider.off_hub_turn:
            return in_native_thread(work, self._provider.off_hub_sessions, *args)


class Database(DependencyProvider):
    """Gives each worker the service's :class:`Sessions`."""

    def __init__(self, service: str):
        self.service = service

    def setup(self) -> None:
        # The ORM configures its mappers on first use, under a lock that eventlet makes green: a
        # first query in a native thread (off_hub, a clock's first tick) racing one on the hub would
        # switch greenlets across threads. Configured here, on the hub, before any worker runs.
        configure_mappers()
        url = kit_settings().database_url(self.service)
        self.engine = make_engine(url)
        self.sessions = make_session_factory(self.engine)
        self.read_sessions = make_read_session_factory(self.engine)
        self.off_hub_engine = make_engine(url, poolclass=NullPool)
        self.off_hub_sessions = make_session_factory(self.off_hub_engine)
        self.off_hub_turn = eventlet.semaphore.Semaphore(1)

    def stop(self) -> None:
        self.engine.dispose()
        self.off_hub_engine.dispose()

    def get_dependency(self, worker_ctx) -> Sessions:
        return Sessions(self)


class Topology(DependencyProvider):
    """Declares the broker topology when the service starts: no event may find its queue missing."""

    def setup(self) -> None:
        declare(kit_settings())


RETRIES_HEADER = "x-lianhu-retries"
FAILURES_HEADER = "x-lianhu-failures"

# Errors that say "not now" rather than "never": the message waits for the outage to end.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RpcTimeout,
    NotYet,
    UnknownService,
    OperationalError,
    InterfaceError,
    DisconnectionError,
    ConnectionError,
    TimeoutError,
)
TRANSIENT_REMOTE_ERRORS = {"OperationalError", "InterfaceError", "DisconnectionError", "RpcTimeout"}


def is_transient(error: BaseException) -> bool:
    if isinstance(error, RemoteError):
        return error.exc_type in TRANSIENT_REMOTE_ERRORS
    return isinstance(error, TRANSIENT_ERRORS)


def retry_pause(attempt: int) -> float:
    return min(0.5 * 2 ** (attempt - 1), MAX_RETRY_PAUSE_SECONDS)


class EventSubscriber(Consumer):
    """Consume one event type from the service's declared work queue; never lose a message.

    The report an event is about (its ``report_id`` and ``submitted_at``) joins the worker's context:
    it is logged with every line the handler writes and travels, as nameko headers, with every event
    and RPC call the handler makes, so the next service knows it too.
    """

    def __init__(self, consumer: str, event: type[Event], **kwargs):
        self.subscription = subscription(consumer, event)
        self.event = event
        super().__init__(queue=None, requeue_on_error=True, **kwargs)

    def setup(self) -> None:
        settings = kit_settings()
        self.queue = work_queue(settings, self.subscription)
        self.delivery_limit = settings.delivery_limit
        # A separate connection for republishing retries, with publisher confirms.
        self.retry_connection = Connection(settings.amqp_uri, transport_options={"confirm_publish": True})
        super().setup()

    def stop(self) -> None:
        super().stop()
        self.retry_connection.release()

    def _dead_letter(self, message, reason: str, why: str) -> None:
        log.error("dead-lettering a message of %s: %s", self.subscription.queue, why)
        metrics.EVENTS_DEAD_LETTERED.labels(self.subscription.queue, reason).inc()
        message.reject(requeue=False)

    def unpack_message_headers(self, message) -> dict:
        context = super().unpack_message_headers(message)
        body = message.payload if isinstance(message.payload, dict) else {}
        for key, field in (("report_id", "report_id"), ("report_submitted_at", "submitted_at")):
            if isinstance(body.get(field), str):
                context[key] = body[field]
        return context

    def handle_message(self, body, message) -> None:
        queue = self.subscription.queue
        if (message.delivery_info or {}).get("redelivered"):
            metrics.EVENTS_REDELIVERED.labels(queue).inc()
        crashes = int((message.headers or {}).get("x-delivery-count", 0))
        if crashes >= self.delivery_limit:
            self._dead_letter(message, "crashes", f"delivered {crashes} times without an answer")
            return
        try:
            event = self.event.model_validate(body)
        except ValidationError as error:
            self._dead_letter(message, "contract", f"does not fit {self.event.__name__}: {error}")
            return
        metrics.EVENTS_CONSUMED.labels(queue).inc()
        try:
            self.container.spawn_worker(
                self,
                (event,),
                {},
                context_data=self.unpack_message_headers(message),
                handle_result=partial(self._handled, message, time.monotonic()),
            )
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)

    def _handled(self, message, started: float, worker_ctx, result=None, exc_info=None):
        queue = self.subscription.queue
        metrics.EVENT_HANDLER_DURATION.labels(queue).observe(time.monotonic() - started)
        submitted_at = worker_ctx.data.get("report_submitted_at")
        if exc_info is None and submitted_at:
            age = (utcnow() - datetime.fromisoformat(submitted_at)).total_seconds()
            metrics.REPORT_LATENCY.labels(queue).observe(max(age, 0.0))
        self.handle_message_processed(message, result, exc_info)
        return result, exc_info

    def handle_message_processed(self, message, result=None, exc_info=None) -> None:
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            return
        error = exc_info[1]
        queue = self.subscription.queue
        headers = dict(message.headers or {})
        transient = is_transient(error)
        metrics.EVENTS_FAILED.labels(queue, str(transient).lower()).inc()
        if transient:
            attempt = int(headers.get(RETRIES_HEADER, 0)) + 1
            headers[RETRIES_HEADER] = attempt
            log.warning("%s: transient failure (%s), retry %d", queue, error, attempt)
        else:
            attempt = int(headers.get(FAILURES_HEADER, 0)) + 1
            if attempt >= self.delivery_limit:
                self._dead_letter(message, "failures", f"failed {attempt} times, last with {error!r}")
                return
            headers[FAILURES_HEADER] = attempt
        # The pause gives a peer or database that is briefly away time to return.
        eventlet.sleep(retry_pause(attempt))
        metrics.EVENTS_RETRIED.labels(queue).inc()
        self._retry(message, headers)

    def _retry(self, message, headers: dict) -> None:
        """Put a copy with the new counts back on the queue, then ack the original."""
        headers.pop("x-delivery-count", None)
        try:
            with producers[self.retry_connection].acquire(block=True, timeout=10) as producer:
                producer.publish(
                    message.body,
                    exchange="",
                    routing_key=self.subscription.queue,
                    headers=headers,
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    delivery_mode=2,
                    retry=True,
                    retry_policy={"max_retries": 3},
                )
        except Exception:  # the broker may be away too: the original goes back instead
            log.exception("could not republish a retry of %s; requeueing it", self.subscription.queue)
            self.queue_consumer.requeue_message(message)
            return
        self.queue_consumer.ack_message(message)


subscribe = EventSubscriber.decorator


class ReplyTolerantRpcConsumer(RpcConsumer):
    """nameko's RPC consumer, except that a reply it cannot send (the broker went away while the
    method ran) is logged and dropped instead of killing the whole service. The request stays
    unacked, so the broker hands it out again once it is back, and the caller, who is waiting on
    a connection that is gone, times out and asks again; RPC here is for reads and idempotent
    writes, so a second run is harmless."""

    def handle_result(self, message, result, exc_info):
        try:
            return super().handle_result(message, result, exc_info)
        except Exception as error:  # any failure to publish the reply: the service lives on
            log.warning("could not send an RPC reply (%s); the caller will ask again", error)
            return result, exc_info


class ReplyTolerantRpc(Rpc):
    """``@rpc`` for Lianhu services: see :class:`ReplyTolerantRpcConsumer`."""

    rpc_consumer = ReplyTolerantRpcConsumer()


rpc = ReplyTolerantRpc.decorator


def call_rpc(method: Callable[..., Any], *args, **kwargs) -> Any:
    """An in-service RPC call with the configured timeout (nameko 2 has none of its own)."""
    seconds = kit_settings().rpc_timeout_seconds
    # eventlet.Timeout itself is a BaseException that nameko's worker would not catch.
    with eventlet.Timeout(seconds, RpcTimeout(f"no answer within {seconds}s")):
        return method(*args, **kwargs)


# --- observability ----------------------------------------------------------------------------------

_metrics_server: eventlet.greenthread.GreenThread | None = None


def serve_metrics(port: int) -> None:
    """prometheus_client's exposition on eventlet's own WSGI server, once per process: a green
    server never blocks the hub, and one process may run several service containers."""
    global _metrics_server
    if _metrics_server is not None:
        return
    try:
        listener = eventlet.listen(("0.0.0.0", port))
    except OSError as error:  # metrics are not worth an outage: the service runs without them
        log.error("cannot serve metrics on port %d: %s", port, error)
        return
    _metrics_server = eventlet.spawn(eventlet.wsgi.server, listener, make_wsgi_app(), log_output=False)
    log.info("metrics on port %d", port)


class QueueDepths:
    """Reads a service's work queues and dead letters from the broker over one kept connection."""

    def __init__(self, amqp_uri: str, subscriptions: list[Subscription]):
        self.amqp_uri = amqp_uri
        self.subscriptions = subscriptions
        self._connection: Connection | None = None

    def read(self) -> list[metrics.Sample]:
        try:
            if self._connection is None:
                self._connection = Connection(self.amqp_uri, connect_timeout=5)
            found = depths(self._connection.default_channel, self.subscriptions)
        except Exception:
            self.close()  # reconnect on the next scrape
            raise
        samples: list[metrics.Sample] = []
        for depth in found:
            queue = {"queue": depth.sub.queue}
            samples += [
                ("lianhu_queue_messages", queue, depth.ready),
                ("lianhu_queue_consumers", queue, depth.consumers),
                ("lianhu_dead_letters", queue, depth.dead),
            ]
        return samples

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.release()


def _entrypoint_kind(entrypoint) -> str | None:
    """What the container times: RPC methods and timers (event handlers time themselves)."""
    if isinstance(entrypoint, Rpc):
        return "rpc"
    if isinstance(entrypoint, Timer):
        return "timer"
    return None


class WorkerObserver(DependencyProvider):
    """Added to every service by :class:`ObservedContainer`: metrics server, queue depths, entrypoint
    durations, and each worker's log context."""

    def setup(self) -> None:
        service = self.container.service_name
        port = metrics.MetricsSettings().metrics_port
        if port:
            serve_metrics(port)
        subscriptions = [
            ep.subscription for ep in self.container.entrypoints if isinstance(ep, EventSubscriber)
        ]
        self.queue_key = f"queues:{service}"
        self.queues = QueueDepths(kit_settings().amqp_uri, subscriptions) if subscriptions else None
        if self.queues is not None:
            metrics.install(self.queue_key, metrics.ScrapeGauges(metrics.QUEUE_GAUGES, self.queues.read))
        self.started: dict[Any, tuple[float, contextvars.Token]] = {}

    def stop(self) -> None:
        if self.queues is not None:
            metrics.uninstall(self.queue_key)
            self.queues.close()

    def worker_setup(self, worker_ctx) -> None:
        # Runs in the worker's own greenthread, which starts with an empty context.
        token = logs.bind(service=worker_ctx.service_name, report_id=worker_ctx.data.get("report_id"))
        self.started[worker_ctx] = (time.monotonic(), token)

    def worker_result(self, worker_ctx, result=None, exc_info=None) -> None:
        started, _ = self.started[worker_ctx]
        kind = _entrypoint_kind(worker_ctx.entrypoint)
        if kind is None:
            return
        labels = (worker_ctx.service_name, kind, worker_ctx.entrypoint.method_name)
        metrics.ENTRYPOINT_DURATION.labels(*labels).observe(time.monotonic() - started)
        if exc_info is not None:
            metrics.ENTRYPOINT_FAILURES.labels(*labels).inc()

    def worker_teardown(self, worker_ctx) -> None:
        _, token = self.started.pop(worker_ctx)
        logs.unbind(token)


class ObservedContainer(ServiceContainer):
    """nameko's container with a :class:`WorkerObserver` in every service, so no service has to
    remember one: ``SERVICE_CONTAINER_CLS: lianhu.nameko_ext.ObservedContainer``."""

    def __init__(self, service_cls, config):
        super().__init__(service_cls, config)
        self.dependencies.add(WorkerObserver().bind(self.interface, "_lianhu_observer"))


class DatabaseGauges(DependencyProvider):
    """Gauges a service computes from its own database when Prometheus scrapes.

    ``read(session)`` returns :data:`lianhu.metrics.Sample` tuples for ``specs``; it runs in a native
    thread on a read-only session of its own, at most once per ``ttl_seconds``, so a scrape never
    blocks the service's workers and a burst of scrapes costs one query::

        class RoutingService:
            case_figures = DatabaseGauges("routing", metrics.CASE_GAUGES, figures.case_gauges)
    """

    def __init__(
        self,
        service: str,
        specs: Iterable[metrics.GaugeSpec],
        read: Callable[[Session], Iterable[metrics.Sample]],
        ttl_seconds: float = 5.0,
    ):
        self.service = service
        self.specs = tuple(specs)
        self.read = read
        self.ttl_seconds = ttl_seconds

    def setup(self) -> None:
        self.engine = make_engine(kit_settings().database_url(self.service), poolclass=NullPool)
        sessions = make_read_session_factory(self.engine)

        def read_now() -> list[metrics.Sample]:
            with sessions() as session:
                return list(self.read(session))

        self.key = f"{self.container.service_name}:{self.attr_name}"
        metrics.install(
            self.key,
            metrics.ScrapeGauges(self.specs, read_now, self.ttl_seconds, run=in_native_thread),
        )

    def stop(self) -> None:
        metrics.uninstall(self.key)
        self.engine.dispose()
