"""The gateway's RPC client on the real broker, against a stand-in service: a bounded connection
pool that survives a dropped connection and never leaks one."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker

import lianhu.rpc_client as rpc_client
from lianhu import logs
from lianhu.config import KitSettings
from lianhu.rpc_client import RemoteError, RpcClient, RpcUnavailable
from tests.support.rpc_responder import NoReply, Responder, ServiceFailed
from tests.support.tcp_proxy import TcpProxy

POOL = 4


def _drop():
    raise NoReply


def _fail():
    raise ServiceFailed("OperationalError", "database is locked")


@pytest.fixture
def service(amqp_uri):
    responder = Responder(
        amqp_uri,
        f"stub-{uuid.uuid4().hex[:8]}",
        {"echo": lambda *args, **kwargs: [list(args), kwargs], "drop": _drop, "fail": _fail},
    )
    yield responder
    responder.close()


@pytest.fixture
def opened(monkeypatch) -> list:
    """Every connection the client opens, to check what is still open afterwards."""
    channels = []

    class Tracked(rpc_client._Channel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            channels.append(self)

    monkeypatch.setattr(rpc_client, "_Channel", Tracked)
    return channels


def still_open(channels) -> int:
    return sum(channel.connection.is_open for channel in channels)


def test_bursts_from_short_lived_threads_keep_at_most_the_pool_open(amqp_uri, service, opened):
    client = RpcClient(KitSettings(amqp_uri=amqp_uri), timeout=10, pool_size=POOL)
    # Each burst's threads end afterwards, as the server retires its idle worker threads.
    for burst in range(4):
        with ThreadPoolExecutor(max_workers=32) as pool:
            results = list(
                pool.map(lambda n, b=burst: client.call(service.service, "echo", n, burst=b), range(96))
            )
        assert results == [[[n], {"burst": burst}] for n in range(96)]
        assert client.idle_count() <= POOL
        assert still_open(opened) == client.idle_count()
    assert len(opened) > POOL, "the bursts needed more connections than the pool keeps"
    client.close()
    assert client.idle_count() == 0 and still_open(opened) == 0


def test_a_connection_given_back_after_close_is_closed(amqp_uri, service, opened):
    client = RpcClient(KitSettings(amqp_uri=amqp_uri), timeout=10, pool_size=POOL)
    client.close()
    assert client.call(service.service, "echo", 1) == [[1], {}]
    assert client.idle_count() == 0 and still_open(opened) == 0


def test_a_pooled_connection_the_broker_dropped_is_replaced_transparently(amqp_uri, service, opened):
    parts = urlsplit(amqp_uri)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    through = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    client = RpcClient(KitSettings(amqp_uri=through), timeout=5, pool_size=POOL)
    try:
        assert client.call(service.service, "echo", 1) == [[1], {}]
        assert client.idle_count() == 1
        proxy.cut()  # the pooled connection is dropped underneath, unknown to the client
        proxy.restore()
        assert client.call(service.service, "echo", 2) == [[2], {}]
        assert len(opened) == 2 and not opened[0].connection.is_open
        assert client.idle_count() == 1
    finally:
        client.close()
        proxy.close()


def test_a_timeout_is_not_retried_and_its_connection_is_dropped(amqp_uri, service, opened):
    client = RpcClient(KitSettings(amqp_uri=amqp_uri), timeout=0.5, pool_size=POOL)
    client.call(service.service, "echo")  # so the timed-out call runs on a reused connection
    with pytest.raises(RpcUnavailable, match="did not answer"):
        client.call(service.service, "drop")
    time.sleep(0.5)
    assert service.calls["drop"] == 1
    assert client.idle_count() == 0 and still_open(opened) == 0
    client.close()


def test_a_service_error_is_raised_and_the_connection_kept(amqp_uri, service, opened):
    client = RpcClient(KitSettings(amqp_uri=amqp_uri), timeout=5, pool_size=POOL)
    with pytest.raises(RemoteError) as error:
        client.call(service.service, "fail")
    assert error.value.exc_type == "OperationalError"
    assert service.calls["fail"] == 1
    assert client.idle_count() == 1
    assert client.call(service.service, "echo", 3) == [[3], {}]
    assert len(opened) == 1
    client.close()


def test_a_service_without_a_queue_is_unavailable_at_once(amqp_uri, opened):
    client = RpcClient(KitSettings(amqp_uri=amqp_uri), timeout=5, pool_size=POOL)
    started = time.monotonic()
    with pytest.raises(RpcUnavailable, match="not running"):
        client.call(f"absent-{uuid.uuid4().hex[:8]}", "ping")
    assert time.monotonic() - started < 2, "the broker's return answers it, not the timeout"
    assert client.idle_count() == 1
    client.close()


def test_a_connection_whose_set_up_fails_is_closed(amqp_uri, monkeypatch):
    connections = []
    real = pika.BlockingConnection

    def tracking(params):
        connections.append(real(params))
        return connections[-1]

    def refused(*_args, **_kwargs):
        raise ChannelClosedByBroker(403, "ACCESS_REFUSED")

    monkeypatch.setattr(pika, "BlockingConnection", tracking)
    monkeypatch.setattr(BlockingChannel, "queue_bind", refused)
    client = RpcClient(KitSettings(amqp_uri=amqp_uri), timeout=5, pool_size=POOL)
    with pytest.raises(RpcUnavailable, match="broker unavailable"):
        client.call("anything", "ping")
    assert len(connections) == 1 and not connections[0].is_open


def test_a_call_made_for_a_report_names_it_in_nameko_s_context_header(amqp_uri, service):
    client = RpcClient(KitSettings(amqp_uri=amqp_uri), timeout=5)
    try:
        with logs.bound(report_id="r-42", service="intake"):
            client.call(service.service, "echo")
        client.call(service.service, "echo")
    finally:
        client.close()
    # Only the report travels: the service logs under its own name.
    assert service.headers == [{"nameko.report_id": "r-42"}, {}]
