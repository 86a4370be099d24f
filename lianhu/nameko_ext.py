"""nameko building blocks shared by the services: a database dependency and an event subscriber.

nameko acks a message whose handler raised, which would lose it. :class:`EventSubscriber`
instead requeues with a growing pause and, at the delivery limit, dead-letters it to a visible
``<queue>.dead`` queue. A payload that does not fit its contract goes there at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import eventlet
from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer
from pydantic import ValidationError
from sqlalchemy.orm import sessionmaker

from lianhu.config import kit_settings
from lianhu.db import make_engine, make_session_factory
from lianhu.events import Event
from lianhu.topology import declare, subscription, work_queue

log = logging.getLogger(__name__)

MAX_RETRY_PAUSE_SECONDS = 30.0


def nameko_config() -> dict:
    """The nameko config of every service, from ``LIANHU_*`` settings."""
    return {"AMQP_URI": kit_settings().amqp_uri}


class Database(DependencyProvider):
    """Gives each worker the service's session factory: ``with self.db.begin() as session``."""

    def __init__(self, service: str):
        self.service = service

    def setup(self) -> None:
        self.engine = make_engine(kit_settings().database_url(self.service))
        self.sessions = make_session_factory(self.engine)

    def stop(self) -> None:
        self.engine.dispose()

    def get_dependency(self, worker_ctx) -> sessionmaker:
        return self.sessions


class Topology(DependencyProvider):
    """Declares the broker topology when the service starts: no event may find its queue missing."""

    def setup(self) -> None:
        declare(kit_settings())


class EventSubscriber(Consumer):
    """Consume one event type from the service's declared work queue, with bounded retries."""

    def __init__(self, consumer: str, event: type[Event], **kwargs):
        self.subscription = subscription(consumer, event)
        self.event = event
        super().__init__(queue=None, requeue_on_error=True, **kwargs)

    def setup(self) -> None:
        self.queue = work_queue(kit_settings(), self.subscription)
        super().setup()

    def handle_message(self, body, message) -> None:
        try:
            event = self.event.model_validate(body)
        except ValidationError as error:
            log.error("dead-lettering malformed %s: %s", self.subscription.queue, error)
            message.reject(requeue=False)
            return
        super().handle_message(event, message)

    def handle_message_processed(self, message, result=None, exc_info=None) -> None:
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            return
        deliveries = int((message.headers or {}).get("x-delivery-count", 0)) + 1
        if deliveries >= kit_settings().delivery_limit:
            log.error("dead-lettering %s after %d deliveries", self.subscription.queue, deliveries)
            message.reject(requeue=False)
            return
        # A pause before the requeue: a database or peer that is briefly away gets time to return
        # instead of the message burning through its deliveries in a tight loop.
        eventlet.sleep(min(0.5 * 2 ** (deliveries - 1), MAX_RETRY_PAUSE_SECONDS))
        self.queue_consumer.requeue_message(message)


subscribe = EventSubscriber.decorator


class RpcTimeout(Exception):
    """A peer did not answer in time (an ordinary exception, so the message is retried)."""


def call_rpc(method: Callable[..., Any], *args, **kwargs) -> Any:
    """An in-service RPC call with the configured timeout (nameko 2 has none of its own)."""
    seconds = kit_settings().rpc_timeout_seconds
    # eventlet.Timeout itself is a BaseException that nameko's worker would not catch.
    with eventlet.Timeout(seconds, RpcTimeout(f"no answer within {seconds}s")):
        return method(*args, **kwargs)
