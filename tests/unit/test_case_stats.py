"""Exact figures over a unit's subtree: collected, resolved, on time, overdue, escalated, satisfaction,
by category and by child unit, for a period of submission."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.routing import stats
from services.routing.actions import Actor
from services.routing.clock import ClockRules
from tests.unit.routing_world import (
    GRID,
    ILLNESS,
    OTHER_GRID,
    POLICY,
    REPORTER,
    T0,
    World,
    chain_above,
    routing_sessions,
)

OTHER_REPORTER = Actor("jq-lw-31", "liaison_worker", 31)
WEEK = timedelta(days=7)


@pytest.fixture
def world(database_url):
    engine, sessions = routing_sessions(database_url)
    world = World(sessions)
    # Village 20: one resolved on time and rated 5, one resolved late (escalated) and rated 2.
    on_time = world.report(ILLNESS)
    world.act(on_time, GRID, "resolve", note="ok", at=T0 + timedelta(days=1))
    world.act(on_time, REPORTER, "rate", rating=5, at=T0 + timedelta(days=2))
    late = world.report(POLICY)
    world.tick(T0 + WEEK)
    world.act(late, Actor("township-10", "township_command", 10), "resolve", note="答复", at=T0 + WEEK)
    world.act(late, REPORTER, "rate", rating=2, at=T0 + WEEK)
    # Village 21: one open and escalated, one reported a month later.
    world.report(POLICY, reporter=OTHER_REPORTER)
    world.tick(T0 + WEEK)
    world.report(ILLNESS, reporter=OTHER_REPORTER, at=T0 + 4 * WEEK)
    world.act(world.report(POLICY, reporter=OTHER_REPORTER), OTHER_GRID, "acknowledge")
    with world.sessions() as session:
        world.figures = lambda unit, start=None, end=None: stats.summary(
            session, stats.scope_for(chain_above(unit)), start, end
        )
        yield world
    engine.dispose()


def test_a_township_sees_its_villages(world):
    figures = world.figures(10)
    assert {name: figures[name] for name in stats.COUNTS} == {
        "collected": 5,
        "resolved": 2,
        "resolved_on_time": 1,
        "overdue": 2,  # the one resolved late and the one still open, each escalated once
        "escalated": 2,
    }
    assert (figures["rated"], figures["satisfaction_avg"]) == (2, 3.5)
    assert [(row["unit_id"], row["collected"]) for row in figures["by_unit"]] == [(20, 2), (21, 3)]
    assert figures["by_category"]["illness"]["collected"] == 2
    assert figures["by_category"]["policy"]["resolved"] == 1


def test_a_village_sees_only_its_own_and_a_period_narrows_it(world):
    village = world.figures(20)
    assert (village["collected"], village["resolved"], village["satisfaction_avg"]) == (2, 2, 3.5)
    assert [row["unit_id"] for row in village["by_unit"]] == [30]
    recent = world.figures(21, start=T0 + WEEK)
    assert recent["collected"] == 1 and recent["by_category"] == {"illness": recent["by_category"]["illness"]}
    assert world.figures(11)["collected"] == 0


def test_the_county_sees_all_and_a_department_what_reached_it(world):
    assert world.figures(1)["collected"] == 5
    assert [row["unit_id"] for row in world.figures(1)["by_unit"]] == [10]
    health = world.figures(5)  # illness cases copy the health department
    assert (health["collected"], health["by_unit"]) == (2, [])
    assert world.figures(2)["collected"] == 5  # the centre has a copy of everything


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-30", "2026-11-29T16:00:00+00:00"),  # a whole day in the county (UTC+8)
        ("2026-11-30T09:30", "2026-11-30T01:30:00+00:00"),
        ("2026-11-30T09:30:00+00:00", "2026-11-30T09:30:00+00:00"),
        (None, None),
    ],
)
def test_periods_are_county_days_or_exact_moments(value, expected):
    moment = stats.parse_moment(value, ClockRules())
    assert (moment.isoformat() if moment else None) == expected


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", 20261130])
def test_a_bad_period_is_refused(value):
    with pytest.raises(ValueError):
        stats.parse_moment(value, ClockRules())
