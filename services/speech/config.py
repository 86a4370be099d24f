"""Speech's settings: the kit's plus a model per language and the limits of a clip (``LIANHU_SPEECH_*``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from lianhu.config import KitSettings


def parse_models(value: str) -> dict[str, Path]:
    """``"zh=/models/vosk-model-small-cn-0.22,bo=/models/…"`` → ``{"zh": Path(…), "bo": Path(…)}``."""
    models: dict[str, Path] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        language, separator, path = (piece.strip() for piece in entry.partition("="))
        if not separator or not language or not path:
            raise ValueError(f"{entry!r} is not language=model-directory")
        if language in models:
            raise ValueError(f"language {language!r} is given two models")
        models[language] = Path(path)
    return models


class SpeechSettings(KitSettings):
    # One model directory per spoken language. A language left out is not transcribed: its clips fail
    # with no_model and the report stays whole and playable (no Tibetan Vosk model exists yet).
    speech_models: Annotated[dict[str, Path], NoDecode] = {}
    # Phone voice messages are short; a longer clip is refused (too_long) rather than tying up a worker.
    speech_max_seconds: float = Field(default=120.0, gt=0)
    # ffmpeg runs on untrusted files: a crafted one may cost at most this long (timeout).
    speech_decode_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("speech_models", mode="before")
    @classmethod
    def _models_from_text(cls, value: object) -> object:
        return parse_models(value) if isinstance(value, str) else value


@lru_cache
def speech_settings() -> SpeechSettings:
    return SpeechSettings()
