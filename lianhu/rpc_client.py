"""Calls nameko RPC methods from a process that must not run eventlet (the FastAPI gateway).

It speaks nameko's RPC wire format with pika: a request on the ``nameko-rpc`` topic exchange with
routing key ``<service>.<method>``, a JSON body ``{"args", "kwargs"}``, and ``reply_to`` naming a
private reply queue. pika is not thread-safe, so a connection serves one call at a time: callers
take one from a small shared pool and give it back, and what the pool cannot keep is closed (a
thread-local would leak one connection per worker thread the server ever retired).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import uuid
from typing import Any

import pika
from pika.exceptions import AMQPError

from lianhu import logs
from lianhu.config import KitSettings

RPC_EXCHANGE = "nameko-rpc"
# Idle connections kept for reuse; more may be open while busy, but beyond this they are closed.
POOL_SIZE = 16


class RpcUnavailable(Exception):
    """The service did not answer in time, or the broker is away: a read cannot be served now."""


class _ConnectionLost(RpcUnavailable):
    pass


class _NotRunning(RpcUnavailable):
    """The broker returned the request: no queue for the service. The connection is sound."""


class RemoteError(Exception):
    def __init__(self, exc_type: str, value: str):
        super().__init__(f"{exc_type}: {value}")
        self.exc_type = exc_type


def _context_headers() -> dict[str, str]:
    report_id = logs.current().get("report_id")
    return {"nameko.report_id": report_id} if report_id else {}


class _Channel:
    def __init__(self, settings: KitSettings, timeout: float):
        params = pika.URLParameters(settings.amqp_uri)
        params.socket_timeout = timeout
        params.connection_attempts = 1
        params.heartbeat = 60
        self.connection = pika.BlockingConnection(params)
        self.replies: dict[str, bytes] = {}
        self.returned: set[str] = set()
        try:
            self.channel = self.connection.channel()
            self.channel.exchange_declare(RPC_EXCHANGE, exchange_type="topic", durable=True)
            self.reply_queue = self.channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            self.channel.queue_bind(self.reply_queue, RPC_EXCHANGE, routing_key=self.reply_queue)
            self.channel.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)
            self.channel.add_on_return_callback(self._on_return)
        except BaseException:
            # Nobody holds this half-set-up channel, so nobody else would close its connection.
            self.close()
            raise

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
                # nameko's context header: the service logs the call with the report it is about.
                headers=_context_headers(),
            ),
            mandatory=True,
        )
        deadline = time.monotonic() + timeout
        while correlation_id not in self.replies:
            if correlation_id in self.returned:
                self.returned.discard(correlation_id)
                raise _NotRunning(f"{service} is not running")
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
    def __init__(self, settings: KitSettings, timeout: float | None = None, pool_size: int = POOL_SIZE):
        self.settings = settings
        self.timeout = timeout if timeout is not None else settings.rpc_timeout_seconds
        self.pool_size = pool_size
        # LIFO: the most recently used connections stay hot; the rest age out at the bottom.
        self._idle: queue.LifoQueue[_Channel] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._closed = False

    def call(self, service: str, method: str, *args, **kwargs) -> Any:
        return self.call_within(self.timeout, service, method, *args, **kwargs)

    def call_within(self, timeout: float, service: str, method: str, *args, **kwargs) -> Any:
        """``call`` with its own deadline, for the few methods that work on whole files."""
        channel = self._take()
        try:
            return self._call(channel, service, method, args, kwargs, timeout)
        except _ConnectionLost:
            if channel is None:
                raise
            # The kept connection died while idle (broker restart, network cut): one fresh
            # connection is tried. The lost request may have run, so only idempotent methods
            # (reads, upserts, deduplicated uploads) are called through this client.
            return self._call(None, service, method, args, kwargs, timeout)

    def close(self) -> None:
        """Close every pooled connection; connections given back later are closed too."""
        with self._lock:
            self._closed = True
            idle = self._drain()
        for channel in idle:
            channel.close()

    def idle_count(self) -> int:
        return self._idle.qsize()

    def _call(
        self, channel: _Channel | None, service: str, method: str, args: tuple, kwargs: dict, timeout: float
    ) -> Any:
        try:
            if channel is None:
                channel = _Channel(self.settings, self.timeout)
            result = channel.call(service, method, args, kwargs, timeout)
        except (RemoteError, _NotRunning):
            # A definite answer came back over the connection, so it is fit for the next call.
            self._give_back(channel)
            raise
        except (AMQPError, OSError) as error:
            if channel is not None:
                channel.close()
            raise _ConnectionLost(f"broker unavailable: {type(error).__name__}") from error
        except BaseException:
            # A timeout (a late reply may still come) or anything unexpected: state unknown, drop it.
            if channel is not None:
                channel.close()
            raise
        self._give_back(channel)
        return result

    def _take(self) -> _Channel | None:
        while True:
            try:
                channel = self._idle.get_nowait()
            except queue.Empty:
                return None
            if channel.connection.is_open:
                return channel
            channel.close()

    def _give_back(self, channel: _Channel) -> None:
        with self._lock:
            if not self._closed and self._idle.qsize() < self.pool_size:
                self._idle.put_nowait(channel)
                return
        channel.close()

    def _drain(self) -> list[_Channel]:
        channels = []
        while True:
            try:
                channels.append(self._idle.get_nowait())
            except queue.Empty:
                return channels
