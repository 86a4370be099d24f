"""The org units a caller may pick from (filters, task targets): their own subtree, the whole county
for county-wide roles, derived here from ``parent_id``; nothing for a caller without a place."""

from __future__ import annotations

from sqlalchemy import select

from services.registry import jurisdiction
from services.registry.models import OrgUnit
from services.registry.schemas import Actor
from tests.unit.test_gateway import RecordingRpc, gateway  # noqa: F401 - the fixture
from tests.unit.test_jurisdiction_matrix import COUNTY_WIDE, ancestors_by_unit, county  # noqa: F401


def test_each_account_lists_the_units_of_its_own_area(county):  # noqa: F811
    sessions, _, demo_accounts = county
    with sessions() as session:
        chains = ancestors_by_unit(session)
        kinds = dict(session.execute(select(OrgUnit.id, OrgUnit.kind)).all())
    # One account of every role and level is enough: the rule is per unit, not per person.
    sample = {(account["role"], kinds[account["org_unit"]]): account for account in demo_accounts}
    for account in sample.values():
        actor = Actor(username=account["username"], role=account["role"], org_unit_id=account["org_unit"])
        with sessions() as session:
            listed = jurisdiction.units_in_scope(session, actor)
            villages = jurisdiction.units_in_scope(session, actor, frozenset({"village"}))
        expected = {
            unit for unit in chains if account["role"] in COUNTY_WIDE or account["org_unit"] in chains[unit]
        }
        assert {unit["id"] for unit in listed} == expected, account["username"]
        assert {unit["id"] for unit in villages} == {unit for unit in expected if kinds[unit] == "village"}
    with sessions() as session:
        assert jurisdiction.units_in_scope(session, Actor(username="x", role="liaison_worker")) is None


def test_the_gateway_passes_the_caller_and_filters(gateway):  # noqa: F811
    units = [{"id": 3, "parent_id": 1, "kind": "township", "level": 2, "name": "江千乡", "name_bo": None}]
    rpc = RecordingRpc(**{"registry.units_in_area": units})
    gateway.app.state.rpc = rpc
    response = gateway.client.get("/v1/units?kind=township&kind=village&parent=1", headers=gateway.token())
    assert response.status_code == 200 and response.json() == {"items": units}
    [(method, (actor, kinds, parent), _)] = rpc.calls
    assert (method, actor["username"], kinds, parent) == (
        "registry.units_in_area",
        "jq-lw",
        ["township", "village"],
        1,
    )
    assert gateway.client.get("/v1/units?kind=planet", headers=gateway.token()).status_code == 422
    assert gateway.client.get("/v1/units?parent=0", headers=gateway.token()).status_code == 422
    assert gateway.client.get("/v1/units").status_code == 401
    gateway.app.state.rpc = RecordingRpc(**{"registry.units_in_area": None})
    assert gateway.client.get("/v1/units", headers=gateway.token()).status_code == 404
