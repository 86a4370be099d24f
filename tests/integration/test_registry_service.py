"""The registry nameko service in a real container on the real RabbitMQ, over a seeded SQLite file.

Run with eventlet patched (``python -m pytest -p tests.support.green tests/integration``); the
``lianhu_env`` fixture puts the container on this session's own virtual host.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import shutil
from pathlib import Path

import eventlet
import pytest
from nameko.standalone.rpc import ServiceRpcProxy
from sqlalchemy import func, select

from lianhu.config import kit_settings
from lianhu.db import make_engine, make_session_factory, migrate
from services.registry.config import registry_settings
from services.registry.idnumber import check_character, mask_id_number
from services.registry.models import AuditEntry, Household, Member, OrgUnit, Position
from services.registry.protection import Protector
from services.registry.seed import seed_demo
from services.registry.service import RegistryService

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"
RPC_TIMEOUT = 10  # nameko 2 RPC waits for ever by default; a hung service must fail the test
# The seed and the service must share keys, as one deployment's seeder and service do.
KEYS = (os.urandom(32), os.urandom(32))
COMMANDER = {"username": "county-command", "role": "county_command"}


@pytest.fixture(scope="module")
def seeded_registry(tmp_path_factory):
    """One seeded SQLite registry for the module: the service only reads it."""
    root = tmp_path_factory.mktemp("registry")
    url = f"sqlite:///{root / 'registry.db'}"
    migrate(MIGRATIONS, url)
    engine = make_engine(url)
    result = seed_demo(make_session_factory(engine), root / "var", protector=Protector(*KEYS))
    engine.dispose()
    return url, result


def _start(url: str, lianhu_env, container_factory, monkeypatch) -> None:
    monkeypatch.setenv("LIANHU_REGISTRY_DATABASE_URL", url)
    monkeypatch.setenv("LIANHU_REGISTRY_ENCRYPTION_KEY", base64.b64encode(KEYS[0]).decode())
    monkeypatch.setenv("LIANHU_REGISTRY_INDEX_KEY", base64.b64encode(KEYS[1]).decode())
    kit_settings.cache_clear()
    registry_settings.cache_clear()
    container_factory(RegistryService, lianhu_env).start()


@pytest.fixture
def registry(lianhu_env, seeded_registry, container_factory, monkeypatch):
    """The service in a container over the seeded file; yields an RPC proxy to it."""
    _start(seeded_registry[0], lianhu_env, container_factory, monkeypatch)
    with ServiceRpcProxy(RegistryService.name, lianhu_env, timeout=RPC_TIMEOUT) as proxy:
        yield proxy
    registry_settings.cache_clear()


@pytest.fixture
def writable_registry(lianhu_env, seeded_registry, container_factory, monkeypatch, tmp_path):
    """The service over this test's own copy of the seeded file, which it may change."""
    copy = tmp_path / "registry.db"
    shutil.copyfile(seeded_registry[0].removeprefix("sqlite:///"), copy)
    url = f"sqlite:///{copy}"
    _start(url, lianhu_env, container_factory, monkeypatch)
    with ServiceRpcProxy(RegistryService.name, lianhu_env, timeout=RPC_TIMEOUT) as proxy:
        yield proxy, url
    registry_settings.cache_clear()


def test_rpc_answers_from_the_seeded_registry(registry, seeded_registry):
    _, seeded = seeded_registry
    summary = registry.summary()
    assert summary["townships"] == 7 and summary["households"] == seeded["households"]
    jiangqian = next(t for t in summary["by_township"] if t["name"] == "江千乡")
    assert (
        jiangqian["villages"],
        jiangqian["liaison_units"],
        jiangqian["households"],
        jiangqian["members"],
    ) == (
        4,
        242,
        1136,
        4292,
    )

    centre = registry.governance_centre()
    assert centre["unit"]["name"] == "甘德县综治中心" and centre["head"]["name"]

    health = registry.department("health")
    assert health["unit"]["name"] == "卫生健康局"
    assert registry.department("nope") is None

    household = registry.get_household(1)
    assert household["id"] == 1 and household["members"] >= 1
    chain = registry.chain_above(household["liaison_unit_id"])
    assert [link["unit"]["kind"] for link in chain] == ["liaison", "village", "township", "county"]
    assert registry.handler_of(chain[1]["unit"]["id"]) == chain[1]

    context = registry.reporter_context(chain[0]["unit"]["id"], household_id=1)
    assert context["household_found"] is True and context["chain"] == chain
    assert context["governance_centre"] == centre
    # Positional household id, as a caller without kwargs would send it.
    assert registry.reporter_context(chain[0]["unit"]["id"], 1) == context
    alone = registry.reporter_context(chain[1]["unit"]["id"])
    assert alone["household"] is None and alone["chain"] == chain[1:]


def test_bad_arguments_answer_empty(registry):
    # A gateway relaying phone input may send ids as strings, floats, nulls or worse.
    for bad in ("1", 1.5, None, True, [1], {"id": 1}, -3, 2**40):
        assert registry.chain_above(bad) == [], bad
        assert registry.handler_of(bad) is None, bad
        assert registry.get_household(bad) is None, bad
        context = registry.reporter_context(bad, bad)
        assert context["unit"] is None and context["chain"] == [] and context["household_found"] is False
        # The report still gets its parallel copy to the governance centre.
        assert context["governance_centre"]["unit"]["kind"] == "governance_centre"
        if not isinstance(bad, str):
            assert registry.department(bad) is None, bad
    # Still up and well after all of them.
    assert registry.governance_centre() is not None


def test_unknown_ids_answer_empty(registry):
    assert registry.chain_above(999_999) == []
    assert registry.handler_of(999_999) is None
    assert registry.get_household(999_999) is None
    context = registry.reporter_context(999_999, household_id=999_999)
    assert context == {**context, "unit": None, "household": None, "household_found": False, "chain": []}


def test_household_detail_masks_by_role_and_audits_clear_reads(writable_registry):
    registry, url = writable_registry
    household = registry.get_household(1)
    worker_unit = household["liaison_unit_id"]
    worker = {"username": "lw", "role": "liaison_worker", "org_unit_id": worker_unit}

    masked = registry.household_detail(1, worker, "探访")
    assert masked["id"] == 1 and masked["id_numbers"] == "masked"
    assert all("*" in member["id_number"] for member in masked["members"])
    assert masked["liaison_unit"]["id"] == worker_unit and masked["township"]["name"]
    assert {row["year"] for row in masked["livestock"]} == {2025, 2026}

    clear = registry.household_detail(1, COMMANDER, "低保复核")
    assert clear["id_numbers"] == "clear"
    for shown, hidden in zip(clear["members"], masked["members"], strict=True):
        assert mask_id_number(shown["id_number"]) == hidden["id_number"]
    # Without a reason, or from a role outside the sensitive set, masked.
    assert registry.household_detail(1, COMMANDER)["id_numbers"] == "masked"
    assert (
        registry.household_detail(1, {"username": "d", "role": "department"}, "x")["id_numbers"] == "masked"
    )
    # Malformed input answers None, never a remote error.
    for bad_actor in (None, "county_command", {"role": "county_command"}, [1]):
        assert registry.household_detail(1, bad_actor, "x") is None
    assert registry.household_detail("1", COMMANDER, "x") is None
    assert registry.household_detail(999_999, COMMANDER, "x") is None

    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        reads = session.scalars(select(AuditEntry).where(AuditEntry.action == "read_sensitive")).all()
    engine.dispose()
    assert [(entry.actor, entry.entity_id, entry.reason) for entry in reads] == [
        ("county-command", 1, "低保复核")
    ]


def test_apply_households_over_rpc(writable_registry):
    registry, url = writable_registry
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        unit = session.scalars(select(OrgUnit.id).where(OrgUnit.code == "kequ-v1-lw001")).one()
        village = session.scalars(select(OrgUnit.id).where(OrgUnit.code == "kequ-v1")).one()
    first17 = "63262319900101001"
    number = first17 + check_character(first17)
    item = {
        "book_no": "632623-KQ-900001",
        "liaison_unit_id": unit,
        "head_name": "扎西",
        "flags": ["low_income"],
        "members": [{"name": "扎西", "relation": "户主", "id_number": number}],
        "livestock": [{"year": 2026, "species": "yak", "head_count": 30}],
    }
    created = registry.apply_households([item], COMMANDER, "新户登记")
    assert (created["created"], created["members_added"]) == (1, 1)
    [household_id] = created["household_ids"]
    assert registry.apply_households([item], COMMANDER)["unchanged"] == 1

    changed = registry.apply_households([{**item, "head_name": "扎西多杰"}], COMMANDER, "更名")
    assert (changed["updated"], changed["history_rows"]) == (1, 1)
    [row] = registry.household_history(household_id, COMMANDER)
    assert (row["field"], row["old_value"], row["new_value"], row["reason"]) == (
        "head_name",
        "扎西",
        "扎西多杰",
        "更名",
    )

    # Bad input comes back as per-item errors, in both languages, without the number itself.
    wrong = number[:17] + ("0" if number[17] != "0" else "1")
    bad = [
        {
            **item,
            "book_no": "632623-KQ-900002",
            "members": [
                {
                    "name": "甲",
                    "relation": "户主",
                    "id_number": wrong,
                }
            ],
        },
        {
            **item,
            "book_no": "632623-KQ-900003",
            "livestock": [{"year": 2026, "species": "camel", "head_count": 1}],
        },
    ]
    refused = registry.apply_households(bad, COMMANDER)
    fields = [(error["index"], error["field"]) for error in refused["errors"]]
    assert fields == [(0, "members.0.id_number"), (1, "livestock.0.species")]
    assert (
        "校验位" in refused["errors"][0]["message_zh"]
        and "check character" in refused["errors"][0]["message_en"]
    )
    assert number[:17] not in str(refused)

    taken = registry.apply_households(
        [{**item, "book_no": "632623-KQ-900004", "liaison_unit_id": village}], COMMANDER
    )
    assert {(error["index"], error["field"]) for error in taken["errors"]} == {
        (0, "liaison_unit_id"),
        (0, "members.0.id_number"),
    }
    for bad_call in (([], COMMANDER), ([item], None), ("nope", COMMANDER), ([item], {"role": "x"})):
        assert "errors" in registry.apply_households(*bad_call)

    with make_session_factory(engine)() as session:
        assert session.scalar(select(Member.id_number_masked).where(Member.household_id == household_id)) == (
            mask_id_number(number)
        )
    engine.dispose()


def test_summary_for_unit_over_rpc(registry, seeded_registry):
    engine = make_engine(seeded_registry[0])
    with make_session_factory(engine)() as session:
        jiangqian, county, village = (
            session.scalars(select(OrgUnit.id).where(OrgUnit.code == code)).one()
            for code in ("jiangqian", "gande", "kequ-v1")
        )
    engine.dispose()
    township = registry.summary_for_unit(jiangqian, COMMANDER)
    assert township["unit"]["name"] == "江千乡"
    assert (township["households"], township["people"], township["liaison_workers"]) == (1136, 4292, 242)
    assert township["liaison_workers_outside_5_12"] == 74
    whole = registry.summary_for_unit(None, COMMANDER)
    assert whole["unit"]["kind"] == "county" and whole["households"] == seeded_registry[1]["households"]
    assert whole["livestock_year"] == 2026 and whole["livestock"]["yak"] > 0
    assert whole["flags"]["low_income"] == round(0.08 * whole["households"])
    assert registry.summary_for_unit(county, COMMANDER) == whole
    for bad in ("1", 999_999, -1):
        assert registry.summary_for_unit(bad, COMMANDER) is None
    # Another township's figures are not a grid leader's to see; her own village's are.
    grid = {"username": "grid", "role": "village_grid", "org_unit_id": village}
    assert registry.summary_for_unit(jiangqian, grid) is None
    assert registry.summary_for_unit(None, grid)["unit"]["id"] == village
    assert registry.summary_for_unit(None, None) is None


def _new_households_file(registry) -> bytes:
    """The county exported, then made new: other book numbers, no ID numbers (they are taken)."""
    exported = registry.export_households(COMMANDER, None, "csv")
    rows = list(csv.reader(io.StringIO(base64.b64decode(exported["content_b64"]).decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    book, id_number = header.index("户口簿编号"), header.index("身份证号")
    for row in body:
        row[book] = "N" + row[book]
        row[id_number] = ""
    out = io.StringIO()
    csv.writer(out).writerows([header, *body])
    return out.getvalue().encode()


def test_an_import_runs_off_the_hub_while_other_calls_are_answered(writable_registry, lianhu_env):
    registry, url = writable_registry
    data = _new_households_file(registry)
    answered_during_import = []

    def run_import():
        with ServiceRpcProxy(RegistryService.name, lianhu_env, timeout=300) as importer_proxy:
            return importer_proxy.import_file(
                base64.b64encode(data).decode(), "county.csv", COMMANDER, "迁移"
            )

    importing = eventlet.spawn(run_import)
    eventlet.sleep(0.2)  # the import is under way: parsing alone takes seconds
    while not importing.dead:
        answered_during_import.append(registry.health()["status"])
        eventlet.sleep(0.05)
    result = importing.wait()
    assert result["imported"] is True, result
    assert result["counts"]["created"] > 1000
    # Other workers went on answering while the minute-scale work ran in its own thread.
    assert len(answered_during_import) >= 3 and set(answered_during_import) == {"ok"}
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        assert (
            session.scalar(select(func.count()).where(Household.book_no.like("N%")))
            == result["counts"]["created"]
        )
    engine.dispose()


def test_whole_file_methods_refuse_bad_callers_and_input(registry):
    worker = {"username": "w", "role": "liaison_worker", "org_unit_id": 1}
    assert registry.import_file("", "x.csv", worker)["refused"] == "forbidden"
    assert registry.export_households(worker)["refused"] == "forbidden"
    assert registry.import_file("not base64!", "x.csv", COMMANDER)["errors"][0]["field"] == "file"
    assert registry.import_file("", 42, COMMANDER)["errors"][0]["field"] == "filename"
    assert registry.export_households(COMMANDER, None, "pdf")["errors"][0]["field"] == "format"
    assert registry.export_households(COMMANDER, 999_999)["refused"] == "not_found"
    assert registry.import_file("", "x.csv", None)["refused"] == "forbidden"
    template = registry.import_template("csv")
    assert base64.b64decode(template["content_b64"]).decode("utf-8-sig").startswith("户口簿编号")


def test_position_of_binds_an_account_to_a_real_position(registry, seeded_registry):
    engine = make_engine(seeded_registry[0])
    with make_session_factory(engine)() as session:
        grid = session.execute(
            select(Position.person_id, Position.org_unit_id).where(Position.role == "village_grid").limit(1)
        ).one()
    engine.dispose()
    position = registry.position_of(grid.person_id, grid.org_unit_id)
    assert (position["role"], position["unit"]["kind"]) == ("village_grid", "village")
    assert position["township"]
    assert registry.position_of(grid.person_id, grid.org_unit_id + 999_999) is None
    assert registry.position_of("1", None) is None
