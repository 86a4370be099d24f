"""The benchmark's own machinery: what it sends, how it counts, when it refuses to run.

No figures are asserted here: the machine is shared, and a timing assertion would only test the
neighbours. The figures come from ``bench/intake.py`` itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math

import pytest

from bench import intake as bench


def result(scheduled: int, latencies: list[float], ok: int | None = None) -> bench.StepResult:
    return bench.StepResult(
        app="x",
        rate=100,
        seconds=1.0,
        scheduled=scheduled,
        ok=len(latencies) if ok is None else ok,
        latencies=sorted(latencies),
    )


def test_unanswered_requests_count_as_infinitely_slow():
    step = result(100, [0.002] * 98)
    assert step.p50_ms == pytest.approx(2.0)
    assert math.isinf(step.p99_ms)
    assert not step.passed(50)


def test_a_step_passes_on_p99_and_on_answered_2xx():
    assert result(100, [0.002] * 99 + [0.2]).passed(50)
    assert not result(100, [0.002] * 98 + [0.2, 0.2]).passed(50)
    assert not result(100, [0.002] * 100, ok=98).passed(50)


def test_content_length_is_read_from_the_header_block():
    assert bench.content_length(b"http/1.1 201 created\r\ncontent-length: 12\r\nx-a: b") == 12
    assert bench.content_length(b"http/1.1 201 created\r\nx-a: b\r\ncontent-length: 7") == 7
    assert bench.content_length(b"http/1.1 200 ok\r\ntransfer-encoding: chunked") == -1


class _Recorder(asyncio.Protocol):
    """A server that records every request it is sent and answers each with a small 201."""

    requests: list[tuple[dict[str, str], bytes]]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            lines = bytes(self.buf[:end]).decode().split("\r\n")
            headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
            length = int(headers["content-length"])
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self.requests.append((headers, body))
            self.transport.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}")  # type: ignore[attr-defined]


def test_every_scheduled_request_is_sent_once_with_its_own_key_and_a_valid_body():
    requests: list[tuple[dict[str, str], bytes]] = []

    async def drive() -> bench.StepResult:
        protocol = type("Recorder", (_Recorder,), {"requests": requests})
        server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            factory = bench.RequestFactory("127.0.0.1", port, "token-abc", "t-")
            return await bench.run_step("recorder", "127.0.0.1", port, 200, 0.5, 16, factory)

    step = asyncio.run(drive())

    assert step.scheduled == 100
    assert step.ok == 100
    assert len(step.latencies) == 100
    assert len(requests) == 100
    assert len({headers["idempotency-key"] for headers, _ in requests}) == 100
    texts = set()
    for headers, body in requests:
        assert headers["authorization"] == "Bearer token-abc"
        report = json.loads(body)
        assert report in bench.REPORTS
        texts.add(report["text"])
    assert len(texts) == len(bench.REPORTS)


def test_without_rabbitmqctl_it_refuses_rather_than_use_the_default_vhost(monkeypatch):
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    with (
        pytest.raises(SystemExit, match="--amqp-uri"),
        bench.private_vhost(argparse.Namespace(amqp_uri=None)),
    ):
        pass


def test_a_given_amqp_uri_is_used_as_it_is(monkeypatch):
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    uri = "amqp://guest:guest@127.0.0.1:5672/scratch"
    with bench.private_vhost(argparse.Namespace(amqp_uri=uri)) as given:
        assert given == uri
