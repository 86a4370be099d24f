"""Directed routing from the registry's view of a reporter: who acts, who is told."""

from __future__ import annotations

import pytest

from services.routing.recipients import resolve_recipients


def responsible(unit_id: int, kind: str, level: int, head: int | None = None) -> dict:
    return {
        "unit": {"id": unit_id, "name": f"{kind}-{unit_id}", "name_bo": None, "kind": kind, "level": level},
        "head": None if head is None else {"id": head, "name": f"p{head}", "name_bo": None, "phone": None},
    }


COUNTY = responsible(1, "county", 1, head=100)
CENTRE = responsible(2, "governance_centre", 1, head=200)
TOWNSHIP = responsible(10, "township", 2, head=1000)
VILLAGE = responsible(20, "village", 3, head=2000)
LIAISON = responsible(30, "liaison", 4, head=3000)
HEALTH = responsible(5, "department", 2, head=500)


def context(*chain: dict) -> dict:
    return {"chain": list(chain), "governance_centre": CENTRE}


def summary(recipients) -> list[tuple[str, str, int]]:
    return [(r.role, r.position, r.org_unit.id) for r in recipients]


def test_general_report_from_a_liaison_worker_goes_to_grid_leader_with_centre_copy():
    handler, recipients = resolve_recipients(context(LIAISON, VILLAGE, TOWNSHIP, COUNTY), "general", None)
    assert (handler.role, handler.org_unit.id, handler.person.id) == ("handler", 20, 2000)
    assert summary(recipients) == [("handler", "village_grid", 20), ("copy", "governance_centre", 2)]


def test_urgent_report_also_reaches_township_command_and_department():
    _, recipients = resolve_recipients(context(LIAISON, VILLAGE, TOWNSHIP, COUNTY), "urgent", HEALTH)
    assert summary(recipients) == [
        ("handler", "village_grid", 20),
        ("copy", "governance_centre", 2),
        ("copy", "township_command", 10),
        ("copy", "department", 5),
    ]
    assert all(r.reason for r in recipients)


def test_reporter_above_the_villages_is_handled_by_the_township():
    handler, recipients = resolve_recipients(context(TOWNSHIP, COUNTY), "urgent", None)
    assert handler.org_unit.id == 10
    assert summary(recipients) == [("handler", "township_command", 10), ("copy", "governance_centre", 2)]


@pytest.mark.parametrize("chain", [[], [COUNTY], [CENTRE, COUNTY]])
def test_county_level_or_unknown_reporter_is_handled_by_the_centre_and_nobody_twice(chain):
    handler, recipients = resolve_recipients(context(*chain), "urgent", None)
    assert handler.org_unit.id == 2
    assert summary(recipients) == [("handler", "governance_centre", 2)]


def test_a_unit_without_a_head_still_receives_the_case():
    headless = responsible(21, "village", 3)
    handler, _ = resolve_recipients(context(LIAISON, headless, TOWNSHIP, COUNTY), "general", None)
    assert handler.org_unit.id == 21 and handler.person is None


def test_no_governance_centre_is_a_clear_error_not_a_lost_case():
    with pytest.raises(LookupError):
        resolve_recipients({"chain": [], "governance_centre": None}, "general", None)
