"""A voice report end to end: gateway → routing (at once) → notify, and speech → routing again.

No Chinese or Tibetan Vosk model can be installed on this machine; the Korean model from PyPI stands
in for the Mandarin one (``zh=…``), so the transcript is Korean text, and Tibetan has no model at
all — which is the real state of Tibetan speech recognition, and must fail cleanly.
"""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.test_text_reports import jiangqian_worker, parent_of
from tests.support.vosk_model import KOREAN_MODEL, spoken_korean_clip

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def speech(platform):
    platform.start("speech", env={"LIANHU_SPEECH_MODELS": f"zh={KOREAN_MODEL}", "LIANHU_MAX_WORKERS": "1"})
    platform.wait_ready(timeout=120)
    return platform


@pytest.fixture(scope="module")
def korean_clip(tmp_path_factory) -> bytes:
    return spoken_korean_clip(tmp_path_factory.mktemp("clips"))


def send_voice(session, clip: bytes, language: str) -> dict:
    response = session.client.post(
        "/v1/reports",
        data={"language": language},
        files={"audio": ("voice.ogg", clip, "audio/ogg")},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_a_voice_report_reaches_the_handler_first_and_its_transcript_follows(speech, sign_in, korean_clip):
    worker = sign_in(jiangqian_worker)
    village = parent_of(speech, worker.account["org_unit"])
    grid = sign_in(lambda a: a["role"] == "village_grid" and a["org_unit"] == village)
    report = send_voice(worker, korean_clip, "zh")
    assert report["transcription"] == "pending" and report["audio"]["seconds"] > 1

    done = worker.wait_for(
        lambda body: body.get("transcription") == "done", f"/v1/reports/{report['id']}", 90
    )
    assert done["transcript"].strip()
    kinds = [entry["kind"] for entry in done["timeline"]]
    assert kinds == ["routed", "transcribed"]
    transcribed_at = done["timeline"][1]["at"]

    item = next(
        i for i in grid.client.get("/v1/inbox?limit=200").json()["items"] if i["report_id"] == report["id"]
    )
    # The handler had it, with its recording, before the transcript existed.
    assert item["created_at"] < transcribed_at and item["audio"] == report["audio"]["url"]
    assert item["transcription"] == "done"
    part = grid.client.get(report["audio"]["url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == korean_clip[:100]


def test_tibetan_without_a_model_fails_cleanly_and_the_recording_stays(speech, sign_in, korean_clip):
    worker = sign_in(jiangqian_worker)
    report = send_voice(worker, korean_clip, "auto")  # a liaison worker's own language: Tibetan
    assert report["language"] == "bo"
    failed = worker.wait_for(
        lambda body: body.get("transcription") == "failed", f"/v1/reports/{report['id']}", 60
    )
    assert failed["timeline"][-1]["reason"] == "no_model"
    assert failed["case"]["handler"]["org_unit"]["kind"] == "village"
    played = worker.client.get(report["audio"]["url"])
    assert played.status_code == 200 and played.content == korean_clip
