"""The registry's write path, history, audit, protection in use and aggregates, on both engines.

Databases are built with the real migrations (not ``create_all``): the audit log's append-only
triggers live there, and the tests must meet them.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, case, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import sessionmaker

from lianhu.db import make_engine, make_session_factory, migrate
from services.registry import aggregates, audit, records
from services.registry.idnumber import check_character, mask_id_number, parse_id_number
from services.registry.models import (
    FLAGS,
    AuditEntry,
    History,
    Household,
    Livestock,
    Member,
    OrgUnit,
    Person,
    Position,
)
from services.registry.protection import Protector
from services.registry.records import RecordError
from services.registry.schemas import Actor, HouseholdIn, MemberIn
from services.registry.seed import COUNTY_ADMIN_CODE, FLAG_SHARES, seed_demo

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"

CLERK = Actor(username="clerk", role="governance_centre")
COMMANDER = Actor(username="commander", role="county_command")


def id_number(born: str, sequence: int, region: str = "632623") -> str:
    first17 = f"{region}{born}{sequence:03d}"
    return first17 + check_character(first17)


# Two men and two women, all valid; one ends in X.
ZHAXI = id_number("19750304", 11)
DROLMA = id_number("19780512", 22)
TSERING = id_number("20010919", 35)
LHAMO = id_number("19501111", 58)


@dataclass
class Tree:
    """A small hand-built county: the ids the tests refer to."""

    county: int
    township_a: int
    township_b: int
    village_a1: int
    village_a2: int
    village_b1: int
    liaison_1: int
    liaison_2: int
    liaison_3: int
    liaison_4: int


@dataclass
class Registry:
    engine: Engine
    sessions: sessionmaker
    tree: Tree
    protector: Protector

    def apply(self, items: list[HouseholdIn], actor: Actor = CLERK, reason: str | None = "test") -> dict:
        with self.sessions.begin() as session:
            return records.apply_households(session, items, actor, reason, self.protector)

    def count(self, model: type) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0

    def rows(self, model: type) -> list:
        with self.sessions() as session:
            return session.scalars(select(model).order_by(model.id)).all()


def _unit(session, parent: OrgUnit | None, kind: str, name: str, level: int) -> OrgUnit:
    unit = OrgUnit(parent_id=parent.id if parent else None, kind=kind, level=level, name=name, path="")
    session.add(unit)
    session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    return unit


def _worker(session, unit: OrgUnit, name: str) -> None:
    person = Person(name=name)
    session.add(person)
    session.flush()
    session.add(Position(person_id=person.id, org_unit_id=unit.id, role="liaison_worker", title="联户长"))


@pytest.fixture
def registry(database_url):
    migrate(MIGRATIONS, database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        county = _unit(session, None, "county", "甘德县", 1)
        township_a = _unit(session, county, "township", "江千乡", 2)
        township_b = _unit(session, county, "township", "岗龙乡", 2)
        village_a1 = _unit(session, township_a, "village", "江千一村", 3)
        village_a2 = _unit(session, township_a, "village", "江千二村", 3)
        village_b1 = _unit(session, township_b, "village", "岗龙一村", 3)
        liaison = [
            _unit(session, village, "liaison", f"联户组{n}", 4)
            for n, village in enumerate((village_a1, village_a1, village_a2, village_b1), start=1)
        ]
        for n, unit in enumerate(liaison, start=1):
            _worker(session, unit, f"联户长{n}")
        tree = Tree(
            county.id,
            township_a.id,
            township_b.id,
            village_a1.id,
            village_a2.id,
            village_b1.id,
            *(unit.id for unit in liaison),
        )
    yield Registry(engine, sessions, tree, Protector(os.urandom(32), os.urandom(32)))
    engine.dispose()


def household(book_no: str, unit: int, **fields) -> HouseholdIn:
    return HouseholdIn(
        book_no=book_no, liaison_unit_id=unit, head_name=fields.pop("head_name", "扎西多杰"), **fields
    )


def family(unit: int, book_no: str = "632623-JQ-000001", **changes) -> HouseholdIn:
    """A household of three, with ``changes`` applied to its fields (all of them sent, as a file would)."""
    fields = {
        "book_no": book_no,
        "liaison_unit_id": unit,
        "head_name": "扎西多杰",
        "head_name_bo": "བཀྲ་ཤིས་རྡོ་རྗེ",
        "address": "甘德县江千乡江千一村",
        "lat": 33.7,
        "lon": 100.2,
        "grassland_area_mu": 1200.5,
        "flags": {"low_income"},
        "members": [
            {
                "name": "扎西多杰",
                "relation": "户主",
                "id_number": ZHAXI,
                "ethnicity": "藏族",
                "phone": "13900000001",
            },
            {"name": "卓玛", "relation": "配偶", "id_number": DROLMA, "ethnicity": "藏族"},
            {"name": "才让", "relation": "子", "sex": "M", "birth_date": date(2001, 9, 19)},
        ],
        "livestock": [
            {"year": 2026, "species": "yak", "head_count": 40},
            {"year": 2026, "species": "sheep", "head_count": 60},
        ],
    }
    return HouseholdIn.model_validate({**fields, **changes})


# ---------------------------------------------------------------------------------------------
# Writing


def test_create_stores_id_numbers_protected(registry):
    result = registry.apply([family(registry.tree.liaison_1)])
    assert {key: value for key, value in result.items() if key != "household_ids"} == {
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "members_added": 3,
        "members_updated": 0,
        "members_not_in_file": 0,
        "history_rows": 0,
    }
    [household_id] = result["household_ids"]
    with registry.sessions() as session:
        stored = session.get(Household, household_id)
        assert (stored.version, stored.flag_low_income, stored.flag_disability) == (1, True, False)
        assert stored.updated_at is not None and stored.grassland_area_mu == 1200.5
        members = session.scalars(
            select(Member).where(Member.household_id == household_id).order_by(Member.id)
        )
        head, spouse, son = members.all()
    assert registry.protector.decrypt(head.id_number_cipher) == ZHAXI
    assert head.id_number_index == registry.protector.blind_index(ZHAXI)
    assert head.id_number_masked == mask_id_number(ZHAXI) == f"{ZHAXI[:6]}**********{ZHAXI[-2:]}"
    # Birth date and sex come from the ID number; the year follows the date.
    assert (head.birth_date, head.birth_year, head.sex) == (date(1975, 3, 4), 1975, "M")
    assert (spouse.sex, spouse.birth_year) == ("F", 1978)
    assert son.id_number_cipher is None and son.id_number_masked is None and son.birth_year == 2001
    with registry.sessions() as session:
        livestock = session.execute(select(Livestock.year, Livestock.species, Livestock.head_count)).all()
    assert sorted(livestock) == [(2026, "sheep", 60), (2026, "yak", 40)]
    [entry] = registry.rows(AuditEntry)
    assert (entry.action, entry.entity, entry.entity_id, entry.actor, entry.reason) == (
        "create",
        "household",
        household_id,
        "clerk",
        "test",
    )
    assert json.loads(entry.fields) == {"members": 3, "livestock": 2}


def test_update_keeps_history_and_bumps_version(registry):
    [household_id] = registry.apply([family(registry.tree.liaison_1)])["household_ids"]
    members = family(registry.tree.liaison_1).model_dump()["members"]
    members[1]["phone"] = "13900000002"
    changed = family(
        registry.tree.liaison_2,
        head_name="扎西",
        flags={"disability"},
        members=members,
        livestock=[
            {"year": 2026, "species": "yak", "head_count": 45},
            {"year": 2026, "species": "sheep", "head_count": 60},
            {"year": 2026, "species": "horse", "head_count": 3},
        ],
    )
    result = registry.apply([changed], reason="户口簿更新")
    assert (result["created"], result["updated"], result["unchanged"]) == (0, 1, 0)
    assert (result["members_added"], result["members_updated"], result["members_not_in_file"]) == (0, 1, 0)
    history = registry.rows(History)
    assert result["history_rows"] == len(history) == 7
    got = {(row.entity, row.field): (row.old_value, row.new_value, row.version) for row in history}
    assert got == {
        ("household", "liaison_unit_id"): (str(registry.tree.liaison_1), str(registry.tree.liaison_2), 1),
        ("household", "head_name"): ("扎西多杰", "扎西", 1),
        ("household", "flag_low_income"): ("true", "false", 1),
        ("household", "flag_disability"): ("false", "true", 1),
        ("member", "phone"): (None, "13900000002", 1),
        ("household", "livestock.2026.yak"): ("40", "45", 1),
        ("household", "livestock.2026.horse"): (None, "3", 1),
    }
    assert all(row.changed_by == "clerk" and row.reason == "户口簿更新" for row in history)
    with registry.sessions() as session:
        stored = session.get(Household, household_id)
        assert (stored.version, stored.head_name, stored.liaison_unit_id) == (
            2,
            "扎西",
            registry.tree.liaison_2,
        )
        spouse = session.scalars(select(Member).where(Member.name == "卓玛")).one()
        assert (spouse.version, spouse.phone) == (2, "13900000002")
        head = session.scalars(select(Member).where(Member.relation == "户主")).one()
        assert head.version == 1
    entries = [entry for entry in registry.rows(AuditEntry) if entry.action == "update"]
    assert len(entries) == 1 and entries[0].entity_id == household_id
    fields = json.loads(entries[0].fields)
    assert fields["household"] == ["flag_disability", "flag_low_income", "head_name", "liaison_unit_id"]
    assert fields["members"] == {str(spouse.id): ["phone"]}
    assert fields["livestock"] == ["livestock.2026.yak", "livestock.2026.horse"]

    with registry.sessions() as session:
        history = records.household_history(session, household_id)
    assert len(history) == 7
    assert {row["entity"] for row in history} == {"household", "member"}
    assert history[0]["changed_by"] == "clerk" and history[0]["reason"] == "户口簿更新"


def test_reapplying_the_same_data_writes_nothing(registry):
    items = [family(registry.tree.liaison_1, f"632623-JQ-{n:06d}") for n in range(1, 4)]
    # Three households cannot share ID numbers: give each its own members.
    items = [
        HouseholdIn.model_validate(
            {
                **item.model_dump(),
                "members": [
                    {"name": f"成员{n}", "relation": "户主", "id_number": id_number("19800101", 2 * n + 1)},
                    {"name": "央金", "relation": "女"},
                ],
            }
        )
        for n, item in enumerate(items)
    ]
    first = registry.apply(items)
    assert first["created"] == 3
    before = _snapshot(registry)
    audit_rows = registry.count(AuditEntry)

    # The same data, parsed afresh, and again as a single-item API call.
    again = registry.apply([HouseholdIn.model_validate(item.model_dump()) for item in items])
    assert (again["created"], again["updated"], again["unchanged"], again["history_rows"]) == (0, 0, 3, 0)
    assert again["household_ids"] == first["household_ids"]
    single = registry.apply([items[0]])
    assert (single["unchanged"], single["history_rows"]) == (1, 0)
    assert _snapshot(registry) == before
    assert registry.count(AuditEntry) == audit_rows
    assert registry.count(History) == 0


def _snapshot(registry: Registry) -> dict[str, list]:
    with registry.sessions() as session:
        return {
            "households": session.execute(
                select(Household.id, Household.version, Household.updated_at, Household.head_name).order_by(
                    Household.id
                )
            ).all(),
            "members": session.execute(
                select(Member.id, Member.version, Member.updated_at, Member.id_number_cipher).order_by(
                    Member.id
                )
            ).all(),
            "livestock": session.execute(
                select(Livestock.id, Livestock.head_count).order_by(Livestock.id)
            ).all(),
        }


def test_members_match_by_id_number_then_name_and_relation(registry):
    [household_id] = registry.apply([family(registry.tree.liaison_1)])["household_ids"]
    with registry.sessions() as session:
        before = {
            m.name: m.id for m in session.scalars(select(Member).where(Member.household_id == household_id))
        }
    # Reordered; the head renamed (matched by his ID number), the son gains an ID number (matched by
    # name and relation), the spouse left out (kept, reported), a daughter added.
    update = household(
        "632623-JQ-000001",
        registry.tree.liaison_1,
        members=[
            MemberIn(name="才让", relation="子", id_number=TSERING),
            MemberIn(
                name="扎西多杰·更新", relation="户主", id_number=ZHAXI, ethnicity="藏族", phone="13900000001"
            ),
            MemberIn(name="拉毛", relation="母", id_number=LHAMO),
        ],
    )
    result = registry.apply([update])
    assert (result["members_added"], result["members_updated"], result["members_not_in_file"]) == (1, 2, 1)
    with registry.sessions() as session:
        after = {
            m.name: m for m in session.scalars(select(Member).where(Member.household_id == household_id))
        }
        assert set(after) == {"扎西多杰·更新", "卓玛", "才让", "拉毛"}
        assert after["扎西多杰·更新"].id == before["扎西多杰"]
        assert after["才让"].id == before["才让"]
        assert after["卓玛"].id == before["卓玛"] and after["卓玛"].version == 1
        son = after["才让"]
        assert registry.protector.decrypt(son.id_number_cipher) == TSERING and son.version == 2
        history = session.execute(
            select(History.entity, History.entity_id, History.field, History.old_value, History.new_value)
        ).all()
        stored = session.get(Household, household_id)
        assert stored.version == 2
        # Fields the update did not send are left alone.
        assert (stored.address, stored.lat, stored.flag_low_income) == ("甘德县江千乡江千一村", 33.7, True)
    by_field = {(entity, entity_id, name): (old, new) for entity, entity_id, name, old, new in history}
    assert by_field[("member", before["扎西多杰"], "name")] == ("扎西多杰", "扎西多杰·更新")
    old, new = by_field[("member", son.id, "id_number")]
    assert old is None and new == son.id_number_cipher and TSERING not in new
    assert by_field[("household", household_id, "member_added")] == (None, str(after["拉毛"].id))

    # A member without an ID number does not clear the one on file.
    registry.apply(
        [
            household(
                "632623-JQ-000001", registry.tree.liaison_1, members=[MemberIn(name="才让", relation="子")]
            )
        ]
    )
    with registry.sessions() as session:
        assert (
            session.scalar(select(Member.id_number_index).where(Member.id == son.id)) == son.id_number_index
        )


def test_history_shows_id_numbers_masked_or_not_at_all(registry):
    registry.apply([household("B1", registry.tree.liaison_1, members=[MemberIn(name="才让", relation="子")])])
    [household_id] = registry.apply(
        [
            household(
                "B1",
                registry.tree.liaison_1,
                members=[MemberIn(name="才让", relation="子", id_number=TSERING)],
            )
        ]
    )["household_ids"]
    with registry.sessions() as session:
        masked = records.household_history(session, household_id, registry.protector)
        hidden = records.household_history(session, household_id)
    [changed] = [row for row in masked if row["field"] == "id_number"]
    assert (changed["old_value"], changed["new_value"]) == (None, mask_id_number(TSERING))
    [changed] = [row for row in hidden if row["field"] == "id_number"]
    assert (changed["old_value"], changed["new_value"]) == (None, None)


def test_id_number_belongs_to_one_household(registry):
    registry.apply([family(registry.tree.liaison_1)])
    counts = (registry.count(Household), registry.count(Member), registry.count(AuditEntry))
    intruder = household(
        "632623-JQ-000002",
        registry.tree.liaison_2,
        members=[
            MemberIn(name="某人", relation="户主"),
            MemberIn(name="扎西多杰", relation="子", id_number=ZHAXI),
        ],
    )
    with pytest.raises(RecordError) as caught:
        registry.apply([intruder])
    error = caught.value
    assert (error.field, error.index) == ("members.1.id_number", 0)
    assert "632623-JQ-000001" in error.message_en and "另一户" in error.message_zh
    assert ZHAXI not in str(error) and ZHAXI not in error.message_zh
    assert (registry.count(Household), registry.count(Member), registry.count(AuditEntry)) == counts

    # Within one batch too; every problem is listed, the first raised.
    twins = [
        household(
            "X1", registry.tree.liaison_1, members=[MemberIn(name="甲", relation="户主", id_number=LHAMO)]
        ),
        household(
            "X2", registry.tree.liaison_2, members=[MemberIn(name="乙", relation="户主", id_number=LHAMO)]
        ),
        household("X3", registry.tree.village_a1),
    ]
    with pytest.raises(RecordError) as caught:
        registry.apply(twins)
    problems = [(p.index, p.field) for p in caught.value.problems]
    assert problems == [(2, "liaison_unit_id"), (1, "members.0.id_number")]
    with registry.sessions() as session:
        assert records.check_households(session, twins, registry.protector)[0].index == 2

    # The same household may of course keep its own members' numbers.
    assert registry.apply([family(registry.tree.liaison_1)])["unchanged"] == 1


def test_liaison_unit_and_book_number_checks(registry):
    for unit, expected in ((999_999, "there is no unit"), (registry.tree.village_a1, "is a village")):
        with pytest.raises(RecordError) as caught:
            registry.apply([household("B1", unit)])
        assert caught.value.field == "liaison_unit_id" and expected in caught.value.message_en
        assert "联户组" in caught.value.message_zh
    with pytest.raises(RecordError) as caught:
        registry.apply([household("B1", registry.tree.liaison_1), household("B1", registry.tree.liaison_2)])
    assert (caught.value.field, caught.value.index) == ("book_no", 1)
    assert registry.count(Household) == 0


def test_bulk_import_counts_and_audit_volume(registry):
    units = [registry.tree.liaison_1, registry.tree.liaison_2, registry.tree.liaison_3]
    rng = random.Random(5)

    def items(year_counts: int) -> list[HouseholdIn]:
        return [
            household(
                f"B{n:04d}",
                units[n % 3],
                members=[
                    MemberIn(name=f"户主{n}", relation="户主", id_number=id_number("19700101", n)),
                    MemberIn(name=f"子{n}", relation="子"),
                ],
                livestock=[{"year": 2026, "species": "yak", "head_count": year_counts + n}],
            )
            for n in range(1, 301)
        ]

    first = registry.apply(items(10))
    assert (first["created"], first["members_added"]) == (300, 600)
    assert registry.count(AuditEntry) == 1  # one import entry, not 300
    changed = items(10)
    picked = rng.sample(range(300), 7)
    for n in picked:
        changed[n].livestock[0].head_count += 1
    second = registry.apply(changed)
    assert (second["updated"], second["unchanged"], second["history_rows"]) == (7, 293, 7)
    entries = registry.rows(AuditEntry)
    assert [entry.action for entry in entries] == ["import", "import"] + ["update"] * 7
    assert json.loads(entries[1].fields)["updated"] == 7
    assert {entry.entity_id for entry in entries[2:]} == {second["household_ids"][n] for n in picked}


# ---------------------------------------------------------------------------------------------
# Reading


def test_masking_by_role_and_audited_clear_reads(registry):
    [household_id] = registry.apply([family(registry.tree.liaison_1)])["household_ids"]
    tree = registry.tree

    def detail(actor: Actor, reason: str | None = None) -> dict | None:
        with registry.sessions.begin() as session:
            return records.household_detail(session, household_id, actor, registry.protector, reason)

    def reads() -> list[AuditEntry]:
        return [entry for entry in registry.rows(AuditEntry) if entry.action == "read_sensitive"]

    worker = Actor(username="lw1", role="liaison_worker", org_unit_id=tree.liaison_1)
    seen = detail(worker, reason="探访")
    assert seen["id_numbers"] == "masked"
    assert [m["id_number"] for m in seen["members"]] == [mask_id_number(ZHAXI), mask_id_number(DROLMA), None]
    # Flags, livestock and the units above are there for everyone who may see the household.
    assert seen["flags"] == ["low_income"] and seen["version"] == 1
    assert seen["livestock"] == [{"year": 2026, "yak": 40, "sheep": 60, "goat": 0, "horse": 0}]
    assert (seen["liaison_unit"]["id"], seen["village"]["name"], seen["township"]["name"]) == (
        tree.liaison_1,
        "江千一村",
        "江千乡",
    )
    assert seen["documents"] == [] and seen["members"][0]["birth_date"] == "1975-03-04"
    assert detail(Actor(username="d", role="department", org_unit_id=None), "核查")["id_numbers"] == "masked"
    assert reads() == []

    # The right role without a reason still sees masked numbers.
    assert detail(COMMANDER)["id_numbers"] == "masked"
    assert detail(COMMANDER, reason="   ")["id_numbers"] == "masked"
    assert reads() == []
    clear = detail(COMMANDER, reason="低保复核")
    assert clear["id_numbers"] == "clear"
    assert [m["id_number"] for m in clear["members"]] == [ZHAXI, DROLMA, None]
    [entry] = reads()
    assert (entry.actor, entry.actor_role, entry.entity_id, entry.reason) == (
        "commander",
        "county_command",
        household_id,
        "低保复核",
    )
    assert json.loads(entry.fields) == {"members.id_number": [m["id"] for m in clear["members"][:2]]}

    township = Actor(username="jq", role="township_command", org_unit_id=tree.township_a)
    assert detail(township, "走访")["id_numbers"] == "clear"
    # Outside their own subtree a household does not exist for them.
    assert detail(Actor(username="gl", role="township_command", org_unit_id=tree.township_b), "走访") is None
    assert detail(Actor(username="g", role="village_grid", org_unit_id=tree.village_a2)) is None
    assert (
        detail(Actor(username="g", role="village_grid", org_unit_id=tree.village_a1))["id_numbers"]
        == "masked"
    )
    assert detail(Actor(username="x", role="liaison_worker")) is None
    assert len(reads()) == 2

    with registry.sessions() as session:
        assert records.household_detail(session, 999_999, COMMANDER, registry.protector, "x") is None
        assert records.household_detail(session, "1", COMMANDER, registry.protector, "x") is None


def test_no_clear_id_number_in_logs_audit_or_history(registry, caplog):
    numbers = [ZHAXI, DROLMA, TSERING, LHAMO]
    caplog.set_level(logging.DEBUG)
    # SQL and its parameters too: a clear number must never even reach the database.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    engine = make_engine(registry.engine.url.render_as_string(hide_password=False), echo="debug")
    sessions = make_session_factory(engine)
    try:
        with sessions.begin() as session:
            [household_id] = records.apply_households(
                session, [family(registry.tree.liaison_1)], CLERK, "登记", registry.protector
            )["household_ids"]
        update = family(registry.tree.liaison_1)
        update.members[2] = MemberIn(name="才让", relation="子", id_number=TSERING)
        update.members.append(MemberIn(name="拉毛", relation="母", id_number=LHAMO))
        with sessions.begin() as session:
            records.apply_households(session, [update], CLERK, "更新", registry.protector)
            with pytest.raises(RecordError) as caught:
                records.apply_households(
                    session,
                    [
                        household(
                            "OTHER",
                            registry.tree.liaison_2,
                            members=[MemberIn(name="甲", relation="户主", id_number=LHAMO)],
                        )
                    ],
                    CLERK,
                    None,
                    registry.protector,
                )
        with sessions.begin() as session:
            shown = records.household_detail(session, household_id, COMMANDER, registry.protector, "复核")
            history = records.household_history(session, household_id, registry.protector)
    finally:
        engine.dispose()
    assert shown["id_numbers"] == "clear"  # the numbers were really read ...
    # ... and SQL was logged with its parameters (on PostgreSQL bulk rows go by COPY, unlogged).
    assert any("FROM members" in record.getMessage() for record in caplog.records)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    with registry.sessions() as session:
        audit_text = json.dumps(
            [list(row) for row in session.execute(select(AuditEntry.__table__)).all()], default=str
        )
        history_text = json.dumps(
            [list(row) for row in session.execute(select(History.__table__)).all()], default=str
        )
        stored = json.dumps(
            [list(row) for row in session.execute(select(Member.__table__)).all()], default=str
        )
    for number in numbers:
        for where, haystack in (
            ("logs", logged),
            ("audit", audit_text),
            ("history", history_text),
            ("members table", stored),
            ("history as returned", json.dumps(history)),
            ("error", str(caught.value.problems) + json.dumps([p.as_dict() for p in caught.value.problems])),
        ):
            assert number not in haystack, f"a clear ID number in the {where}"
            # Nor its first 17 digits (the check character could differ in case) ...
            assert number[:17] not in haystack, f"a clear ID number in the {where}"


def test_bulk_rows_are_stored_as_the_orm_stores_them(registry):
    """The driver-level bulk path must leave exactly what SQLAlchemy itself would have written."""
    from datetime import UTC, datetime

    from services.registry import bulk

    now = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    row = {
        "book_no": "B",
        "liaison_unit_id": registry.tree.liaison_1,
        "head_name": "名\t\\字\n",
        "head_name_bo": None,
        "lat": 33.70512,
        "flag_low_income": True,
        "flag_disability": False,
        "version": 3,
        "updated_at": now,
    }
    with registry.sessions.begin() as session:
        bulk.insert_rows(session, Household.__table__, [row])
        session.execute(insert(Household.__table__), [{**row, "book_no": "C"}])
        bulk.update_rows(session, Household.__table__, [{"id": 1, "address": "地址\t", "updated_at": now}])
        session.execute(
            update(Household.__table__).where(Household.id == 2).values(address="地址\t", updated_at=now)
        )
    with registry.engine.connect() as connection:
        raw = connection.exec_driver_sql(
            "SELECT head_name, head_name_bo, lat, flag_low_income, flag_disability, version, updated_at, "
            "address FROM households ORDER BY id"
        ).all()
    assert raw[0] == raw[1]
    assert raw[0][0] == "名\t\\字\n"


def test_audit_log_is_append_only(registry):
    with registry.sessions.begin() as session:
        audit.record(session, CLERK, "update", "household", 1, ["head_name"], "test")
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), registry.sessions.begin() as session:
            session.execute(text(statement))
    [entry] = registry.rows(AuditEntry)
    assert entry.actor == "clerk"


def test_audit_entries_filter_and_page(registry):
    with registry.sessions.begin() as session:
        for n in range(7):
            audit.record(session, CLERK if n % 2 else COMMANDER, "update", "household", n, {"n": n}, None)
        audit.record(session, COMMANDER, "read_sensitive", "household", 3, {"members.id_number": [1]}, "复核")
    with registry.sessions() as session:
        everything = audit.entries(session)
        assert everything["total"] == 8 and everything["page"] == 1
        assert everything["items"][0]["action"] == "read_sensitive"
        assert audit.entries(session, {"actor": "clerk"})["total"] == 3
        reads = audit.entries(session, {"action": "read_sensitive", "entity_id": 3})
        assert reads["total"] == 1 and reads["items"][0]["fields"] == {"members.id_number": [1]}
        second = audit.entries(session, {}, page=2, page_size=3)
        assert [item["fields"]["n"] for item in second["items"]] == [4, 3, 2]  # after the read, 6, 5
        assert audit.entries(session, {"since": "2000-01-01T00:00:00"})["total"] == 8
        assert audit.entries(session, {"until": "2000-01-01T00:00:00"})["total"] == 0


# ---------------------------------------------------------------------------------------------
# ID numbers through the schema


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("11010519491231002X", "11010519491231002X"),  # the check digit 10 is written X
        ("11010519491231002x", "11010519491231002X"),  # lower-case x from a phone keyboard
        ("１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X"),  # full-width digits
        (f" {ZHAXI} ", ZHAXI),
    ],
)
def test_member_id_number_forms(given, stored):
    member = MemberIn(name="某", relation="户主", id_number=given)
    assert member.id_number == stored
    assert (member.birth_date, member.sex) == (
        parse_id_number(stored).birth_date,
        parse_id_number(stored).sex,
    )


@pytest.mark.parametrize(
    ("given", "message_en", "message_zh"),
    [
        (id_number("19990230", 11), "does not exist", "出生日期不存在"),  # 30 February
        (id_number((date.today() + timedelta(days=1)).strftime("%Y%m%d"), 11), "out of range", "不合理"),
        (ZHAXI[:17] + ("1" if ZHAXI[17] != "1" else "2"), "check character", "校验位"),
        (ZHAXI[:17], "18 characters", "18位"),
        (ZHAXI[:16] + "A" + ZHAXI[17], "only digits", "只能包含数字"),
    ],
)
def test_member_id_number_refused(given, message_en, message_zh):
    with pytest.raises(ValidationError) as caught:
        MemberIn(name="某", relation="户主", id_number=given)
    [problem] = records.validation_problems(caught.value, index=4)
    assert problem.field == "id_number" and problem.index == 4
    assert message_en in problem.message_en and message_zh in problem.message_zh
    assert given not in json.dumps(problem.as_dict(), ensure_ascii=False)


def test_member_birth_date_and_sex_must_agree_with_the_id_number():
    with pytest.raises(ValidationError) as caught:
        MemberIn(name="某", relation="户主", id_number=ZHAXI, sex="F")
    [problem] = records.validation_problems(caught.value)
    assert "sex does not match" in problem.message_en and "性别" in problem.message_zh
    with pytest.raises(ValidationError):
        MemberIn(name="某", relation="户主", id_number=ZHAXI, birth_date=date(1975, 3, 5))


# ---------------------------------------------------------------------------------------------
# Aggregates


def test_summary_for_unit_against_hand_counts(registry):
    tree = registry.tree

    def members(count: int, tag: str) -> list[MemberIn]:
        return [MemberIn(name=f"{tag}{n}", relation="户主" if n == 0 else "子") for n in range(count)]

    yak_sheep = [
        {"year": 2025, "species": "yak", "head_count": 10},
        {"year": 2025, "species": "sheep", "head_count": 20},
        {"year": 2026, "species": "yak", "head_count": 12},
    ]
    registry.apply(
        [
            # Liaison unit 1 (village a1): two households, outside 5-12.
            household(
                "H1", tree.liaison_1, members=members(3, "a"), flags={"low_income"}, livestock=yak_sheep
            ),
            household(
                "H2",
                tree.liaison_1,
                members=members(2, "b"),
                flags={"low_income", "disability"},
                livestock=[{"year": 2026, "species": "horse", "head_count": 2}],
            ),
            # Liaison unit 2 (village a1): five households of one person, within 5-12.
            *(household(f"H{n}", tree.liaison_2, members=members(1, f"c{n}")) for n in range(3, 8)),
            # Liaison unit 3 (village a2) has none; unit 4 (township b) one household, counted in 2024.
            household(
                "H8",
                tree.liaison_4,
                members=members(4, "d"),
                flags={"five_guarantee"},
                livestock=[{"year": 2024, "species": "yak", "head_count": 50}],
            ),
        ]
    )
    with registry.sessions() as session:
        township_a = aggregates.summary_for_unit(session, tree.township_a)
        village_a1 = aggregates.summary_for_unit(session, tree.village_a1)
        county = aggregates.summary_for_unit(session, tree.county)
        township_b = aggregates.summary_for_unit(session, tree.township_b)
        liaison_2 = aggregates.summary_for_unit(session, tree.liaison_2)
        assert aggregates.summary_for_unit(session, 999_999) is None
        assert aggregates.summary_for_unit(session, "3") is None

    no_flags = {"low_income": 0, "disability": 0, "five_guarantee": 0, "left_behind_elderly": 0}
    assert township_a["unit"]["name"] == "江千乡"
    assert {key: township_a[key] for key in ("households", "people", "liaison_units", "liaison_workers")} == {
        "households": 7,
        "people": 10,
        "liaison_units": 3,
        "liaison_workers": 3,
    }
    # The latest year counted in the subtree: H1's 2025 sheep are not mixed into 2026.
    assert township_a["livestock_year"] == 2026
    assert township_a["livestock"] == {"yak": 12, "sheep": 0, "goat": 0, "horse": 2}
    assert township_a["flags"] == {**no_flags, "low_income": 2, "disability": 1}
    assert township_a["liaison_workers_outside_5_12"] == 2
    assert [(u["unit_id"], u["households"]) for u in township_a["liaison_units_outside_5_12"]] == [
        (tree.liaison_1, 2),
        (tree.liaison_3, 0),
    ]

    assert (village_a1["households"], village_a1["people"], village_a1["liaison_workers"]) == (7, 10, 2)
    assert village_a1["liaison_workers_outside_5_12"] == 1

    assert (county["households"], county["people"], county["liaison_workers"]) == (8, 14, 4)
    assert county["livestock"] == {"yak": 12, "sheep": 0, "goat": 0, "horse": 2}
    assert county["flags"] == {**no_flags, "low_income": 2, "disability": 1, "five_guarantee": 1}
    assert county["liaison_workers_outside_5_12"] == 3

    assert (township_b["livestock_year"], township_b["livestock"]["yak"]) == (2024, 50)
    assert (township_b["households"], township_b["people"]) == (1, 4)

    assert (liaison_2["households"], liaison_2["people"], liaison_2["liaison_workers"]) == (5, 5, 1)
    assert liaison_2["livestock_year"] is None and liaison_2["livestock"] == {
        "yak": 0,
        "sheep": 0,
        "goat": 0,
        "horse": 0,
    }
    assert liaison_2["liaison_workers_outside_5_12"] == 0 and liaison_2["flags"] == no_flags


# ---------------------------------------------------------------------------------------------
# The demo seed goes through the same write path


def test_seeded_members_are_valid_and_protected(database_url, tmp_path):
    migrate(MIGRATIONS, database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    protector = Protector(os.urandom(32), os.urandom(32))
    result = seed_demo(sessions, tmp_path / "var", protector=protector)
    with sessions() as session:
        members = session.execute(
            select(
                Member.id_number_cipher, Member.id_number_index, Member.id_number_masked, Member.birth_date
            ).add_columns(Member.birth_year, Member.sex, Member.relation, Member.ethnicity)
        ).all()
        flags = session.execute(
            select(
                func.count(),
                *(func.sum(case((getattr(Household, f"flag_{flag}"), 1), else_=0)) for flag in FLAGS),
            )
        ).one()
        years = set(session.scalars(select(Livestock.year).distinct()))
        per_household = session.execute(
            select(Livestock.household_id, func.count())
            .where(Livestock.year == 2026)
            .group_by(Livestock.household_id)
        ).all()
        entries = session.scalars(select(AuditEntry)).all()
    assert len(members) == result["members"]
    numbers = set()
    for cipher, index, masked, born, birth_year, sex, relation, _ in members:
        number = protector.decrypt(cipher)
        parsed = parse_id_number(number)
        numbers.add(number)
        assert number.startswith(COUNTY_ADMIN_CODE) and masked == mask_id_number(number)
        assert index == protector.blind_index(number)
        assert (parsed.birth_date, parsed.sex, birth_year) == (born, sex, born.year)
        if relation in ("父", "孙子", "子"):
            assert sex == "M", relation
        if relation in ("母", "孙女", "女"):
            assert sex == "F", relation
    assert len(numbers) == len(members)
    assert sum(m.ethnicity == "藏族" for m in members) > 0.9 * len(members)
    households, *flagged = flags
    assert dict(zip(FLAGS, flagged, strict=True)) == {
        flag: round(share * households) for flag, share in FLAG_SHARES.items()
    }
    assert years == {2025, 2026} and len(per_household) == households
    assert [(e.action, e.reason) for e in entries] == [("import", "demo seed")]

    # Deterministic but for the ciphertexts' nonces: a second seed (always SQLite) with the same keys.
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    migrate(MIGRATIONS, other_url)
    other = make_engine(other_url)
    seed_demo(make_session_factory(other), tmp_path / "other-var", protector=protector)
    assert _details(make_session_factory(other)) == _details(sessions)
    other.dispose()
    engine.dispose()


def _details(sessions: sessionmaker) -> dict[str, list]:
    with sessions() as session:
        return {
            "members": session.execute(
                select(
                    Member.id,
                    Member.id_number_index,
                    Member.id_number_masked,
                    Member.birth_date,
                    Member.ethnicity,
                    Member.phone,
                ).order_by(Member.id)
            ).all(),
            "households": session.execute(
                select(
                    Household.id,
                    Household.grassland_area_mu,
                    *(getattr(Household, f"flag_{flag}") for flag in FLAGS),
                ).order_by(Household.id)
            ).all(),
            "livestock": session.execute(
                select(
                    Livestock.household_id, Livestock.year, Livestock.species, Livestock.head_count
                ).order_by(Livestock.household_id, Livestock.year, Livestock.species)
            ).all(),
        }
