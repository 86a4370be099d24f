"""A case after routing, action by action, on both engines: who may do what, from which state, what
lands on the timeline, who is told, and that a retried action acts once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.routing_world import (
    CENTRE,
    COUNTY,
    EMERGENCY,
    GRID,
    HEALTH,
    ILLNESS,
    OTHER_GRID,
    OTHER_TOWNSHIP,
    POLICY,
    REPORTER,
    STRANGER,
    T0,
    TOWNSHIP,
    World,
    routing_sessions,
)


@pytest.fixture
def world(database_url):
    engine, sessions = routing_sessions(database_url)
    yield World(sessions)
    engine.dispose()


def test_the_whole_loop_acknowledge_start_resolve_confirm_rate(world):
    report = world.report(ILLNESS)
    case = world.case(report)
    assert (case.state, case.category, case.urgency, case.handler_unit_id) == (
        "routed",
        "illness",
        "general",
        20,
    )

    assert world.act(report, GRID, "acknowledge")["state"] == "acknowledged"
    assert world.act(report, GRID, "start", note="明天上门")["state"] == "in_progress"
    resolved = world.act(report, GRID, "resolve", note="已请乡卫生院医生上门诊治")
    assert (resolved["state"], resolved["entry"]["actor"], resolved["entry"]["note"]) == (
        "resolved",
        "grid-20",
        "已请乡卫生院医生上门诊治",
    )
    # 事事有回应: the resolution reaches the reporter's own unit, with its words.
    [update] = [u for u in world.updates(report) if u.change == "resolved"]
    [notice] = update.notices
    assert (notice.kind, notice.role, notice.org_unit.id, notice.note) == (
        "resolved",
        "reporter",
        30,
        "已请乡卫生院医生上门诊治",
    )
    assert world.act(report, REPORTER, "confirm", note="医生来过了")["state"] == "closed"
    rated = world.act(report, REPORTER, "rate", rating=5, note="很满意")
    assert rated["state"] == "closed" and rated["entry"]["rating"] == 5

    case = world.case(report)
    assert (case.rating, case.rating_note, case.next_due_at) == (5, "很满意", None)
    assert world.kinds(report) == ["routed", "acknowledged", "started", "resolved", "confirmed", "rated"]
    # Who, when and why, for every step.
    for entry in world.timeline(report)[1:]:
        assert entry["actor"] in ("grid-20", "jq-lw") and entry["at"] and "note" in entry
    assert world.pending(report) == []


@pytest.mark.parametrize(
    ("who", "action", "fields", "code"),
    [
        (REPORTER, "acknowledge", {}, "forbidden"),  # the reporter is not the handler
        (TOWNSHIP, "resolve", {"note": "x"}, "forbidden"),  # above is not the handler
        (GRID, "reassign", {"unit_id": 21}, "forbidden"),  # the handler cannot pass it sideways
        (GRID, "confirm", {}, "forbidden"),
        (HEALTH, "acknowledge", {}, "forbidden"),  # a copy may comment, not act
        (EMERGENCY, "comment", {"note": "?"}, "not_found"),  # a department the case never reached
        (STRANGER, "comment", {"note": "?"}, "not_found"),  # another township's village
        (OTHER_GRID, "acknowledge", {}, "not_found"),  # the next village over
        (OTHER_TOWNSHIP, "escalate", {}, "not_found"),
        (REPORTER, "confirm", {}, "conflict"),  # nothing is resolved yet
        (REPORTER, "rate", {"rating": 4}, "conflict"),
    ],
)
def test_who_may_act_and_when(world, who, action, fields, code):
    report = world.report(ILLNESS)
    answer = world.act(report, who, action, **fields)
    assert answer.get("refused") == code, answer
    assert world.kinds(report) == ["routed"]


def test_the_levels_above_and_the_copies_may_comment_strangers_may_not(world):
    report = world.report(ILLNESS)
    for who in (TOWNSHIP, COUNTY, CENTRE, GRID, REPORTER):
        assert "refused" not in world.act(report, who, "comment", note=f"{who.username} 关注")
    assert world.act(report, STRANGER, "comment", note="?")["refused"] == "not_found"
    # A comment from above reaches the handler and the reporter; the reporter's own reaches the handler.
    comments = [u for u in world.updates(report) if u.change == "comment"]
    assert {(n.role, n.org_unit.id) for n in comments[0].notices} == {("handler", 20), ("reporter", 30)}
    assert {(n.role, n.org_unit.id) for n in comments[3].notices} == {("reporter", 30)}
    assert {(n.role, n.org_unit.id) for n in comments[4].notices} == {("handler", 20)}


def test_nothing_happens_to_a_closed_case(world):
    report = world.report(POLICY)
    world.act(report, GRID, "resolve", note="已答复")
    world.act(report, REPORTER, "confirm")
    for who, action, fields in [
        (GRID, "acknowledge", {}),
        (GRID, "resolve", {"note": "again"}),
        (REPORTER, "reopen", {"note": "no"}),
        (TOWNSHIP, "escalate", {}),
        (GRID, "comment", {"note": "late"}),
    ]:
        assert world.act(report, who, action, **fields)["refused"] == "conflict"
    # ... except the reporter's verdict (回访), once.
    assert world.act(report, REPORTER, "rate", rating=3)["state"] == "closed"
    assert world.act(report, REPORTER, "rate", rating=4)["refused"] == "conflict"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "fly"}, "action"),
        ({"action": "resolve"}, "action"),  # a resolution says what was done
        ({"action": "return", "note": "x"}, "action"),  # and a return why
        ({"action": "reassign"}, "action"),
        ({"action": "rate", "rating": 6}, "rating"),
        ({"action": "rate", "rating": "5"}, "rating"),
        ({"action": "comment", "note": 5}, "note"),
        ({"action": "acknowledge", "unit": 3}, "unit"),
    ],
)
def test_malformed_actions_are_refused_with_the_field(world, fields, field):
    report = world.report(ILLNESS)
    fields = dict(fields)
    answer = world.act(report, GRID, fields.pop("action"), **fields)
    assert answer["errors"][0]["field"] == field, answer


def test_a_retried_action_returns_its_first_outcome_and_acts_once(world):
    report = world.report(ILLNESS)
    first = world.act(report, GRID, "comment", note="已联系", action_id="k-1")
    again = world.act(report, GRID, "comment", note="已联系", action_id="k-1", at=T0 + timedelta(minutes=5))
    assert again == {**first, "replayed": True}
    assert world.kinds(report) == ["routed", "comment"]
    # A state change retried after it happened is still its first outcome, not a 409.
    world.act(report, GRID, "acknowledge", action_id="k-2")
    assert world.act(report, GRID, "acknowledge", action_id="k-2")["replayed"] is True
    # The same key for something else is a client bug, said so.
    other = world.act(report, GRID, "comment", note="别的", action_id="k-1")
    assert other["errors"][0]["field"] == "action_id"


def test_returned_as_not_ours_goes_to_the_centre_to_dispatch_again(world):
    report = world.report(ILLNESS)
    answer = world.act(report, GRID, "return", reason="not_ours", note="不是本村牧户")
    case = world.case(report)
    assert answer["state"] == case.state == "returned"
    assert (case.handler_unit_id, case.stage) == (2, 2)
    # Above the centre only the category's department is left; a fresh deadline from the return.
    assert [rung["org_unit"]["id"] for rung in case.ladder] == [5]
    assert case.deadline_at == T0 + timedelta(days=7)
    assert world.kinds(report)[-2:] == ["returned", "rerouted"]
    assert ("assigned", 2, "handler") in world.notices(report)
    # The centre dispatches it to the right village.
    reassigned = world.act(report, CENTRE, "reassign", unit_id=21, note="属于二村")
    assert reassigned["state"] == "reassigned"
    case = world.case(report)
    assert case.handler_unit_id == 21
    assert [rung["org_unit"]["id"] for rung in case.ladder] == [10, 1, 5]
    assert world.act(report, OTHER_GRID, "acknowledge")["state"] == "acknowledged"
    assert world.act(report, GRID, "acknowledge")["refused"] == "forbidden"  # still involved: sees it


def test_returned_as_beyond_this_level_climbs_one_rung(world):
    report = world.report(ILLNESS)
    answer = world.act(report, GRID, "return", reason="cannot_solve", note="需要乡里协调车辆")
    case = world.case(report)
    assert answer["state"] == case.state == "escalated"
    assert (case.handler_unit_id, case.escalations) == (10, 1)
    assert world.kinds(report)[-2:] == ["returned", "escalated"]
    assert world.act(report, TOWNSHIP, "acknowledge")["state"] == "acknowledged"


def test_reassign_only_within_the_reach_of_the_level_above(world):
    report = world.report(ILLNESS)
    far = world.act(report, TOWNSHIP, "reassign", unit_id=22, note="x")  # another township's village
    assert far["errors"][0]["field"] == "unit_id"
    liaison = world.act(report, TOWNSHIP, "reassign", unit_id=31, note="x")  # a liaison unit handles nothing
    assert liaison["errors"][0]["field"] == "unit_id"
    assert world.act(report, TOWNSHIP, "reassign", unit_id=20)["refused"] == "conflict"  # already there
    moved = world.act(report, COUNTY, "reassign", unit_id=5, note="卫健局直接处理")
    assert moved["state"] == "reassigned"
    case = world.case(report)
    assert (case.handler_unit_id, case.ladder) == (5, [])  # the department is the top
    roles = {(n.org_unit.id, n.role) for n in world.updates(report)[-1].notices}
    assert roles == {(5, "handler"), (20, "copy")}
    assert world.act(report, HEALTH, "resolve", note="已派医生")["state"] == "resolved"


def test_escalate_by_hand_until_the_top(world):
    report = world.report(ILLNESS)
    for handler in (10, 1, 5):
        assert world.act(report, CENTRE, "escalate", note="督办")["state"] == "escalated"
        assert world.case(report).handler_unit_id == handler
    assert world.act(report, CENTRE, "escalate")["refused"] == "conflict"
    assert world.case(report).escalations == 3


def test_a_duplicate_joins_its_original_and_both_reporters_hear_the_result(world):
    from services.routing.actions import Actor

    original = world.report(ILLNESS)
    other_reporter = Actor("jq-lw-2", "liaison_worker", 30)
    duplicate = world.report("老人发烧咳嗽，需要医生", reporter=other_reporter)
    assert world.act(duplicate, TOWNSHIP, "merge", into=duplicate)["errors"][0]["field"] == "into"
    assert world.act(duplicate, TOWNSHIP, "merge", into="no-such")["errors"][0]["field"] == "into"
    merged = world.act(duplicate, TOWNSHIP, "merge", into=original, note="同一户")
    assert merged["state"] == "merged"
    assert world.case(duplicate).merged_into == original
    assert world.pending(duplicate) == []  # its clock stops; the original's runs
    assert world.kinds(original)[-1] == "merged"
    assert world.act(duplicate, GRID, "resolve", note="x")["refused"] == "conflict"

    world.act(original, GRID, "resolve", note="医生已诊治")
    [heard] = [u for u in world.updates(duplicate) if u.change == "resolved"]
    assert [(n.kind, n.role, n.note) for n in heard.notices] == [("resolved", "reporter", "医生已诊治")]
    assert world.case(duplicate).resolved_at is not None


def test_reopened_goes_back_to_the_handler_with_a_fresh_deadline(world):
    report = world.report(ILLNESS)
    world.act(report, GRID, "resolve", note="已处理")
    later = T0 + timedelta(days=2)
    reopened = world.act(report, REPORTER, "reopen", note="医生没有来", at=later)
    case = world.case(report)
    assert reopened["state"] == case.state == "reopened"
    assert (case.handler_unit_id, case.stage, case.resolved_at) == (20, 2, None)
    assert case.deadline_at == later + timedelta(days=7)
    assert ("reopened", 20, "handler") in world.notices(report)
    assert world.act(report, GRID, "resolve", note="这次上门了")["state"] == "resolved"
