"""What a speech engine is to the service: 16 kHz mono PCM in, text and timed words out, per language.

Vosk is the first engine; a CTC model for Amdo Tibetan would be a second one behind the same interface.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from lianhu.events import WordTiming

SAMPLE_RATE = 16_000
BYTES_PER_SECOND = 2 * SAMPLE_RATE  # s16le, mono

_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")


def tidy_text(text: str) -> str:
    """Chinese is written without spaces: drop those a word-based recogniser puts between characters."""
    return _SPACE_BETWEEN_CJK.sub("", " ".join(text.split()))


@dataclass(frozen=True)
class Transcript:
    text: str
    model: str
    words: list[WordTiming] = field(default_factory=list)


class SpeechEngine(ABC):
    """Thread-safe: the service calls it from several native threads at once."""

    name: str

    @abstractmethod
    def models(self) -> Mapping[str, str]:
        """The languages this engine transcribes, each with the name of its model."""

    @abstractmethod
    def transcribe(self, pcm: bytes, language: str, phrases: Sequence[str] | None = None) -> Transcript:
        """Text of ``pcm`` (16 kHz mono s16le); ``phrases`` restricts it to those words (a grammar)."""


class Engines:
    """The engine for each configured language; a language with none is not transcribed."""

    def __init__(self, engines: Iterable[SpeechEngine]):
        self._by_language: dict[str, SpeechEngine] = {}
        for engine in engines:
            for language in engine.models():
                if language in self._by_language:
                    raise ValueError(f"two engines for language {language!r}")
                self._by_language[language] = engine

    def for_language(self, language: str | None) -> SpeechEngine | None:
        return self._by_language.get(language) if language else None

    @property
    def languages(self) -> list[str]:
        return sorted(self._by_language)

    def describe(self) -> list[dict[str, str]]:
        return [
            {"language": language, "engine": engine.name, "model": engine.models()[language]}
            for language, engine in sorted(self._by_language.items())
        ]
