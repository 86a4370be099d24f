"""Every matter gets an answer, end to end with days compressed to seconds (``LIANHU_TIME_SCALE``):
an unanswered report climbs village → township → county → department, each level told once; a
resolved one returns to the reporter and closes; a returned one is routed again; two routing
processes never fire a timer twice; a restart in the middle of the ladder loses no step.

Outcomes only: results are polled with a deadline, never timed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import create_pg_database, drop_pg_database
from tests.e2e.conftest import Session
from tests.support.platform import ROOT, Platform, free_port, platform_env, procfile

pytestmark = pytest.mark.e2e

# A day is 8.64 s: an urgent case (24 h per level) climbs a rung every ~9 s, a general one (7 days)
# waits a minute, long enough to act on it at leisure.
TIME_SCALE = "0.0001"
URGENT_ILLNESS = "牧民家里的老人突然昏迷不醒，需要马上送医院"
QUESTION = "请问今年的草原生态保护补助奖励资金什么时候发放？"
LADDER = ["township", "county", "department"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def platform(request, amqp_uri, tmp_path_factory):
    """The whole platform on one engine with the clock running fast, seeded with the demo county."""
    var_dir = tmp_path_factory.mktemp(f"cases-{request.param}")
    urls = {}
    if request.param == "postgresql":
        urls = {service: create_pg_database() for service in ("intake", "routing", "registry", "notify")}
    port = free_port()
    env = platform_env(var_dir, amqp_uri, urls, port)
    env.update(LIANHU_TIME_SCALE=TIME_SCALE, LIANHU_CLOCK_TICK_SECONDS="0.25")
    platform = Platform(env, var_dir, f"http://127.0.0.1:{port}")
    platform.metrics_ports = {"routing": free_port(), "notify": free_port()}
    try:
        platform.prepare_demo_county()
        for name in ("registry", "routing", "notify", "intake"):
            metrics_port = platform.metrics_ports.get(name)
            platform.start(
                name, {f"LIANHU_{name.upper()}_METRICS_PORT": str(metrics_port)} if metrics_port else None
            )
        platform.wait_ready()
        yield platform
    finally:
        platform.stop_all()
        for url in urls.values():
            drop_pg_database(url)


@pytest.fixture(scope="module")
def county(platform):
    """Who is who in Jiangqian: its township, villages (each with a grid leader and a liaison worker)."""
    accounts = platform.accounts()
    township = next(a for a in accounts if a["role"] == "township_command" and a["township"] == "江千乡")
    villages = [a["org_unit"] for a in accounts if a["role"] == "village_grid" and a["township"] == "江千乡"]
    sessions: list[Session] = []

    def sign_in(predicate) -> Session:
        session = Session(platform, next(a for a in accounts if predicate(a)))
        sessions.append(session)
        return session

    def worker_in(village: int) -> Session:
        units = {
            row[0]
            for row in platform.query("registry", "SELECT id FROM org_units WHERE parent_id = :v", v=village)
        }
        return sign_in(lambda a: a["role"] == "liaison_worker" and a["org_unit"] in units)

    yield {
        "township": township["org_unit"],
        "villages": sorted(villages),
        "sign_in": sign_in,
        "worker_in": worker_in,
        "grid": lambda village: sign_in(lambda a: a["role"] == "village_grid" and a["org_unit"] == village),
        "centre": sign_in(lambda a: a["role"] == "governance_centre"),
    }
    for session in sessions:
        session.client.close()


def submit(session: Session, text: str) -> str:
    response = session.client.post(
        "/v1/reports", json={"text": text}, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert response.status_code == 201, response.text
    report_id = response.json()["id"]
    session.wait_for(lambda body: body.get("case"), f"/v1/reports/{report_id}")
    return report_id


def act(session: Session, report_id: str, action: str, **fields):
    return session.client.post(f"/v1/reports/{report_id}/actions", json={"action": action, **fields})


def case_of(session: Session, report_id: str, predicate=lambda case: True, timeout: float = 30) -> dict:
    body = session.wait_for(
        lambda b: b.get("case") and predicate(b["case"]), f"/v1/reports/{report_id}", timeout
    )
    return {**body["case"], "timeline": body["timeline"]}


def climbed(case: dict) -> list[str]:
    return [entry["to_unit"]["kind"] for entry in case["timeline"] if entry["kind"] == "escalated"]


def inbox_item(session: Session, report_id: str, predicate=lambda item: True, timeout: float = 30) -> dict:
    body = session.wait_for(
        lambda b: any(i["report_id"] == report_id and predicate(i) for i in b["items"]),
        "/v1/inbox?limit=200",
        timeout,
    )
    return next(i for i in body["items"] if i["report_id"] == report_id)


def told_as_handler(platform: Platform, report_id: str) -> Counter:
    """(unit, kind) of every notice notify kept for a unit that had to act."""
    rows = platform.query(
        "notify",
        "SELECT org_unit_id, kind FROM inbox_notices WHERE role = 'handler' AND case_id IN"
        " (SELECT case_id FROM inbox_items WHERE report_id = :r)",
        r=report_id,
    )
    return Counter((unit, kind) for unit, kind in rows)


def test_an_unanswered_report_climbs_to_the_department_each_level_told_once(platform, county):
    worker = county["worker_in"](county["villages"][0])
    report_id = submit(worker, URGENT_ILLNESS)
    case = case_of(
        county["centre"], report_id, lambda c: c["escalations"] == 3 and c["state"] == "escalated", 120
    )
    assert climbed(case) == LADDER
    assert case["handler"]["org_unit"]["kind"] == "department" and case["ladder"] == []
    rungs = [entry["to_unit"]["id"] for entry in case["timeline"] if entry["kind"] == "escalated"]
    told = told_as_handler(platform, report_id)
    assert [told[(unit, "escalated")] for unit in rungs] == [1, 1, 1]
    # In each level's own inbox: one item, and the department now has to act on it.
    department = county["sign_in"](lambda a: a["org_unit"] == rungs[-1])
    item = inbox_item(department, report_id, lambda i: i["role"] == "handler")
    assert [n["kind"] for n in item["notices"] if n["role"] == "handler"].count("escalated") == 1
    township = county["sign_in"](
        lambda a: a["org_unit"] == county["township"] and a["role"] == "township_command"
    )
    items = [
        i for i in township.client.get("/v1/inbox?limit=200").json()["items"] if i["report_id"] == report_id
    ]
    assert len(items) == 1 and items[0]["role"] == "copy"


def test_a_resolved_report_returns_to_the_reporter_and_closes(platform, county):
    village = county["villages"][1]
    worker, grid = county["worker_in"](village), county["grid"](village)
    before = grid.client.get("/v1/stats/summary").json()
    report_id = submit(worker, QUESTION)
    assert act(grid, report_id, "acknowledge").json()["state"] == "acknowledged"
    resolved = act(grid, report_id, "resolve", note="补助资金12月底前到账，已电话告知")
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    # 事事有回应: the answer is in the reporter's own inbox.
    item = inbox_item(worker, report_id, lambda i: i["attention"] == "resolved")
    assert item["role"] == "reporter" and item["notices"][-1]["note"] == "补助资金12月底前到账，已电话告知"
    assert act(worker, report_id, "confirm", note="收到").json()["state"] == "closed"
    assert act(worker, report_id, "rate", rating=5, note="很满意").status_code == 200
    case = case_of(worker, report_id)
    assert case["state"] == "closed" and case["rating"] == {"score": 5, "note": "很满意"}
    kinds = [entry["kind"] for entry in case["timeline"]]
    assert kinds == ["routed", "acknowledged", "resolved", "confirmed", "rated"]
    assert case["timeline"][2]["actor"] == grid.account["username"]
    after = grid.client.get("/v1/stats/summary").json()
    assert after["collected"] - before["collected"] == 1
    assert after["resolved"] - before["resolved"] == 1
    assert after["resolved_on_time"] - before["resolved_on_time"] == 1
    assert after["satisfaction_avg"] is not None
    # The township's figures count it under this village.
    township = county["sign_in"](
        lambda a: a["org_unit"] == county["township"] and a["role"] == "township_command"
    )
    figures = township.client.get("/v1/stats/summary").json()
    assert next(row for row in figures["by_unit"] if row["unit"]["id"] == village)["resolved"] >= 1


def test_a_returned_report_is_routed_again(platform, county):
    village, right_village = county["villages"][2], county["villages"][3]
    worker, grid = county["worker_in"](village), county["grid"](village)
    report_id = submit(worker, QUESTION)
    returned = act(grid, report_id, "return", reason="not_ours", note="该户属于另一个村")
    assert returned.status_code == 200 and returned.json()["state"] == "returned"
    centre = county["centre"]
    case = case_of(centre, report_id)
    assert case["handler"]["org_unit"]["kind"] == "governance_centre"
    assert [e["kind"] for e in case["timeline"]][-2:] == ["returned", "rerouted"]
    inbox_item(centre, report_id, lambda i: i["attention"] == "assigned" and i["role"] == "handler")
    assert (
        act(centre, report_id, "reassign", unit_id=right_village, note="转二村").json()["state"]
        == "reassigned"
    )
    right_grid = county["grid"](right_village)
    inbox_item(right_grid, report_id, lambda i: i["role"] == "handler" and i["attention"] == "reassigned")
    assert act(right_grid, report_id, "acknowledge").json()["state"] == "acknowledged"
    # The grid that returned it still follows it, but may no longer act on it.
    assert act(grid, report_id, "resolve", note="x").status_code == 403


def metric(platform: Platform, service: str, name: str, **labels: str) -> float:
    """The sum of a service's samples of ``name`` with these labels (0 when there is none yet)."""
    scraped = httpx.get(f"http://127.0.0.1:{platform.metrics_ports[service]}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
    )


def wait_for_metric(platform: Platform, service: str, name: str, at_least: float, **labels: str) -> float:
    deadline = time.monotonic() + 60
    while (value := metric(platform, service, name, **labels)) < at_least:
        assert time.monotonic() < deadline, f"{service} {name}{labels} stayed at {value}"
        time.sleep(0.5)
    return value


def test_the_governance_figures_move_as_cases_do(platform, county):
    """What the governance dashboard reads: reports by category, escalations and resolutions by
    township, open and overdue cases by township, inbox deliveries."""
    township = "江千乡"
    routed = metric(platform, "routing", "lianhu_reports_routed_total", category="illness", urgency="urgent")
    climbed_ = metric(
        platform, "routing", "lianhu_case_escalations_total", township=township, level="township"
    )
    late = metric(platform, "routing", "lianhu_cases_resolved_total", township=township, on_time="false")
    sent = metric(platform, "notify", "lianhu_notifications_sent_total", channel="inbox")

    worker = county["worker_in"](county["villages"][0])
    report_id = submit(worker, URGENT_ILLNESS)
    wait_for_metric(
        platform, "routing", "lianhu_reports_routed_total", routed + 1, category="illness", urgency="urgent"
    )
    # Delivered to the village, the township (urgent) and the governance centre at least.
    wait_for_metric(platform, "notify", "lianhu_notifications_sent_total", sent + 3, channel="inbox")
    case_of(county["centre"], report_id, lambda c: c["escalations"] >= 1, 60)
    wait_for_metric(
        platform,
        "routing",
        "lianhu_case_escalations_total",
        climbed_ + 1,
        township=township,
        level="township",
    )
    wait_for_metric(platform, "routing", "lianhu_cases_open", 1, township=township, urgency="urgent")

    # Whoever holds it now resolves it: late, since it missed the village's deadline.
    deadline = time.monotonic() + 60
    while True:
        handler = case_of(county["centre"], report_id)["handler"]["org_unit"]["id"]
        holder = county["sign_in"](lambda a, unit=handler: a["org_unit"] == unit)
        if act(holder, report_id, "resolve", note="已送医").status_code == 200:
            break
        assert time.monotonic() < deadline, "the case could not be resolved by its handler"
    wait_for_metric(
        platform, "routing", "lianhu_cases_resolved_total", late + 1, township=township, on_time="false"
    )


def test_bad_input_gets_clear_answers(platform, county):
    village, other = county["villages"][1], county["villages"][3]
    worker, grid, stranger = county["worker_in"](village), county["grid"](village), county["grid"](other)
    report_id = submit(worker, QUESTION)
    cases = [
        (worker, "acknowledge", {}, 403, "forbidden"),  # the reporter does not handle it
        (stranger, "acknowledge", {}, 404, "not_found"),  # another village's grid leader
        (grid, "fly", {}, 422, "invalid_request"),
        (grid, "rate", {"rating": "five"}, 422, "invalid_request"),
        (grid, "reassign", {"unit_id": "x"}, 422, "invalid_request"),
        (grid, "resolve", {}, 422, "invalid_request"),  # a resolution says what was done
    ]
    for who, action, fields, status, code in cases:
        response = act(who, report_id, action, **fields)
        assert (response.status_code, response.json()["code"]) == (status, code), (action, response.text)
    missing = act(grid, "no-such-report", "acknowledge")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    act(grid, report_id, "resolve", note="已答复")
    act(worker, report_id, "confirm")
    closed = act(grid, report_id, "acknowledge")
    assert (closed.status_code, closed.json()["code"]) == (409, "conflict")
    # A retried request with its key gets its first answer, and acts once.
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = worker.client.post(
        f"/v1/reports/{report_id}/actions", json={"action": "rate", "rating": 4}, headers=key
    )
    again = worker.client.post(
        f"/v1/reports/{report_id}/actions", json={"action": "rate", "rating": 4}, headers=key
    )
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["entry"] == first.json()["entry"]
    unknown_unit = grid.client.get("/v1/stats/summary?unit=999999")
    assert unknown_unit.status_code == 404


def start_second_routing(platform: Platform) -> None:
    log = open(platform.var_dir / "routing-2.log", "ab")  # noqa: SIM115 - the process owns it
    platform.processes["routing-2"] = subprocess.Popen(
        ["bash", "-c", f"exec {procfile()['routing']}"],
        env=platform.env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def timeline_counts(platform: Platform, report_id: str) -> Counter:
    """(kind, stage, timer) of each entry of the case's timeline, counted."""
    rows = platform.query(
        "routing",
        "SELECT e.kind, e.detail FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.report_id = :r",
        r=report_id,
    )
    counts = Counter()
    for kind, detail in rows:
        detail = json.loads(detail) if isinstance(detail, str) else detail
        counts[(kind, detail.get("stage"), detail.get("timer"))] += 1
    return counts


def test_two_routing_processes_never_fire_a_timer_twice(platform, county):
    start_second_routing(platform)
    try:
        worker = county["worker_in"](county["villages"][0])
        reports = [submit(worker, URGENT_ILLNESS) for _ in range(4)]
        for report_id in reports:
            case = case_of(county["centre"], report_id, lambda c: c["escalations"] == 3, 120)
            assert climbed(case) == LADDER
        for report_id in reports:
            # Each reminder, escalation and overdue notice happened once per stage, whichever
            # process fired it; and each level was told once that it must act.
            counts = timeline_counts(platform, report_id)
            assert counts and max(counts.values()) == 1, counts
            told = told_as_handler(platform, report_id)
            assert [count for (_, kind), count in told.items() if kind == "escalated"] == [1, 1, 1]
    finally:
        platform.stop("routing-2")


def test_a_restart_in_the_middle_of_the_ladder_loses_no_step(platform, county):
    worker = county["worker_in"](county["villages"][2])
    report_id = submit(worker, URGENT_ILLNESS)
    case_of(county["centre"], report_id, lambda c: c["escalations"] >= 1, 60)
    platform.stop("routing", signal.SIGKILL)
    # The next deadline passes while nobody runs the clock.
    time.sleep(12)
    platform.start("routing")
    case = case_of(county["centre"], report_id, lambda c: c["escalations"] == 3, 120)
    assert climbed(case) == LADDER
    counts = timeline_counts(platform, report_id)
    assert max(counts.values()) == 1, counts
    told = told_as_handler(platform, report_id)
    rungs = [entry["to_unit"]["id"] for entry in case["timeline"] if entry["kind"] == "escalated"]
    assert [told[(unit, "escalated")] for unit in rungs] == [1, 1, 1]
