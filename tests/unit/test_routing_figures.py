"""The governance figures routing exports: open and overdue cases by township and urgency, read
from the database; escalations and resolutions counted from the updates routing announces."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from services.routing import figures
from services.routing.actions import Actor
from tests.unit.routing_world import CENTRE, GRID, ILLNESS, POLICY, URGENT_ILLNESS, World, routing_sessions


@pytest.fixture
def world(database_url):
    engine, sessions = routing_sessions(database_url)
    yield World(sessions)
    engine.dispose()


def gauges(world: World) -> dict[tuple[str, str, str], float]:
    with world.sessions() as session:
        return {
            (name, labels["township"], labels["urgency"]): value
            for name, labels, value in figures.case_gauges(session)
        }


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_open_and_overdue_cases_by_township_and_urgency(world):
    world.report(ILLNESS)
    world.report(URGENT_ILLNESS)
    resolved = world.report(POLICY)
    world.report(POLICY, reporter=Actor("grid-22", "village_grid", 22))
    world.act(resolved, GRID, "resolve", note="已答复")
    assert gauges(world) == {
        ("lianhu_cases_open", "township-10", "general"): 1,
        ("lianhu_cases_overdue", "township-10", "general"): 0,
        ("lianhu_cases_open", "township-10", "urgent"): 1,
        ("lianhu_cases_overdue", "township-10", "urgent"): 0,
        ("lianhu_cases_open", "township-11", "general"): 1,
        ("lianhu_cases_overdue", "township-11", "general"): 0,
    }
    # A county-level reporter's matter lies in no township.
    world.report(POLICY, reporter=CENTRE)
    assert gauges(world)[("lianhu_cases_open", "county", "general")] == 1


def test_a_case_past_its_deadline_counts_as_overdue(world, monkeypatch):
    world.report(POLICY)
    later = world.now + timedelta(days=30)
    monkeypatch.setattr(figures, "utcnow", lambda: later)
    assert gauges(world)[("lianhu_cases_overdue", "township-10", "general")] == 1


def test_escalations_and_resolutions_are_counted_from_the_announced_updates(world):
    report = world.report(ILLNESS)
    climbed = counted("lianhu_case_escalations_total", township="township-10", level="township")
    late = counted("lianhu_cases_resolved_total", township="township-10", on_time="false")
    world.run_until(world.now + timedelta(days=8), step=timedelta(hours=6))  # the village's deadline passes
    world.act(report, Actor("township-10", "township_command", 10), "resolve", note="已送医")
    for update in world.updates(report):
        figures.count_announced(update.to_wire())
    assert counted("lianhu_case_escalations_total", township="township-10", level="township") == climbed + 1
    assert counted("lianhu_cases_resolved_total", township="township-10", on_time="false") == late + 1
