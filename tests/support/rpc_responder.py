"""A stand-in nameko RPC service on the real broker, without nameko: the RPC client's counterpart.

It speaks the wire format the client expects: requests arrive on the ``nameko-rpc`` topic exchange
with routing key ``<service>.<method>``; the answer ``{"result", "error"}`` goes back through the same
exchange with the request's ``reply_to`` as routing key and its ``correlation_id``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pika

from lianhu.rpc_client import RPC_EXCHANGE


class NoReply(Exception):
    """Raised by a handler to send nothing back (the caller must time out)."""


class ServiceFailed(Exception):
    """Raised by a handler to answer with a nameko-style error."""

    def __init__(self, exc_type: str, value: str):
        super().__init__(value)
        self.exc_type = exc_type
        self.value = value


class Responder:
    def __init__(self, amqp_uri: str, service: str, handlers: dict[str, Callable[..., Any]]):
        self.service = service
        self.handlers = handlers
        self.calls: Counter[str] = Counter()
        self.headers: list[dict] = []  # of each request, in order
        self._connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        self._channel = self._connection.channel()
        self._channel.exchange_declare(RPC_EXCHANGE, exchange_type="topic", durable=True)
        # Exclusive: gone with this connection, and never clashes with a real service's queue.
        queue = self._channel.queue_declare(f"rpc-{service}", exclusive=True, auto_delete=True).method.queue
        self._channel.queue_bind(queue, RPC_EXCHANGE, routing_key=f"{service}.*")
        self._channel.basic_consume(queue, self._on_request, auto_ack=True)
        self._thread = threading.Thread(target=self._channel.start_consuming, daemon=True)
        self._thread.start()

    def _on_request(self, channel, method, properties, body) -> None:
        name = method.routing_key.split(".", 1)[1]
        self.calls[name] += 1
        self.headers.append(dict(properties.headers or {}))
        request = json.loads(body)
        try:
            reply = {"result": self.handlers[name](*request["args"], **request["kwargs"]), "error": None}
        except NoReply:
            return
        except ServiceFailed as failure:
            reply = {"result": None, "error": {"exc_type": failure.exc_type, "value": failure.value}}
        channel.basic_publish(
            RPC_EXCHANGE,
            properties.reply_to,
            json.dumps(reply).encode(),
            properties=pika.BasicProperties(
                content_type="application/json", correlation_id=properties.correlation_id
            ),
        )

    def close(self) -> None:
        self._connection.add_callback_threadsafe(self._channel.stop_consuming)
        self._thread.join(timeout=10)
        self._connection.close()
