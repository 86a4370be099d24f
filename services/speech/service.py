"""speech: transcribes each voice report and tells routing what was said (or why it could not be)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from nameko.events import EventDispatcher
from nameko.extensions import DependencyProvider

from lianhu.blobs import BlobStore, FilesystemBlobStore
from lianhu.events import ReportSubmitted
from lianhu.nameko_ext import Topology, in_native_thread, rpc, subscribe
from services.speech import metrics
from services.speech.config import speech_settings
from services.speech.engine import Engines
from services.speech.transcription import Limits, transcribe_report
from services.speech.vosk_engine import VoskEngine


@lru_cache
def load_engines(models: tuple[tuple[str, Path], ...]) -> Engines:
    # A model takes seconds and hundreds of MB to load: once per process, however often the
    # service's container starts in it.
    return Engines([VoskEngine(dict(models))] if models else [])


class SpeechEngines(DependencyProvider):
    """The engines for the languages in ``LIANHU_SPEECH_MODELS``, loaded when the service starts."""

    def setup(self) -> None:
        self.engines = load_engines(tuple(sorted(speech_settings().speech_models.items())))

    def get_dependency(self, worker_ctx) -> Engines:
        return self.engines


class AudioBlobs(DependencyProvider):
    """The recordings the gateway stored, in the shared blob store."""

    def setup(self) -> None:
        self.store = FilesystemBlobStore(speech_settings().blob_root("audio"))

    def get_dependency(self, worker_ctx) -> BlobStore:
        return self.store


class SpeechService:
    name = "speech"

    engines = SpeechEngines()
    blobs = AudioBlobs()
    dispatch = EventDispatcher()
    topology = Topology()

    @subscribe("speech", ReportSubmitted)
    def handle_report_submitted(self, event: ReportSubmitted) -> None:
        if event.audio is None:
            return  # a text-only report: nothing to transcribe
        settings = speech_settings()
        limits = Limits(settings.speech_max_seconds, settings.speech_decode_timeout_seconds)
        # Recognition is C code that holds the thread for seconds: in a native thread, the hub keeps
        # the broker's heartbeats and other workers going. ffmpeg runs as a (green) child process.
        outcome = transcribe_report(event, self.blobs, self.engines, limits, off_hub=in_native_thread)
        self.dispatch(outcome.event_type, outcome.to_wire())
        metrics.observe(outcome)

    @rpc
    def health(self) -> dict:
        return {
            "service": self.name,
            "status": "ok",
            "languages": self.engines.languages,
            "engines": self.engines.describe(),
        }
