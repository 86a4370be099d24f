"""Speech's settings, read from the environment as the service reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.speech.config import SpeechSettings, parse_models


def test_models_are_language_equals_directory_pairs():
    assert parse_models("zh=/models/vosk-model-small-cn-0.22, bo = /models/bo ,") == {
        "zh": Path("/models/vosk-model-small-cn-0.22"),
        "bo": Path("/models/bo"),
    }
    assert parse_models("") == {} and parse_models(" , ") == {}


@pytest.mark.parametrize("value", ["zh", "=/models/x", "zh=", "zh=/a,zh=/b"])
def test_a_malformed_model_list_is_refused(value):
    with pytest.raises(ValueError):
        parse_models(value)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LIANHU_SPEECH_MODELS", "zh=/models/vosk-model-small-cn-0.22")
    monkeypatch.setenv("LIANHU_SPEECH_MAX_SECONDS", "60")
    monkeypatch.setenv("LIANHU_SPEECH_DECODE_TIMEOUT_SECONDS", "5")
    settings = SpeechSettings()
    assert settings.speech_models == {"zh": Path("/models/vosk-model-small-cn-0.22")}
    assert (settings.speech_max_seconds, settings.speech_decode_timeout_seconds) == (60.0, 5.0)


def test_defaults_transcribe_nothing_and_allow_two_minutes(monkeypatch):
    for name in ("LIANHU_SPEECH_MODELS", "LIANHU_SPEECH_MAX_SECONDS", "LIANHU_SPEECH_DECODE_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = SpeechSettings()
    assert settings.speech_models == {} and settings.speech_max_seconds == 120.0


def test_a_bad_model_list_in_the_environment_stops_the_service(monkeypatch):
    monkeypatch.setenv("LIANHU_SPEECH_MODELS", "vosk-model-small-cn-0.22")
    with pytest.raises(ValidationError, match="language=model-directory"):
        SpeechSettings()
