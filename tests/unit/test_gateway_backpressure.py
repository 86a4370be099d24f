"""Past capacity the gateway says "slow down" (503 with Retry-After) instead of queueing without bound."""

from __future__ import annotations

import uuid

from services.intake.submissions import Overloaded
from tests.unit.test_gateway import gateway, recordings, send_voice  # noqa: F401 - fixtures


def test_a_full_report_queue_is_503_with_retry_after(gateway, monkeypatch):  # noqa: F811
    def full(*args, **kwargs):
        raise Overloaded

    monkeypatch.setattr(gateway.app.state.writer, "submit", full)
    response = gateway.client.post(
        "/v1/reports",
        json={"text": "草场起火了"},
        headers={**gateway.token(), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 503 and response.json()["code"] == "overloaded"
    assert int(response.headers["Retry-After"]) > 0


def test_recordings_past_the_cap_are_503_and_a_freed_slot_serves_again(gateway, recordings):  # noqa: F811
    checks = gateway.app.state.recording_checks
    checks.active = checks.limit  # every slot taken by recordings still being decoded
    refused = send_voice(gateway, recordings["clip.ogg"])
    assert refused.status_code == 503 and refused.json()["code"] == "overloaded"
    assert int(refused.headers["Retry-After"]) > 0
    checks.active = 0
    assert send_voice(gateway, recordings["clip.ogg"]).status_code == 201
    assert checks.active == 0, "a slot is given back once the recording is checked"
