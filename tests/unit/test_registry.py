"""The registry's schema, demo seed and queries, on a fresh SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

import json
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from lianhu.config import KitSettings
from lianhu.db import make_engine, make_session_factory, migrate
from services.registry import queries
from services.registry.models import Household, Member, OrgUnit, Person, Position
from services.registry.seed import DEPARTMENTS, seed_demo, seed_if_empty

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"
TOWNSHIPS = ["柯曲镇", "上贡麻乡", "下贡麻乡", "岗龙乡", "青珍乡", "江千乡", "下藏科乡"]


@dataclass
class Seeded:
    url: str
    sessions: sessionmaker
    result: dict[str, Any]
    var_dir: Path

    def accounts(self) -> list[dict[str, Any]]:
        return json.loads((self.var_dir / "demo-accounts.json").read_text(encoding="utf-8"))


@pytest.fixture
def migrated_url(database_url):
    migrate(MIGRATIONS, database_url)
    return database_url


@pytest.fixture
def seeded(migrated_url, tmp_path):
    engine = make_engine(migrated_url)
    sessions = make_session_factory(engine)
    var_dir = tmp_path / "var"
    result = seed_demo(sessions, var_dir)
    yield Seeded(migrated_url, sessions, result, var_dir)
    engine.dispose()


def unit_by_code(session, code: str) -> OrgUnit:
    return session.scalars(select(OrgUnit).where(OrgUnit.code == code)).one()


def test_seed_reproduces_jiangqian_and_the_county(seeded):
    result = seeded.result
    assert result["townships"] == 7
    assert result["departments"] == 10
    jiangqian = next(t for t in result["by_township"] if t["name"] == "江千乡")
    assert jiangqian["villages"] == 4
    assert jiangqian["liaison_units"] == 242
    assert jiangqian["households"] == 1136
    assert jiangqian["members"] == 4292
    # 1136/242 forces 74 liaison workers down to 4 households; the other townships stay within 5-12.
    assert result["liaison_workers_outside_5_12"] == 74

    with seeded.sessions() as session:
        assert [
            t.name
            for t in session.scalars(select(OrgUnit).where(OrgUnit.kind == "township").order_by(OrgUnit.id))
        ] == TOWNSHIPS
        codes = dict(
            session.execute(select(OrgUnit.code, OrgUnit.name).where(OrgUnit.kind == "department")).all()
        )
        assert codes == dict(DEPARTMENTS)
        county = session.scalars(select(OrgUnit).where(OrgUnit.kind == "county")).one()
        assert (county.name, county.name_bo, county.level, county.parent_id) == (
            "甘德县",
            "གད་སྡེ་རྫོང་",
            1,
            None,
        )
        centre = session.scalars(select(OrgUnit).where(OrgUnit.kind == "governance_centre")).one()
        assert (centre.name, centre.parent_id, centre.level) == ("甘德县综治中心", county.id, 1)
        centre_staff = session.scalars(select(Position).where(Position.org_unit_id == centre.id)).all()
        assert len(centre_staff) == 3 and sum(p.is_head for p in centre_staff) == 1
        county_titles = session.scalars(select(Position.title).where(Position.org_unit_id == county.id)).all()
        assert sorted(county_titles) == sorted(["县委书记", "县长"])

        jq = unit_by_code(session, "jiangqian")
        jq_workers = session.scalar(
            select(func.count(func.distinct(Position.person_id)))
            .join(OrgUnit, OrgUnit.id == Position.org_unit_id)
            .where(Position.role == "liaison_worker", OrgUnit.path.like(f"{jq.path}%"))
        )
        assert jq_workers == 242
        # Every household hangs on a liaison unit, and every member counts towards the 4,292.
        per_unit = Counter(
            session.scalars(
                select(Household.liaison_unit_id)
                .join(OrgUnit, OrgUnit.id == Household.liaison_unit_id)
                .where(OrgUnit.path.like(f"{jq.path}%"))
            )
        )
        assert sorted(Counter(per_unit.values()).items()) == [(4, 74), (5, 168)]
        kinds = set(
            session.scalars(select(OrgUnit.kind).join(Household, Household.liaison_unit_id == OrgUnit.id))
        )
        assert kinds == {"liaison"}
        heads = session.scalar(select(func.count()).select_from(Member).where(Member.relation == "户主"))
        assert heads == result["households"]
        book_nos = session.scalars(select(Household.book_no)).all()
        assert len(set(book_nos)) == len(book_nos)
        assert all(b.startswith("632623-") for b in book_nos)


def test_tree_levels_paths_and_heads_are_consistent(seeded):
    with seeded.sessions() as session:
        units = {u.id: u for u in session.scalars(select(OrgUnit))}
        for unit in units.values():
            parent = units.get(unit.parent_id)
            assert unit.path == (parent.path if parent else "/") + f"{unit.id}/"
            assert queries.path_ids(unit.path)[-1] == unit.id
        levels = Counter((u.kind, u.level) for u in units.values())
        assert set(levels) == {
            ("county", 1),
            ("governance_centre", 1),
            ("department", 2),
            ("township", 2),
            ("village", 3),
            ("liaison", 4),
        }
        # Each unit below the county has exactly one head, who holds the unit's role.
        heads = Counter(session.scalars(select(Position.org_unit_id).where(Position.is_head.is_(True))))
        assert all(heads[u.id] >= 1 for u in units.values())
        assert all(heads[u.id] == 1 for u in units.values() if u.kind != "county")
        titles = dict(
            session.execute(
                select(OrgUnit.name, Position.title)
                .join(Position, Position.org_unit_id == OrgUnit.id)
                .where(OrgUnit.kind == "township")
            ).all()
        )
        assert titles["柯曲镇"] == "镇长" and titles["江千乡"] == "乡长"


def test_chain_runs_from_liaison_unit_to_county(seeded):
    with seeded.sessions() as session:
        group = unit_by_code(session, "jiangqian-v2-lw007")
        chain = queries.chain_above(session, group.id)
        assert [link["unit"]["kind"] for link in chain] == ["liaison", "village", "township", "county"]
        assert [link["unit"]["level"] for link in chain] == [4, 3, 2, 1]
        assert chain[0]["unit"] == {
            "id": group.id,
            "name": group.name,
            "name_bo": None,
            "kind": "liaison",
            "level": 4,
        }
        assert chain[1]["unit"]["name"] == "江千二村"
        assert chain[2]["unit"]["name"] == "江千乡"
        assert chain[3]["unit"]["name"] == "甘德县"
        assert all(set(link["head"]) == {"id", "name", "name_bo", "phone"} for link in chain)
        worker = session.scalars(
            select(Position.person_id).where(Position.org_unit_id == group.id, Position.is_head.is_(True))
        ).one()
        assert chain[0]["head"]["id"] == worker

        department = unit_by_code(session, "health")
        assert [link["unit"]["kind"] for link in queries.chain_above(session, department.id)] == [
            "department",
            "county",
        ]
        assert queries.chain_above(session, 999_999) == []


def test_handler_department_and_centre(seeded):
    with seeded.sessions() as session:
        village = unit_by_code(session, "kequ-v1")
        handler = queries.handler_of(session, village.id)
        assert handler["unit"]["kind"] == "village"
        head = session.get(Person, handler["head"]["id"])
        assert head.phone == handler["head"]["phone"] and head.name == handler["head"]["name"]
        assert queries.handler_of(session, 999_999) is None

        health = queries.department(session, "health")
        assert health["unit"]["name"] == "卫生健康局" and health["unit"]["kind"] == "department"
        assert health["head"] is not None
        assert queries.department(session, "no-such-code") is None
        # Codes of other kinds of unit are not departments.
        assert queries.department(session, "jiangqian") is None
        assert queries.department(session, "") is None

        centre = queries.governance_centre(session)
        assert centre["unit"]["name"] == "甘德县综治中心"
        titles = session.scalars(
            select(Position.title).where(Position.person_id == centre["head"]["id"])
        ).all()
        assert titles == ["主任"]


def test_reporter_context(seeded):
    with seeded.sessions() as session:
        reporter_unit = unit_by_code(session, "jiangqian-v1-lw001")
        household = session.scalars(
            select(Household)
            .where(Household.liaison_unit_id != reporter_unit.id)
            .order_by(Household.id.desc())
        ).first()
        members = session.scalar(select(func.count()).where(Member.household_id == household.id))

        context = queries.reporter_context(session, reporter_unit.id, household.id)
        assert context["unit"]["id"] == reporter_unit.id
        assert context["household_found"] is True
        assert context["household"] == {
            "id": household.id,
            "book_no": household.book_no,
            "head_name": household.head_name,
            "head_name_bo": household.head_name_bo,
            "liaison_unit_id": household.liaison_unit_id,
            "address": household.address,
            "members": members,
        }
        # The household's own liaison unit decides the jurisdiction, not the reporter's.
        assert context["chain"][0]["unit"]["id"] == household.liaison_unit_id
        assert context["governance_centre"]["unit"]["kind"] == "governance_centre"

        without = queries.reporter_context(session, reporter_unit.id, None)
        assert without["household"] is None and without["household_found"] is False
        assert without["chain"][0]["unit"]["id"] == reporter_unit.id
        assert len(without["chain"]) == 4

        missing_household = queries.reporter_context(session, reporter_unit.id, 999_999)
        assert missing_household["household_found"] is False
        assert missing_household["chain"][0]["unit"]["id"] == reporter_unit.id

        unknown = queries.reporter_context(session, 999_999, 999_999)
        assert unknown["unit"] is None and unknown["household"] is None and unknown["chain"] == []
        assert unknown["governance_centre"] is not None
        nothing = queries.reporter_context(session, None, None)
        assert nothing["unit"] is None and nothing["chain"] == []
        json.dumps(context, ensure_ascii=False)  # plain JSON all the way down


@pytest.mark.parametrize("bad", [0, -1, 2**31, 2**70, True, "12", 1.5, None, [1]])
def test_odd_ids_never_raise(migrated_url, bad):
    # Out-of-range integers would make PostgreSQL raise instead of answering "no row".
    engine = make_engine(migrated_url)
    with make_session_factory(engine)() as session:
        assert queries.chain_above(session, bad) == []
        assert queries.handler_of(session, bad) is None
        assert queries.get_household(session, bad) is None
        context = queries.reporter_context(session, bad, bad)
        assert context["unit"] is None and context["chain"] == [] and context["household_found"] is False
        assert queries.department(session, bad) is None
    engine.dispose()


def test_accounts_file(seeded):
    path = seeded.var_dir / "demo-accounts.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    accounts = seeded.accounts()
    assert all(
        set(a)
        == {"username", "password", "role", "org_unit", "org_unit_name", "township", "person_id", "name"}
        for a in accounts
    )
    usernames = [a["username"] for a in accounts]
    assert len(set(usernames)) == len(usernames)
    assert all(u.isascii() and u == u.lower() for u in usernames)
    assert len({a["password"] for a in accounts}) == len(accounts)
    assert all(len(a["password"]) >= 16 for a in accounts)
    assert {a["role"] for a in accounts} == {
        "county_command",
        "governance_centre",
        "department",
        "township_command",
        "village_grid",
        "liaison_worker",
    }
    by_name = {a["username"]: a for a in accounts}
    for expected in (
        "county-command",
        "centre-1",
        "centre-3",
        "dept-health",
        "dept-civil-affairs",
        "jiangqian-command",
        "jiangqian-v1-grid",
        "jiangqian-v4-grid",
        "jiangqian-v1-lw001",
        "kequ-command",
        "kequ-v1-grid",
        "kequ-v1-lw001",
        "kequ-v1-lw002",
    ):
        assert expected in by_name, expected
    assert by_name["county-command"]["township"] == ""
    assert (
        by_name["dept-health"]["township"] == "" and by_name["dept-health"]["org_unit_name"] == "卫生健康局"
    )
    assert by_name["kequ-v1-lw001"]["township"] == "柯曲镇"

    with seeded.sessions() as session:
        # Every account points at a real person holding a position at its unit, with that role.
        for account in accounts:
            position = session.scalars(
                select(Position).where(
                    Position.person_id == account["person_id"], Position.org_unit_id == account["org_unit"]
                )
            ).first()
            assert position is not None and position.role == account["role"], account["username"]
            assert session.get(Person, account["person_id"]).name == account["name"]
            assert session.get(OrgUnit, account["org_unit"]).name == account["org_unit_name"]

        # Every unit of Jiangqian (township, 4 villages, 242 liaison units) has an account.
        jq = unit_by_code(session, "jiangqian")
        jq_units = set(session.scalars(select(OrgUnit.id).where(OrgUnit.path.like(f"{jq.path}%"))))
        assert len(jq_units) == 1 + 4 + 242
        jq_accounts = [a for a in accounts if a["township"] == "江千乡"]
        assert {a["org_unit"] for a in jq_accounts} == jq_units
        # Elsewhere: the command, one grid head and two liaison workers per township.
        for township in TOWNSHIPS:
            if township == "江千乡":
                continue
            roles = Counter(a["role"] for a in accounts if a["township"] == township)
            assert roles == {"township_command": 1, "village_grid": 1, "liaison_worker": 2}, township
    departments = [a for a in accounts if a["role"] == "department"]
    assert len(departments) == 10
    assert len([a for a in accounts if a["role"] == "governance_centre"]) == 3


def snapshot(sessions: sessionmaker) -> dict[str, list]:
    with sessions() as session:
        return {
            "units": session.execute(
                select(OrgUnit.id, OrgUnit.name, OrgUnit.code, OrgUnit.path).order_by(OrgUnit.id)
            ).all(),
            "persons": session.execute(
                select(Person.id, Person.name, Person.name_bo, Person.phone).order_by(Person.id)
            ).all(),
            "households": session.execute(
                select(
                    Household.id,
                    Household.book_no,
                    Household.head_name,
                    Household.liaison_unit_id,
                    Household.lat,
                ).order_by(Household.id)
            ).all(),
            "members": session.execute(
                select(
                    Member.id, Member.household_id, Member.name, Member.birth_year, Member.relation
                ).order_by(Member.id)
            ).all(),
        }


def test_seed_is_deterministic(seeded, tmp_path):
    # The second database is always SQLite: the same seed gives the same county on either engine.
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    migrate(MIGRATIONS, other_url)
    engine = make_engine(other_url)
    other = make_session_factory(engine)
    seed_demo(other, tmp_path / "other-var")
    assert snapshot(other) == snapshot(seeded.sessions)
    second = json.loads((tmp_path / "other-var" / "demo-accounts.json").read_text(encoding="utf-8"))

    def stable(accounts: list[dict]) -> list[tuple]:
        return [(a["username"], a["org_unit"], a["person_id"], a["name"]) for a in accounts]

    assert stable(second) == stable(seeded.accounts())
    engine.dispose()

    different = tmp_path / "different.db"
    migrate(MIGRATIONS, f"sqlite:///{different}")
    engine = make_engine(f"sqlite:///{different}")
    seed_demo(make_session_factory(engine), tmp_path / "different-var", rng_seed=7)
    assert snapshot(make_session_factory(engine))["persons"] != snapshot(seeded.sessions)["persons"]
    engine.dispose()


def test_seed_if_empty_is_idempotent(migrated_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LIANHU_REGISTRY_DATABASE_URL", migrated_url)
    settings = KitSettings(var_dir=tmp_path / "var")
    engine = make_engine(migrated_url)
    sessions = make_session_factory(engine)

    def count(model) -> int:
        with sessions() as session:
            return session.scalar(select(func.count()).select_from(model))

    assert "empty" in seed_if_empty(settings, demo=False)
    assert count(OrgUnit) == 0 and not (tmp_path / "var" / "demo-accounts.json").exists()

    message = seed_if_empty(settings, demo=True)
    assert "seeded" in message and "households" in message
    units, members = count(OrgUnit), count(Member)
    accounts = (tmp_path / "var" / "demo-accounts.json").read_text(encoding="utf-8")

    assert "left as is" in seed_if_empty(settings, demo=True)
    assert (count(OrgUnit), count(Member)) == (units, members)
    # The passwords already handed out stay valid.
    assert (tmp_path / "var" / "demo-accounts.json").read_text(encoding="utf-8") == accounts
    engine.dispose()


def test_seed_if_empty_wants_a_migrated_database(tmp_path, monkeypatch):
    monkeypatch.setenv("LIANHU_REGISTRY_DATABASE_URL", f"sqlite:///{tmp_path / 'blank.db'}")
    with pytest.raises(RuntimeError, match="lianhu migrate"):
        seed_if_empty(KitSettings(var_dir=tmp_path), demo=True)
