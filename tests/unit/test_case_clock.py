"""The durable clock with an injected "now": deadlines from the rules (in working days if asked, at
any time scale), reminders before the deadline, the escalation ladder village → township → county →
department, overdue reminders at the top, the confirmation window, and every timer fired once, also
by two pollers at once and after an outage."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from lianhu.db import make_engine, make_session_factory
from lianhu.events import ReportTranscribed
from services.routing import cases, timers
from services.routing.classify import classify, load_rules
from services.routing.clock import CaseClock, ClockRules, add_working_time, parse_clock_rules
from services.routing.models import CaseEvent, CaseTimer
from tests.unit.routing_world import (
    GRID,
    ILLNESS,
    POLICY,
    REGISTRY,
    REPORTER,
    RULES,
    T0,
    World,
    routing_sessions,
)

WEEK = timedelta(days=7)


@pytest.fixture
def world(database_url):
    engine, sessions = routing_sessions(database_url)
    yield World(sessions)
    engine.dispose()


# ---------------------------------------------------------------------------------- deadlines


def test_deadlines_come_from_the_rules_per_category_and_urgency():
    clock = CaseClock(RULES)
    assert clock.deadline("policy", "general", T0) == T0 + WEEK
    assert clock.deadline("illness", "urgent", T0) == T0 + timedelta(hours=24)
    assert clock.deadline("dispute", "urgent", T0) == T0 + timedelta(hours=72)


def test_the_time_scale_multiplies_every_duration():
    clock = CaseClock(RULES, scale=0.00001)
    assert clock.deadline("policy", "general", T0) - T0 == timedelta(seconds=6.048)
    assert clock.confirm_by(T0) - T0 == timedelta(seconds=72 * 3600 * 0.00001)
    [(remind_48, due_48), (remind_8, _), (due, _)] = clock.stage_timers(
        "general", T0, T0 + timedelta(seconds=6.048)
    )
    assert (remind_48, remind_8, due) == ("remind:48", "remind:8", "due")
    assert due_48 == T0 + timedelta(seconds=6.048 - 1.728)


def test_a_reminder_point_before_the_handler_got_the_case_is_skipped():
    clock = CaseClock(RULES)
    deadline = T0 + timedelta(hours=24)
    assert [kind for kind, _ in clock.stage_timers("general", T0, deadline)] == ["remind:8", "due"]
    assert [kind for kind, _ in clock.stage_timers("urgent", T0, deadline)] == ["remind:4", "remind:1", "due"]


def test_working_days_skip_weekends_and_holidays_and_count_workdays():
    rules = ClockRules(working_day_urgencies=frozenset({"general"}))
    friday_evening = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)  # 18:00 in the county
    # 6 h left of Friday, the weekend off, then Monday onwards.
    assert add_working_time(friday_evening, timedelta(days=1), rules) == datetime(
        2026, 12, 7, 10, 0, tzinfo=UTC
    )
    saturday = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
    assert add_working_time(saturday, timedelta(hours=1), rules) == datetime(2026, 12, 6, 17, 0, tzinfo=UTC)
    holiday = replace(rules, holidays=frozenset({date(2026, 12, 7)}))
    assert add_working_time(friday_evening, timedelta(days=1), holiday) == datetime(
        2026, 12, 8, 10, 0, tzinfo=UTC
    )
    worked_saturday = replace(rules, workdays=frozenset({date(2026, 12, 5)}))
    assert add_working_time(friday_evening, timedelta(days=1), worked_saturday) == datetime(
        2026, 12, 5, 10, 0, tzinfo=UTC
    )


def test_general_deadlines_in_working_days_urgent_ones_on_the_calendar():
    rules = replace(RULES, clock=parse_clock_rules({"working_days": {"urgencies": ["general"]}}))
    clock = CaseClock(rules)
    friday_evening = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    # Seven working days from Friday 18:00: Friday's last hours count, two weekends do not.
    assert clock.deadline("policy", "general", friday_evening) == datetime(2026, 12, 15, 10, 0, tzinfo=UTC)
    assert clock.deadline("illness", "urgent", friday_evening) == friday_evening + timedelta(hours=24)
    # Scaled, the working-day span shrinks like any other.
    scaled = CaseClock(rules, scale=0.001)
    assert scaled.deadline("policy", "general", friday_evening) - friday_evening == timedelta(days=11) * 0.001


@pytest.mark.parametrize(
    "section",
    [
        {"reminder_hours_before": {"general": [0]}},
        {"reminder_hours_before": {"soon": [1]}},
        {"confirm_window_hours": True},
        {"working_days": {"urgencies": ["sometimes"]}},
        {"working_days": {"holidays": ["2026-10-01"]}},  # a string, not a YAML date
        {"working_days": {"utc_offset_hours": 30}},
        {"tick": 5},
    ],
)
def test_a_bad_clock_section_is_refused_at_load(tmp_path, section):
    import yaml

    from services.routing.classify import DEFAULT_RULES_PATH, RulesError

    data = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    data["clock"] = section
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RulesError, match="clock"):
        load_rules(path)


# ----------------------------------------------------------------------------- the ladder


def escalations_to(world: World, report: str) -> list[int]:
    return [entry["to_unit"]["id"] for entry in world.timeline(report) if entry["kind"] == "escalated"]


def test_an_unanswered_case_climbs_village_township_county_department_each_told_once(world):
    report = world.report(ILLNESS)
    case = world.case(report)
    assert [rung["org_unit"]["id"] for rung in case.ladder] == [10, 1, 5]
    assert world.pending(report) == [(1, "remind:48"), (1, "remind:8"), (1, "due")]

    world.tick(T0 + WEEK - timedelta(hours=48))
    world.tick(T0 + WEEK - timedelta(hours=48))  # the same moment again fires nothing more
    assert world.notices(report) == [("reminder", 20, "handler")]

    world.tick(T0 + WEEK - timedelta(hours=8))
    world.tick(T0 + WEEK)
    case = world.case(report)
    assert (case.state, case.handler_unit_id, case.stage, case.escalations) == ("escalated", 10, 2, 1)
    assert case.deadline_at == T0 + 2 * WEEK and case.overdue_at == T0 + WEEK
    assert world.notices(report)[-2:] == [("escalated", 10, "handler"), ("escalated", 20, "copy")]

    world.run_until(T0 + 5 * WEEK, step=timedelta(hours=1))
    case = world.case(report)
    assert (case.handler_unit_id, case.stage, case.escalations, case.ladder) == (5, 4, 3, [])
    assert escalations_to(world, report) == [10, 1, 5]
    told = Counter(world.notices(report))
    for unit in (10, 1, 5):
        assert told[("escalated", unit, "handler")] == 1
    assert told[("escalated", 2, "copy")] == 1  # the centre works with the county command
    assert all(told[("reminder", unit, "handler")] == 2 for unit in (20, 10, 1, 5))
    # At the top, overdue: the department and the county are reminded every 24 h from then.
    overdue_days = (T0 + 5 * WEEK - (T0 + 4 * WEEK)) // timedelta(hours=24)
    assert told[("overdue", 5, "handler")] == overdue_days + 1
    assert told[("overdue", 1, "supervisor")] == told[("overdue", 2, "supervisor")] == overdue_days + 1


def test_a_policy_question_stops_at_the_county_where_the_county_is_reminded(world):
    report = world.report(POLICY)
    assert [rung["org_unit"]["id"] for rung in world.case(report).ladder] == [10, 1]
    world.run_until(T0 + 3 * WEEK + timedelta(days=1), step=timedelta(hours=6))
    case = world.case(report)
    assert (case.handler_unit_id, case.escalations) == (1, 2)
    assert ("overdue", 1, "handler") in world.notices(report)
    assert ("overdue", 2, "supervisor") in world.notices(report)
    assert ("overdue", 1, "supervisor") not in world.notices(report)  # not twice to the same unit


def test_a_resolved_case_stops_its_clock_and_closes_after_the_window(world):
    report = world.report(ILLNESS)
    world.act(report, GRID, "resolve", note="已处理", at=T0 + timedelta(days=1))
    assert world.pending(report) == [(1, "autoclose")]
    world.run_until(T0 + timedelta(days=4) + timedelta(hours=1), step=timedelta(hours=1))
    case = world.case(report)
    assert (case.state, case.escalations, case.overdue_at) == ("closed", 0, None)
    assert world.timeline(report)[-1]["kind"] == "closed" and world.timeline(report)[-1]["actor"] == "routing"
    assert world.act(report, REPORTER, "confirm")["refused"] == "conflict"
    assert world.act(report, REPORTER, "rate", rating=2, note="太慢")["state"] == "closed"


def test_acknowledged_is_not_resolved_the_case_still_climbs(world):
    report = world.report(ILLNESS)
    world.act(report, GRID, "acknowledge")
    world.tick(T0 + WEEK)
    assert world.case(report).handler_unit_id == 10


def test_a_poller_that_was_down_for_weeks_loses_no_step(world):
    report = world.report(ILLNESS)
    restart = T0 + 6 * WEEK
    world.tick(restart)
    # One rung per missed deadline would be a burst the township never saw: the first overdue
    # deadline escalates once, and the next rung gets a whole fresh deadline from the restart.
    case = world.case(report)
    assert (case.handler_unit_id, case.deadline_at) == (10, restart + WEEK)
    with world.sessions() as session:
        outcomes = dict(
            session.execute(select(CaseTimer.kind, CaseTimer.outcome).where(CaseTimer.stage == 1)).all()
        )
    assert outcomes == {"remind:48": "skipped", "remind:8": "skipped", "due": "fired"}
    world.run_until(restart + 3 * WEEK + timedelta(hours=1), step=timedelta(hours=2))
    assert escalations_to(world, report) == [10, 1, 5]


@pytest.mark.parametrize("pollers", [2, 3])
def test_concurrent_pollers_fire_every_timer_exactly_once(database_url, pollers):
    engine, sessions = routing_sessions(database_url)
    world = World(sessions)
    reports = [world.report(ILLNESS) for _ in range(40)]
    world.act(reports[0], GRID, "resolve", note="x")
    engines = [make_engine(database_url) for _ in range(pollers)]
    barrier = threading.Barrier(pollers)
    failures = []

    def poll(own_engine):
        own = make_session_factory(own_engine)
        barrier.wait()
        for at in (T0 + WEEK - timedelta(hours=48), T0 + WEEK, T0 + 2 * WEEK):
            try:
                while timers.fire_due(own, world.clock, at, limit=7).cases:
                    pass
            except Exception as error:  # noqa: BLE001 - reported below
                failures.append(error)

    threads = [threading.Thread(target=poll, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with sessions() as session:
        fired = session.execute(
            select(CaseTimer.case_id, CaseTimer.stage, CaseTimer.kind, func.count())
            .where(CaseTimer.outcome == "fired")
            .group_by(CaseTimer.case_id, CaseTimer.stage, CaseTimer.kind)
        ).all()
        escalated = session.execute(
            select(CaseEvent.case_id, func.count())
            .where(CaseEvent.kind == "escalated")
            .group_by(CaseEvent.case_id)
        ).all()
    assert {count for *_, count in fired} == {1}
    # 39 open cases: the 48 h reminder, the deadline (the 8 h reminder was moot by then), the
    # township's deadline (its reminders moot too); and the resolved case's auto-close.
    assert len(fired) == 39 * 3 + 1
    assert len(escalated) == 39 and {count for _, count in escalated} == {2}
    for report in reports[1:]:
        assert Counter(world.notices(report))[("escalated", 10, "handler")] == 1
    for own_engine in engines:
        own_engine.dispose()
    engine.dispose()


def test_a_transcript_that_makes_a_case_urgent_brings_its_clock_forward(world):
    clock = world.clock
    report = world.report("")  # an audio-only report: other, general, a week
    with world.sessions.begin() as session:
        cases.find_case(session, report).transcription = "pending"
    transcript = ReportTranscribed(
        report_id=report,
        text="老人 昏迷 不醒",
        language="zh",
        engine="vosk",
        model="m",
        audio_seconds=3,
        decode_seconds=1,
    )
    classification = classify(transcript.text, RULES)
    decision = cases.decide(
        classification, RULES, REGISTRY.reporter_context(30), REGISTRY.department("health"), T0, clock.scale
    )
    later = T0 + timedelta(minutes=10)
    published = cases.apply_transcript_once(world.sessions, transcript, decision, RULES, clock, later)[1]
    case = world.case(report)
    assert (case.category, case.urgency, case.deadline_at) == ("illness", "urgent", T0 + timedelta(hours=24))
    assert world.pending(report) == [(1, "remind:4"), (1, "remind:1"), (1, "due")]
    assert [rung["org_unit"]["id"] for rung in case.ladder] == [10, 1, 5]
    assert len(published) == 1 and world.updates(report)[-1].change == "transcribed"
    world.tick(T0 + timedelta(hours=24))
    assert world.case(report).handler_unit_id == 10
