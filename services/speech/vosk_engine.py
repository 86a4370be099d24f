"""The Vosk (Kaldi) engine: one shared ``Model`` per language, recognisers reused across clips.

A ``Model`` may be shared by threads, a ``KaldiRecognizer`` may not; and a fresh recogniser costs
seconds on its first clip (its decoding graph is expanded lazily), a reused one nothing. So each
decode takes an idle recogniser from a pool (or makes one) and gives it back afterwards: there are
never more recognisers than decodes running at once, and each serves one thread at a time.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from vosk import KaldiRecognizer, Model, SetLogLevel

from lianhu.events import WordTiming
from services.speech.engine import BYTES_PER_SECOND, SAMPLE_RATE, SpeechEngine, Transcript, tidy_text

# Results depend on how the audio is cut into chunks: always the same cut, 0.25 s.
CHUNK_BYTES = BYTES_PER_SECOND // 4
# Vosk times words from the recogniser's first sample in single precision: a recogniser is retired
# after an hour of audio, while its times are still exact to well under a millisecond.
RETIRE_AFTER_SECONDS = 3600.0


class _Recognizer:
    def __init__(self, model: Model, grammar: str | None):
        args = (model, SAMPLE_RATE) if grammar is None else (model, SAMPLE_RATE, grammar)
        self.kaldi = KaldiRecognizer(*args)
        self.kaldi.SetWords(True)
        self.seconds_fed = 0.0

    def decode(self, pcm: bytes) -> tuple[str, list[WordTiming]]:
        segments = []
        for start in range(0, len(pcm), CHUNK_BYTES):
            # True at an endpoint (a pause): that segment's result must be read now or it is lost.
            if self.kaldi.AcceptWaveform(pcm[start : start + CHUNK_BYTES]):
                segments.append(json.loads(self.kaldi.Result()))
        segments.append(json.loads(self.kaldi.FinalResult()))
        # Times count from the recogniser's first clip; make them count from this one's start.
        offset, self.seconds_fed = self.seconds_fed, self.seconds_fed + len(pcm) / BYTES_PER_SECOND
        words = [
            WordTiming(
                word=item["word"],
                start=round(max(item["start"] - offset, 0.0), 3),
                end=round(max(item["end"] - offset, 0.0), 3),
                confidence=min(max(item["conf"], 0.0), 1.0),
            )
            for segment in segments
            for item in segment.get("result", ())
        ]
        text = " ".join(segment["text"] for segment in segments if segment.get("text"))
        return text, words


class VoskEngine(SpeechEngine):
    name = "vosk"

    def __init__(self, model_dirs: Mapping[str, Path]):
        SetLogLevel(-1)  # Kaldi's per-file LOG lines; warnings and errors still show
        self._models: dict[str, Model] = {}
        self._model_names: dict[str, str] = {}
        for language, directory in model_dirs.items():
            if not Path(directory).is_dir():
                raise ValueError(f"speech model for {language!r}: {directory} is not a directory")
            self._models[language] = Model(str(directory))
            self._model_names[language] = Path(directory).name
        self._idle: dict[tuple[str, str | None], deque[_Recognizer]] = {}

    def models(self) -> Mapping[str, str]:
        return dict(self._model_names)

    def transcribe(self, pcm: bytes, language: str, phrases: Sequence[str] | None = None) -> Transcript:
        model = self._models.get(language)
        if model is None:
            raise LookupError(f"no Vosk model for language {language!r}")
        grammar = None if phrases is None else json.dumps(list(phrases), ensure_ascii=False)
        # deque.pop and append are atomic: no lock, which a monkey-patched process would turn green.
        idle = self._idle.setdefault((language, grammar), deque())
        try:
            recognizer = idle.pop()
        except IndexError:
            recognizer = _Recognizer(model, grammar)
        text, words = recognizer.decode(pcm)
        # Only a recogniser that finished cleanly is used again.
        if recognizer.seconds_fed < RETIRE_AFTER_SECONDS:
            idle.append(recognizer)
        return Transcript(text=tidy_text(text), model=self._model_names[language], words=words)
