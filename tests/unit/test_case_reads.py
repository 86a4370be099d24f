"""Who reads which case, on both engines: one case's page, the console's list and its filters, and
the line between "not yours to see" (404) and "not yours to do" (403)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.routing.actions import Actor
from tests.unit.routing_world import (
    CENTRE,
    COUNTY,
    EMERGENCY,
    GRID,
    HEALTH,
    ILLNESS,
    KINDS,
    OTHER_GRID,
    OTHER_TOWNSHIP,
    PARENT,
    POLICY,
    REPORTER,
    STRANGER,
    TOWNSHIP,
    URGENT_ILLNESS,
    World,
    routing_sessions,
)

NEIGHBOUR = Actor("jq-lw-2", "liaison_worker", 30)  # another liaison worker of the same unit
EVERYONE = (REPORTER, NEIGHBOUR, GRID, OTHER_GRID, TOWNSHIP, OTHER_TOWNSHIP, COUNTY, CENTRE, HEALTH)
EVERYONE += (EMERGENCY, STRANGER)


@pytest.fixture
def world(database_url):
    engine, sessions = routing_sessions(database_url)
    yield World(sessions)
    engine.dispose()


def ancestors_and_self(unit: int) -> set[int]:
    found = {unit}
    while unit in PARENT:
        unit = PARENT[unit]
        found.add(unit)
    return found


def expected_viewers(world: World, report_id: str) -> set[str]:
    """From the tree, not from the code under test: the reporter, the county level, every unit on
    the way up from the matter's unit, and every unit the case reached."""
    case = world.case(report_id)
    area_unit = int(case.area_path.strip("/").split("/")[-1])
    units = ancestors_and_self(area_unit) | {r.org_unit_id for r in case.recipients}
    units |= {case.handler_unit_id}
    return {
        who.username
        for who in EVERYONE
        if who.username == case.reporter_username
        or who.org_unit_id in units
        or KINDS[who.org_unit_id] in ("county", "governance_centre")
    }


def test_a_case_page_is_for_those_it_concerns_and_nobody_else(world):
    report = world.report(ILLNESS)  # by the liaison worker of unit 30: handled by village 20
    expected = expected_viewers(world, report)
    assert {"jq-lw", "jq-lw-2", "grid-20", "township-10", "county", "centre-1"} <= expected
    for who in EVERYONE:
        page = world.read(report, who)
        assert (page is not None) == (who.username in expected), who
        listed = world.list(who)
        assert (report in listed) == (who.username in expected), who


def test_the_page_says_what_each_reader_may_do_now(world):
    report = world.report(ILLNESS)
    assert world.read(report, GRID)["allowed_actions"] == [
        "acknowledge",
        "start",
        "resolve",
        "return",
        "comment",
    ]
    assert world.read(report, TOWNSHIP)["allowed_actions"] == ["reassign", "escalate", "merge", "comment"]
    assert world.read(report, REPORTER)["allowed_actions"] == ["comment"]
    # In the area, but neither reporter nor handler nor above: sees the case, may do nothing.
    assert world.read(report, NEIGHBOUR)["allowed_actions"] == []

    world.act(report, GRID, "resolve", note="已处理")
    assert world.read(report, REPORTER)["allowed_actions"] == ["confirm", "reopen", "rate", "comment"]
    assert world.read(report, GRID)["allowed_actions"] == ["comment"]
    page = world.read(report, REPORTER)
    assert page["state"] == "resolved" and [e["kind"] for e in page["timeline"]] == ["routed", "resolved"]


def test_seen_but_not_yours_is_forbidden_and_unseen_is_not_found(world):
    report = world.report(ILLNESS)
    assert world.act(report, NEIGHBOUR, "comment", note="我也知道这户")["refused"] == "forbidden"
    assert world.act(report, STRANGER, "comment", note="x")["refused"] == "not_found"
    assert world.act(report, OTHER_TOWNSHIP, "escalate")["refused"] == "not_found"


def test_a_department_follows_its_category_and_acts_once_the_case_climbs_to_it(world):
    report = world.report(ILLNESS)
    # The category names the health department: it has a copy from the start, to read and comment.
    assert world.read(report, HEALTH)["allowed_actions"] == ["comment"]
    for _ in range(3):
        world.act(report, CENTRE, "escalate", note="督办")
    assert world.case(report).handler_unit_id == 5
    assert world.read(report, HEALTH)["allowed_actions"][:3] == ["acknowledge", "start", "resolve"]
    assert report in world.list(HEALTH)
    assert world.read(report, EMERGENCY) is None and report not in world.list(EMERGENCY)


def test_the_list_filters_narrow_the_callers_own_cases(world):
    illness = world.report(ILLNESS)
    world.now += timedelta(minutes=1)
    urgent = world.report(URGENT_ILLNESS)
    world.now += timedelta(minutes=1)
    policy = world.report(POLICY, reporter=Actor("grid-21", "village_grid", 21))
    world.act(illness, GRID, "resolve", note="已处理")

    assert world.list(COUNTY) == [policy, urgent, illness]  # newest first
    assert world.list(COUNTY, urgency="urgent") == [urgent]
    assert world.list(COUNTY, category="policy") == [policy]
    assert world.list(COUNTY, open=True) == [policy, urgent]
    assert world.list(COUNTY, open=False) == [illness]
    assert world.list(COUNTY, state=["resolved", "closed"]) == [illness]
    assert world.list(COUNTY, unit=21) == [policy]
    assert world.list(COUNTY, unit=20) == [urgent, illness]
    assert world.list(COUNTY, q="昏迷") == [urgent]
    assert world.list(COUNTY, q="老人 发烧") == [illness]
    assert world.list(COUNTY, q="%") == [policy, urgent, illness]  # a wildcard alone matches nothing special
    assert world.list(REPORTER, mine=True) == [urgent, illness]
    assert world.list(COUNTY, mine=True) == []
    assert world.list(COUNTY, overdue=True) == []
    assert world.list(GRID) == [urgent, illness]
    assert world.list(OTHER_GRID) == [policy]
    assert world.list(TOWNSHIP) == [policy, urgent, illness]
    assert world.list(OTHER_TOWNSHIP) == []


def test_overdue_cases_are_found_by_the_filter(world):
    report = world.report(POLICY)
    world.run_until(world.now + timedelta(days=8), step=timedelta(hours=6))
    assert world.list(COUNTY, overdue=True) == [report]
    assert world.list(COUNTY, overdue=False) == []


def test_pages_and_totals(world):
    from services.routing import case_reads

    made = []
    for minute in range(7):
        world.now += timedelta(minutes=minute)
        made.append(world.report(ILLNESS))
    with world.sessions() as session:
        viewer = world.viewer(COUNTY)
        first = case_reads.list_cases(session, viewer, case_reads.parse_filters({"page_size": 3}), None)
        third = case_reads.list_cases(
            session, viewer, case_reads.parse_filters({"page_size": 3, "page": 3}), None
        )
    assert (first["total"], first["page"], first["page_size"]) == (7, 1, 3)
    assert [item["report_id"] for item in first["items"]] == made[::-1][:3]
    assert [item["report_id"] for item in third["items"]] == [made[0]]
    item = first["items"][0]
    assert item["township"] == "township-10" and item["handler"]["org_unit"]["id"] == 20
    assert item["has_audio"] is False and item["overdue"] is False


@pytest.mark.parametrize(
    "filters",
    [
        {"page": 0},
        {"page_size": 101},
        {"urgency": "very"},
        {"state": ["lost"]},
        {"q": "x" * 101},
        {"unknown": 1},
        {"unit": "ten"},
    ],
)
def test_malformed_filters_are_refused_with_the_field(filters):
    from services.routing.actions import Invalid
    from services.routing.case_reads import parse_filters

    with pytest.raises(Invalid) as refused:
        parse_filters(filters)
    assert refused.value.problem["field"].split(".")[0] == next(iter(filters))
