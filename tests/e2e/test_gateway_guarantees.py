"""What the gateway promises a phone on a bad link: clear errors, no duplicates, nothing lost."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.e2e.test_text_reports import inbox_item, jiangqian_worker, routed

pytestmark = pytest.mark.e2e


def report_count(platform, username: str) -> int:
    return platform.query("intake", "SELECT count(*) FROM reports WHERE reporter_username = :u", u=username)[
        0
    ][0]


def test_every_endpoint_but_login_needs_a_token(platform):
    client = httpx.Client(base_url=platform.base_url)
    for method, path in [
        ("POST", "/v1/reports"),
        ("GET", "/v1/reports/x"),
        ("GET", "/v1/inbox"),
        ("POST", "/v1/routing/explain"),
    ]:
        response = client.request(method, path, json={"text": "x"})
        assert response.status_code == 401, (path, response.text)
        assert response.json()["code"] == "unauthorized"
    forged = client.get("/v1/inbox", headers={"Authorization": "Bearer not.a.token"})
    assert forged.status_code == 401
    wrong = client.post("/v1/auth/token", data={"username": "county-command", "password": "wrong"})
    assert wrong.status_code == 401


def test_bad_reports_get_clear_errors_and_leave_nothing_behind(platform, sign_in):
    worker = sign_in(jiangqian_worker)
    username = worker.account["username"]
    before = report_count(platform, username)
    cases = [
        ({"text": ""}, 422),
        ({"text": "   \n "}, 422),
        ({"text": "雪" * 4001}, 422),
        ({"text": 42}, 422),
        ({"text": "ok", "household_id": "abc"}, 422),
        ({"text": "ok", "household_id": 999_999_999}, 422),
        ({"text": "ok", "location": {"lat": 200, "lon": 0}}, 422),
        ({"text": "ok", "category": "other"}, 422),
        ({}, 422),
        ([], 422),
    ]
    for body, status in cases:
        response = worker.client.post(
            "/v1/reports", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        assert response.status_code == status, (body if len(str(body)) < 100 else "long text", response.text)
        error = response.json()
        assert error["detail"] and error["code"], error
    malformed = worker.client.post(
        "/v1/reports", content=b'{"text": "unterminated', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["code"] == "invalid_json"
    huge = worker.client.post(
        "/v1/reports", content=b"x" * 200_000, headers={"Content-Type": "application/json"}
    )
    assert huge.status_code == 413
    assert worker.client.get(f"/v1/reports/{uuid.uuid4()}").status_code == 404
    assert report_count(platform, username) == before


def test_idempotency_key_replays_and_refuses_reuse(platform, sign_in):
    worker = sign_in(jiangqian_worker)
    headers = {"Idempotency-Key": f"phone-{uuid.uuid4()}"}
    body = {"text": "草场边界有纠纷，两家人吵起来了"}
    first = worker.client.post("/v1/reports", json=body, headers=headers)
    again = worker.client.post("/v1/reports", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = worker.client.post("/v1/reports", json={"text": "另一件事"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    routed(worker, first.json()["id"])
    cases = platform.query("routing", "SELECT count(*) FROM cases WHERE report_id = :r", r=first.json()["id"])
    assert cases == [(1,)]


def test_report_accepted_while_broker_is_down_is_delivered_when_it_returns(platform, sign_in):
    worker = sign_in(jiangqian_worker)
    centre = sign_in(lambda a: a["role"] == "governance_centre")
    platform.broker_link.cut()
    try:
        response = worker.client.post(
            "/v1/reports",
            json={"text": "村里的路被洪水冲断了"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        report_id = response.json()["id"]
        time.sleep(1.5)
        pending = platform.query("intake", "SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0][0]
        assert pending >= 1, "the report waits in the outbox while the broker is away"
        ready = httpx.get(f"{platform.base_url}/readyz").json()
        assert ready["checks"]["broker"] == "unavailable"
    finally:
        platform.broker_link.restore()
    item = centre.wait_for(
        lambda b: any(i["report_id"] == report_id for i in b["items"]), "/v1/inbox?limit=200", timeout=60
    )
    assert item
    assert inbox_item(centre, report_id)["role"] == "copy"
    assert platform.query("intake", "SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0][0] == 0
