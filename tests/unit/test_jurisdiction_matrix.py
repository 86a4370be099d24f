"""Each level sees its own, and nothing more: a generated matrix over the demo county.

Every demo account (all roles, every level) against a sample of households from every township and
every action the registry offers a person: read the household, read its history, change it, and
read the figures of its village. The expectation of each (account, object, action) triple is derived
from the org tree by walking ``parent_id`` — not from the materialised paths the code uses — and
from the written rules of who may write. Zero leaks, every refusal of the right kind.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from sqlalchemy import select

from lianhu.db import make_engine, make_session_factory, migrate
from services.registry import editing, jurisdiction, records
from services.registry.jurisdiction import Refused
from services.registry.models import Household, OrgUnit
from services.registry.protection import Protector
from services.registry.schemas import Actor
from services.registry.seed import seed_demo

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"
HOUSEHOLDS_PER_TOWNSHIP = 5
COUNTY_WIDE = {"county_command", "governance_centre", "department"}
READERS_ONLY = {"department"}


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    url = f"sqlite:///{root / 'registry.db'}"
    migrate(MIGRATIONS, url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    protector = Protector(os.urandom(32), os.urandom(32))
    seed_demo(sessions, root, protector=protector)
    yield sessions, protector, json.loads((root / "demo-accounts.json").read_text())
    engine.dispose()


def ancestors_by_unit(session) -> dict[int, set[int]]:
    parent = dict(session.execute(select(OrgUnit.id, OrgUnit.parent_id)).all())
    chains: dict[int, set[int]] = {}
    for unit in parent:
        chain, cursor = set(), unit
        while cursor is not None:
            chain.add(cursor)
            cursor = parent[cursor]
        chains[unit] = chain
    return chains


def sample_households(session) -> list[tuple[int, int, int]]:
    """(household id, liaison unit, village) for a few households of every township."""
    kinds = dict(session.execute(select(OrgUnit.id, OrgUnit.kind)).all())
    parent = dict(session.execute(select(OrgUnit.id, OrgUnit.parent_id)).all())
    by_township: dict[int, list[tuple[int, int, int]]] = {}
    for household_id, unit in session.execute(select(Household.id, Household.liaison_unit_id)):
        village = parent[unit]
        township = parent[village]
        assert (kinds[unit], kinds[village], kinds[township]) == ("liaison", "village", "township")
        by_township.setdefault(township, []).append((household_id, unit, village))
    rng = random.Random(7)
    return [row for rows in by_township.values() for row in rng.sample(rows, HOUSEHOLDS_PER_TOWNSHIP)]


def test_no_account_reads_or_changes_a_household_outside_its_subtree(county):
    sessions, protector, demo_accounts = county
    with sessions() as session:
        chains = ancestors_by_unit(session)
        households = sample_households(session)
    checked, wrong = 0, []
    for account in demo_accounts:
        actor = Actor(username=account["username"], role=account["role"], org_unit_id=account["org_unit"])
        for household_id, unit, village in households:
            visible = account["role"] in COUNTY_WIDE or account["org_unit"] in chains[unit]
            may_write = visible and account["role"] not in READERS_ONLY
            with sessions() as session:
                detail = records.household_detail(session, household_id, actor, protector)
                scoped_village = jurisdiction.unit_in_scope(session, actor, village)
            if (detail is not None) != visible:
                wrong.append((account["username"], household_id, "read", visible))
            village_visible = account["role"] in COUNTY_WIDE or account["org_unit"] in chains[village]
            if (scoped_village is not None) != village_visible:
                wrong.append((account["username"], village, "figures", village_visible))
            # A change, made and rolled back: what matters is whether it was allowed.
            with sessions() as session:
                try:
                    editing.update_household(
                        session, household_id, {"address": "核查"}, None, actor, "矩阵", protector
                    )
                    outcome = "changed"
                except Refused as refusal:
                    outcome = refusal.code
                session.rollback()
            expected = "changed" if may_write else ("forbidden" if visible else "not_found")
            if outcome != expected:
                wrong.append((account["username"], household_id, "change", expected, outcome))
            checked += 3
    assert checked >= 10_000, checked
    assert wrong == [], wrong[:10]
