"""The broker topology in one place: event exchanges, work queues and their dead-letter queues.

Work queues are declared before anything publishes (``lianhu topology``, each relay at start, each
consumer at start): an event published before its queue exists would otherwise be dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from kombu import Connection, Exchange, Queue

from lianhu.config import KitSettings
from lianhu.events import (
    CaseUpdated,
    Event,
    ReportRouted,
    ReportSubmitted,
    ReportTranscribed,
    TaskAnswered,
    TaskAssigned,
    TaskCancelled,
    TranscriptionFailed,
)

DEAD_LETTER_EXCHANGE = "lianhu.dead-letter"


@dataclass(frozen=True)
class Subscription:
    """A service's durable work queue for one event type."""

    consumer: str
    event: type[Event]

    @property
    def queue(self) -> str:
        return f"{self.consumer}.{self.event.event_type}"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"

    @property
    def exchange(self) -> str:
        return self.event.exchange()

    @property
    def routing_key(self) -> str:
        return self.event.event_type


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription("routing", ReportSubmitted),
    Subscription("speech", ReportSubmitted),
    Subscription("routing", ReportTranscribed),
    Subscription("routing", TranscriptionFailed),
    Subscription("notify", ReportRouted),
    Subscription("notify", CaseUpdated),
    Subscription("notify", TaskAssigned),
    Subscription("notify", TaskAnswered),
    Subscription("notify", TaskCancelled),
)

EVENT_TYPES: tuple[type[Event], ...] = (
    ReportSubmitted,
    ReportRouted,
    ReportTranscribed,
    TranscriptionFailed,
    CaseUpdated,
    TaskAssigned,
    TaskAnswered,
    TaskCancelled,
)


def subscription(consumer: str, event: type[Event]) -> Subscription:
    for sub in SUBSCRIPTIONS:
        if sub.consumer == consumer and sub.event is event:
            return sub
    raise KeyError(f"no subscription of {consumer} to {event.event_type}")


def queue_arguments(settings: KitSettings, sub: Subscription) -> dict:
    # No x-delivery-limit here: the subscriber counts failures itself (see lianhu.nameko_ext), and an
    # argument that changes with configuration would make every later declaration fail.
    return {
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": sub.queue,
        "x-queue-type": settings.queue_type,
    }


def event_exchange(name: str) -> Exchange:
    # Same attributes as nameko's own event exchanges, so either side may declare first.
    return Exchange(name, type="topic", durable=True, delivery_mode=2)


def work_queue(settings: KitSettings, sub: Subscription) -> Queue:
    return Queue(
        sub.queue,
        exchange=event_exchange(sub.exchange),
        routing_key=sub.routing_key,
        durable=True,
        auto_delete=False,
        queue_arguments=queue_arguments(settings, sub),
    )


def dead_letter_queue(settings: KitSettings, sub: Subscription) -> Queue:
    return Queue(
        sub.dead_letter_queue,
        exchange=Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True),
        routing_key=sub.queue,
        durable=True,
        auto_delete=False,
        queue_arguments={"x-queue-type": settings.queue_type},
    )


def declare(settings: KitSettings, timeout: float = 5.0) -> None:
    """Declare every exchange, work queue and dead-letter queue (idempotent)."""
    with Connection(settings.amqp_uri, connect_timeout=timeout) as connection:
        channel = connection.default_channel
        for event in EVENT_TYPES:
            event_exchange(event.exchange())(channel).declare()
        for sub in SUBSCRIPTIONS:
            work_queue(settings, sub)(channel).declare()
            dead_letter_queue(settings, sub)(channel).declare()
