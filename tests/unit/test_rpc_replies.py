"""A reply that cannot be sent (the broker went away while an RPC method ran) is dropped with a
warning, not allowed to kill the service: the request stays unacked for the broker to hand out
again, and the caller asks again."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from kombu.exceptions import OperationalError
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.rpc import Responder, RpcConsumer

from lianhu.nameko_ext import ReplyTolerantRpc, ReplyTolerantRpcConsumer


class Unacked:
    def __init__(self):
        self.acked = []

    def ack_message(self, message):
        self.acked.append(message)


def consumer(kind: type[RpcConsumer]) -> tuple[RpcConsumer, Unacked]:
    made = kind()
    made.container = SimpleNamespace(config={AMQP_URI_CONFIG_KEY: "amqp://guest:guest@127.0.0.1:1//"})
    made.queue_consumer = Unacked()
    return made, made.queue_consumer


@pytest.fixture
def broker_gone(monkeypatch):
    def send_response(self, result, exc_info):
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(Responder, "send_response", send_response)


def test_nameko_alone_would_raise_and_the_service_would_die(broker_gone):
    plain, _ = consumer(RpcConsumer)
    with pytest.raises(OperationalError):
        plain.handle_result(message=object(), result={"ok": 1}, exc_info=None)


def test_the_lost_reply_is_logged_and_the_request_left_for_the_broker(broker_gone, caplog):
    tolerant, queue = consumer(ReplyTolerantRpcConsumer)
    with caplog.at_level(logging.WARNING, logger="lianhu.nameko_ext"):
        assert tolerant.handle_result(message=object(), result={"ok": 1}, exc_info=None) == ({"ok": 1}, None)
    assert queue.acked == []  # unacked: handed out again once the broker is back
    assert "could not send an RPC reply" in caplog.text


def test_every_service_uses_the_tolerant_entrypoint():
    from nameko.rpc import Rpc

    from services.notify.service import NotifyService
    from services.registry.service import RegistryService
    from services.routing.service import RoutingService
    from services.speech.service import SpeechService

    for service in (RegistryService, RoutingService, NotifyService, SpeechService):
        kinds = {
            type(entrypoint)
            for method in vars(service).values()
            for entrypoint in getattr(method, "nameko_entrypoints", ())
            if isinstance(entrypoint, Rpc)
        }
        assert kinds == {ReplyTolerantRpc}, service.__name__
