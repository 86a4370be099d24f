"""A text report travels end to end: gateway → routing → notify, on a real broker and database."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

pytestmark = pytest.mark.e2e

JIANGQIAN = "江千乡"


def jiangqian_worker(account: dict) -> bool:
    return account["role"] == "liaison_worker" and account["township"] == JIANGQIAN


def key() -> dict:
    return {"Idempotency-Key": str(uuid.uuid4())}


def submit(session, body: dict) -> dict:
    response = session.client.post("/v1/reports", json=body, headers=key())
    assert response.status_code == 201, response.text
    return response.json()


def routed(session, report_id: str) -> dict:
    return session.wait_for(lambda body: body.get("case"), f"/v1/reports/{report_id}")


def inbox_item(session, report_id: str) -> dict:
    body = session.wait_for(
        lambda b: any(item["report_id"] == report_id for item in b["items"]), "/v1/inbox?limit=200"
    )
    return next(item for item in body["items"] if item["report_id"] == report_id)


def inbox_report_ids(session) -> set[str]:
    return {item["report_id"] for item in session.client.get("/v1/inbox?limit=200").json()["items"]}


def parent_of(platform, unit_id: int) -> int:
    return platform.query("registry", "SELECT parent_id FROM org_units WHERE id = :id", id=unit_id)[0][0]


def hours_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)) / timedelta(hours=1)


def test_chinese_report_reaches_grid_leader_and_centre_only(platform, sign_in):
    worker = sign_in(jiangqian_worker)
    village = parent_of(platform, worker.account["org_unit"])
    township = parent_of(platform, village)

    report = submit(worker, {"text": "请问今年的草原生态保护补助奖励资金什么时候发放？"})
    assert report["status"] == "received"
    case = routed(worker, report["id"])
    # Every timestamp says its zone, on SQLite as on PostgreSQL, and reads back as it was written.
    assert case["created_at"] == report["created_at"]
    assert datetime.fromisoformat(case["created_at"]).utcoffset() == timedelta(0)
    assert (case["category"], case["urgency"]) == ("policy", "general")
    assert case["case"]["handler"]["org_unit"]["id"] == village
    assert case["case"]["handler"]["role"] == "handler"
    assert case["matched"], "the evidence for the decision is kept"
    recipients = {(r["role"], r["org_unit"]["kind"]) for r in case["case"]["recipients"]}
    assert recipients == {("handler", "village"), ("copy", "governance_centre")}
    assert hours_between(case["case"]["routed_at"], case["case"]["deadline_at"]) == pytest.approx(
        168, abs=0.1
    )

    grid = sign_in(lambda a: a["role"] == "village_grid" and a["org_unit"] == village)
    assert inbox_item(grid, report["id"])["role"] == "handler"
    centre = sign_in(lambda a: a["role"] == "governance_centre")
    item = inbox_item(centre, report["id"])
    assert (item["role"], item["category"]) == ("copy", "policy")
    # Directed, not broadcast: a general matter does not go to the township command.
    command = sign_in(lambda a: a["role"] == "township_command" and a["org_unit"] == township)
    assert report["id"] not in inbox_report_ids(command)


def test_tibetan_urgent_report_also_reaches_township_command(platform, sign_in):
    worker = sign_in(jiangqian_worker)
    village = parent_of(platform, worker.account["org_unit"])
    township = parent_of(platform, village)

    report = submit(worker, {"text": "ཁ་བ་ཆེན་པོ་བབས་ནས་ཕྱུགས་མང་པོ་ཤི་སོང་། ཛ་དྲག་རོགས་རམ་དགོས།"})
    case = routed(worker, report["id"])
    assert case["category"] == "weather_disaster"
    assert case["urgency"] == "urgent"
    assert any(term["language"] == "bo" for term in case["matched"])
    assert hours_between(case["case"]["routed_at"], case["case"]["deadline_at"]) < 168

    kinds = {r["org_unit"]["kind"]: r["role"] for r in case["case"]["recipients"]}
    assert kinds["village"] == "handler"
    assert kinds["governance_centre"] == "copy"
    assert kinds["township"] == "copy"
    command = sign_in(lambda a: a["role"] == "township_command" and a["org_unit"] == township)
    assert inbox_item(command, report["id"])["urgency"] == "urgent"
    grid = sign_in(lambda a: a["role"] == "village_grid" and a["org_unit"] == village)
    assert inbox_item(grid, report["id"])["role"] == "handler"


def test_urgent_illness_reaches_township_and_health_department(platform, sign_in):
    worker = sign_in(jiangqian_worker)
    report = submit(worker, {"text": "牧民家里的老人突然昏迷不醒，需要马上送医院"})
    case = routed(worker, report["id"])
    assert (case["category"], case["urgency"]) == ("illness", "urgent")
    positions = {r["position"] for r in case["case"]["recipients"]}
    assert {"village_grid", "governance_centre", "township_command", "department"} <= positions
    health = sign_in(
        lambda a: (
            a["role"] == "department"
            and a["org_unit"]
            == next(r["org_unit"]["id"] for r in case["case"]["recipients"] if r["position"] == "department")
        )
    )
    assert inbox_item(health, report["id"])["role"] == "copy"


def test_report_for_a_household_goes_to_that_households_village(platform, sign_in):
    worker = sign_in(jiangqian_worker)
    other_village_household = platform.query(
        "registry",
        """SELECT h.id, lu.parent_id FROM households h JOIN org_units lu ON lu.id = h.liaison_unit_id
           WHERE lu.parent_id != (SELECT parent_id FROM org_units WHERE id = :unit) LIMIT 1""",
        unit=worker.account["org_unit"],
    )[0]
    report = submit(worker, {"text": "这户牧民的牦牛病了好几头", "household_id": other_village_household[0]})
    case = routed(worker, report["id"])
    assert case["household_id"] == other_village_household[0]
    assert case["case"]["handler"]["org_unit"]["id"] == other_village_household[1]


def test_explain_says_what_routing_would_do_without_storing(platform, sign_in):
    centre = sign_in(lambda a: a["role"] == "governance_centre")
    worker = next(a for a in platform.accounts() if jiangqian_worker(a))
    cases_before = platform.query("routing", "SELECT count(*) FROM cases")[0][0]
    response = centre.client.post(
        "/v1/routing/explain", json={"text": "山上发生大面积火灾，有人被困", "reporter": worker["username"]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["urgency"] == "urgent"
    assert body["matched"]
    assert {r["position"] for r in body["recipients"]} >= {
        "village_grid",
        "governance_centre",
        "township_command",
    }
    assert datetime.fromisoformat(body["deadline_at"]) > datetime.now().astimezone()
    assert platform.query("routing", "SELECT count(*) FROM cases")[0][0] == cases_before
    unknown = centre.client.post("/v1/routing/explain", json={"text": "x", "reporter": "nobody-here"})
    assert unknown.status_code == 404
