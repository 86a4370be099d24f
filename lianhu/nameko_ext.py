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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import eventlet
import eventlet.semaphore
import eventlet.tpool
from kombu import Connection
from kombu.pools import producers
from nameko.exceptions import RemoteError, UnknownService
from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer
from pydantic import ValidationError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from lianhu.config import kit_settings
from lianhu.db import make_engine, make_read_session_factory, make_session_factory
from lianhu.events import Event
from lianhu.topology import declare, subscription, work_queue

log = logging.getLogger(__name__)

MAX_RETRY_PAUSE_SECONDS = 30.0
T = TypeVar("T")


class RpcTimeout(Exception):
    """A peer did not answer in time (an ordinary exception, so the message is retried)."""


class NotYet(Exception):
    """The event refers to something not recorded here yet (a transcript that outran its report's
    routing): retried, like an outage, until it is."""


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
            return eventlet.tpool.execute(work, self._provider.off_hub_sessions, *args)


class Database(DependencyProvider):
    """Gives each worker the service's :class:`Sessions`."""

    def __init__(self, service: str):
        self.service = service

    def setup(self) -> None:
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
    """Consume one event type from the service's declared work queue; never lose a message."""

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

    def _dead_letter(self, message, why: str) -> None:
        log.error("dead-lettering a message of %s: %s", self.subscription.queue, why)
        message.reject(requeue=False)

    def handle_message(self, body, message) -> None:
        crashes = int((message.headers or {}).get("x-delivery-count", 0))
        if crashes >= self.delivery_limit:
            self._dead_letter(message, f"delivered {crashes} times without an answer")
            return
        try:
            event = self.event.model_validate(body)
        except ValidationError as error:
            self._dead_letter(message, f"does not fit {self.event.__name__}: {error}")
            return
        super().handle_message(event, message)

    def handle_message_processed(self, message, result=None, exc_info=None) -> None:
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            return
        error = exc_info[1]
        headers = dict(message.headers or {})
        if is_transient(error):
            attempt = int(headers.get(RETRIES_HEADER, 0)) + 1
            headers[RETRIES_HEADER] = attempt
            log.warning("%s: transient failure (%s), retry %d", self.subscription.queue, error, attempt)
        else:
            attempt = int(headers.get(FAILURES_HEADER, 0)) + 1
            if attempt >= self.delivery_limit:
                self._dead_letter(message, f"failed {attempt} times, last with {error!r}")
                return
            headers[FAILURES_HEADER] = attempt
        # The pause gives a peer or database that is briefly away time to return.
        eventlet.sleep(retry_pause(attempt))
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


def call_rpc(method: Callable[..., Any], *args, **kwargs) -> Any:
    """An in-service RPC call with the configured timeout (nameko 2 has none of its own)."""
    seconds = kit_settings().rpc_timeout_seconds
    # eventlet.Timeout itself is a BaseException that nameko's worker would not catch.
    with eventlet.Timeout(seconds, RpcTimeout(f"no answer within {seconds}s")):
        return method(*args, **kwargs)
