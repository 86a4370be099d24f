"""What speech tells Prometheus: outcomes, decode time and real-time factor, per language.

The transcription backlog is the depth of ``speech.report_submitted``, which the kit reports for
every consumer (``lianhu_queue_messages``).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from lianhu.events import ReportTranscribed, TranscriptionFailed

TRANSCRIPTIONS = Counter(
    "lianhu_transcriptions",
    "Voice reports by outcome: done, or the TranscriptionFailed reason",
    ["language", "outcome"],
)
DECODE_SECONDS = Histogram(
    "lianhu_speech_decode_seconds",
    "Wall time to decode and recognise one clip",
    ["language"],
    buckets=(0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0),
)
REAL_TIME_FACTOR = Histogram(
    "lianhu_speech_real_time_factor",
    "Processing seconds per second of audio, per clip (below 1: faster than real time)",
    ["language"],
    buckets=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0),
)
# Summed, so a dashboard can show the real-time factor over any window: processing / audio.
AUDIO_SECONDS = Counter("lianhu_speech_audio_seconds", "Seconds of audio transcribed", ["language"])
PROCESSING_SECONDS = Counter(
    "lianhu_speech_processing_seconds", "Seconds spent transcribing them", ["language"]
)


def observe(outcome: ReportTranscribed | TranscriptionFailed) -> None:
    language = outcome.language or "unknown"
    if isinstance(outcome, TranscriptionFailed):
        TRANSCRIPTIONS.labels(language, outcome.reason).inc()
        return
    TRANSCRIPTIONS.labels(language, "done").inc()
    DECODE_SECONDS.labels(language).observe(outcome.decode_seconds)
    AUDIO_SECONDS.labels(language).inc(outcome.audio_seconds)
    PROCESSING_SECONDS.labels(language).inc(outcome.decode_seconds)
    if outcome.audio_seconds > 0:
        REAL_TIME_FACTOR.labels(language).observe(outcome.decode_seconds / outcome.audio_seconds)
