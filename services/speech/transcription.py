"""One voice report to one outcome: ``ReportTranscribed``, or ``TranscriptionFailed`` saying why.

What fails for good (no model for the language, a file ffmpeg cannot decode, too long, a decode that
hangs) is an outcome: the event is emitted and the message acked; the recording stays playable.
What may pass on a retry (the shared volume not readable just now) raises instead.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from lianhu.audio import AudioError, decode
from lianhu.blobs import BlobNotFound, BlobStore, CorruptBlob
from lianhu.events import Event, ReportSubmitted, ReportTranscribed, TranscriptionFailed
from services.speech.engine import SAMPLE_RATE, Engines

log = logging.getLogger(__name__)

T = TypeVar("T")
# Runs the CPU-bound recognition: directly in plain code, in a native thread under nameko.
OffHub = Callable[..., Any]

# Outcome event ids derive from the report's event: a redelivered report re-emits the same ids.
_OUTCOME_NAMESPACE = uuid.UUID("4f0a51c2-7a43-4d53-9a3c-5b0f5b2c8e11")


class RecordingUnavailable(Exception):
    """The recording cannot be read now (the shared volume may be remounting): retry, then park."""


@dataclass(frozen=True)
class Limits:
    max_seconds: float
    decode_timeout_seconds: float


def _direct(work: Callable[..., T], *args: Any) -> T:
    return work(*args)


def _outcome_id(report: ReportSubmitted, outcome: type[Event]) -> str:
    return str(uuid.uuid5(_OUTCOME_NAMESPACE, f"{report.event_id}/{outcome.event_type}"))


def failed(report: ReportSubmitted, reason: str, detail: str) -> TranscriptionFailed:
    log.info("report %s not transcribed: %s (%s)", report.report_id, reason, detail)
    return TranscriptionFailed(
        event_id=_outcome_id(report, TranscriptionFailed),
        report_id=report.report_id,
        language=report.language,
        reason=reason,
        detail=detail,
    )


def read_recording(blobs: BlobStore, sha256: str) -> bytes:
    try:
        return blobs.get(sha256)
    except (BlobNotFound, CorruptBlob, OSError) as error:
        raise RecordingUnavailable(f"recording {sha256} cannot be read: {error!r}") from error


def transcribe_report(
    report: ReportSubmitted, blobs: BlobStore, engines: Engines, limits: Limits, off_hub: OffHub = _direct
) -> ReportTranscribed | TranscriptionFailed:
    """The outcome for a report that has a recording."""
    assert report.audio is not None, "only voice reports are transcribed"
    engine = engines.for_language(report.language)
    if engine is None:
        configured = ", ".join(engines.languages) or "none"
        detail = f"no speech model for {report.language!r} (configured: {configured})"
        return failed(report, "no_model", detail)
    data = read_recording(blobs, report.audio.sha256)
    started = time.monotonic()
    try:
        pcm = decode(data, SAMPLE_RATE, limits.max_seconds, limits.decode_timeout_seconds)
    except AudioError as error:
        return failed(report, error.reason, str(error))
    log.info("transcribing report %s: %.1f s of %s audio", report.report_id, pcm.seconds, report.language)
    transcript = off_hub(engine.transcribe, pcm.samples, report.language)
    return ReportTranscribed(
        event_id=_outcome_id(report, ReportTranscribed),
        report_id=report.report_id,
        text=transcript.text,
        language=report.language,
        words=transcript.words,
        engine=engine.name,
        model=transcript.model,
        audio_seconds=round(pcm.seconds, 3),
        decode_seconds=round(time.monotonic() - started, 3),
    )
