"""Calls nameko RPC methods from a process that must not run eventlet (the FastAPI gateway).

It speaks nameko's RPC wire format with pika: a request on the ``nameko-rpc`` topic exchange with
routing key ``<service>.<method>``, a JSON body ``{"args", "kwargs"}``, and ``reply_to`` naming a
private reply queue. Each thread keeps its own connection (pika is not thread-safe), so the
gateway's threadpool is the pool.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from typing import Any

import pika
from pika.exceptions import AMQPError

from lianhu.config import KitSettings

RPC_EXCHANGE = "nameko-rpc"


class RpcUnavailable(Exception):
    """The service did not answer in time, or the broker is away: a read cannot be served now."""


class _ConnectionLost(RpcUnavailable):
    pass


class RemoteError(Exception):
    def __init__(self, exc_type: str, value: str):
        super().__init__(f"{exc_type}: {value}")
        self.exc_type = exc_type


class _Channel:
    def __init__(self, settings: KitSettings, timeout: float):
        params = pika.URLParameters(settings.amqp_uri)
        params.socket_timeout = timeout
        params.connection_attempts = 1
        params.heartbeat = 60
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        self.channel.exchange_declare(RPC_EXCHANGE, exchange_type="topic", durable=True)
        self.reply_queue = self.channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self.channel.queue_bind(self.reply_queue, RPC_EXCHANGE, routing_key=self.reply_queue)
        self.replies: dict[str, bytes] = {}
        self.returned: set[str] = set()
        self.channel.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)
        self.channel.add_on_return_callback(self._on_return)

    def _on_reply(self, _channel, _method, properties, body) -> None:
        self.replies[properties.correlation_id] = body

    def _on_return(self, _channel, _method, properties, _body) -> None:
        self.returned.add(properties.correlation_id)

    def call(self, service: str, method: str, args: tuple, kwargs: dict, timeout: float) -> Any:
        correlation_id = str(uuid.uuid4())
        self.channel.basic_publish(
            RPC_EXCHANGE,
            f"{service}.{method}",
            json.dumps({"args": list(args), "kwargs": kwargs}).encode(),
            properties=pika.BasicProperties(
                content_type="application/json",
                reply_to=self.reply_queue,
                correlation_id=correlation_id,
            ),
            mandatory=True,
        )
        deadline = time.monotonic() + timeout
        while correlation_id not in self.replies:
            if correlation_id in self.returned:
                self.returned.discard(correlation_id)
                raise RpcUnavailable(f"{service} is not running")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RpcUnavailable(f"{service}.{method} did not answer within {timeout:.1f}s")
            self.connection.process_data_events(time_limit=min(remaining, 0.5))
        reply = json.loads(self.replies.pop(correlation_id))
        # A late reply to an earlier timed-out call must not grow the dict for ever.
        self.replies.clear()
        if reply.get("error"):
            error = reply["error"]
            raise RemoteError(error.get("exc_type", "Error"), error.get("value", ""))
        return reply.get("result")

    def close(self) -> None:
        with contextlib.suppress(AMQPError, OSError):
            self.connection.close()


class RpcClient:
    def __init__(self, settings: KitSettings, timeout: float | None = None):
        self.settings = settings
        self.timeout = timeout if timeout is not None else settings.rpc_timeout_seconds
        self._local = threading.local()

    def call(self, service: str, method: str, *args, **kwargs) -> Any:
        had_connection = getattr(self._local, "channel", None) is not None
        try:
            return self._call(service, method, args, kwargs)
        except _ConnectionLost:
            if not had_connection:
                raise
            # The kept connection died while idle (broker restart, network cut); reads are safe to
            # send again, so one fresh connection is tried before giving up.
            return self._call(service, method, args, kwargs)

    def _call(self, service: str, method: str, args: tuple, kwargs: dict) -> Any:
        channel: _Channel | None = getattr(self._local, "channel", None)
        try:
            if channel is None:
                channel = self._local.channel = _Channel(self.settings, self.timeout)
            return channel.call(service, method, args, kwargs, self.timeout)
        except (AMQPError, OSError) as error:
            if channel is not None:
                channel.close()
            self._local.channel = None
            raise _ConnectionLost(f"broker unavailable: {type(error).__name__}") from error
