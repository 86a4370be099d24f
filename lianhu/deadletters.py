"""Dead letters: how many wait, and sending them back to their work queue after a fix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kombu import Connection

from lianhu.config import KitSettings
from lianhu.topology import SUBSCRIPTIONS, Subscription

# Counts a redriven message must not carry back: it gets a whole new budget of attempts.
RESET_HEADERS = (
    "x-lianhu-failures",
    "x-lianhu-retries",
    "x-delivery-count",
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
)


@dataclass(frozen=True)
class Depth:
    """A work queue as the broker sees it: messages ready, consumers reading, dead letters parked."""

    sub: Subscription
    ready: int
    consumers: int
    dead: int


def depths(channel, subscriptions: Iterable[Subscription] = SUBSCRIPTIONS) -> list[Depth]:
    """Passive declarations only: asking never creates a queue with the wrong arguments."""
    found = []
    for sub in subscriptions:
        work = channel.queue_declare(sub.queue, passive=True)
        dead = channel.queue_declare(sub.dead_letter_queue, passive=True)
        found.append(Depth(sub, work.message_count, work.consumer_count, dead.message_count))
    return found


def counts(settings: KitSettings) -> dict[str, int]:
    with Connection(settings.amqp_uri) as connection:
        return {depth.sub.dead_letter_queue: depth.dead for depth in depths(connection.default_channel)}


def redrive(settings: KitSettings, sub: Subscription, limit: int | None = None) -> int:
    """Move dead letters back to the work queue; each is acked only once its copy is confirmed."""
    moved = 0
    with Connection(settings.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.default_channel
        producer = connection.Producer()
        while limit is None or moved < limit:
            message = channel.basic_get(sub.dead_letter_queue, no_ack=False)
            if message is None:
                break
            headers = {k: v for k, v in (message.headers or {}).items() if k not in RESET_HEADERS}
            producer.publish(
                message.body,
                exchange="",
                routing_key=sub.queue,
                headers=headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=2,
            )
            channel.basic_ack(message.delivery_tag)
            moved += 1
    return moved
