"""Edits at a screen, scanned certificates and jurisdiction, on both engines, over the small
hand-built county of the records tests: every expectation follows from its tree."""

from __future__ import annotations

import io
import zipfile

import pytest
from sqlalchemy import func, select

from lianhu.blobs import CorruptBlob, FilesystemBlobStore
from lianhu.filetypes import DOCUMENT_TYPES, sniff_one_of
from services.registry import documents, editing, importer, jurisdiction
from services.registry.jurisdiction import Refused
from services.registry.models import AuditEntry, Document, History, Household, Member, OrgUnit
from services.registry.records import RecordError
from services.registry.schemas import Actor
from tests.unit.test_registry_records import COMMANDER, Registry, family, registry  # noqa: F401

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def actor(role: str, unit: int | None, name: str = "someone") -> Actor:
    return Actor(username=name, role=role, org_unit_id=unit)


def stored(reg: Registry, unit: int, book_no: str) -> int:
    counts = reg.apply([family(unit, book_no=book_no, members=[])], COMMANDER)
    return counts["household_ids"][0]


@pytest.fixture
def county(registry: Registry):  # noqa: F811
    """One household under each liaison unit: 1 and 2 in village A1, 3 in A2 (township A), 4 in B1."""
    reg = registry
    t = reg.tree
    ids = {
        n: stored(reg, unit, f"632623-T-00000{n}")
        for n, unit in enumerate((t.liaison_1, t.liaison_2, t.liaison_3, t.liaison_4), start=1)
    }
    return reg, ids


def visible(reg: Registry, who: Actor, ids: dict[int, int]) -> set[int]:
    with reg.sessions() as session:
        seen = set()
        for n, household_id in ids.items():
            path = session.scalar(
                select(OrgUnit.path)
                .join(Household, Household.liaison_unit_id == OrgUnit.id)
                .where(Household.id == household_id)
            )
            if jurisdiction.may_see(session, who, path):
                seen.add(n)
        return seen


def test_each_level_sees_its_own_subtree(county):
    reg, ids = county
    t = reg.tree
    expected = [
        (actor("liaison_worker", t.liaison_1), {1}),
        (actor("village_grid", t.village_a1), {1, 2}),
        (actor("village_grid", t.village_a2), {3}),
        (actor("township_command", t.township_a), {1, 2, 3}),
        (actor("township_command", t.township_b), {4}),
        (actor("department", None), {1, 2, 3, 4}),
        (actor("governance_centre", None), {1, 2, 3, 4}),
        (actor("county_command", t.county), {1, 2, 3, 4}),
        # No place in the tree, no data: an account not bound to a unit sees nothing.
        (actor("liaison_worker", None), set()),
        (actor("village_grid", 999_999), set()),
    ]
    for who, households in expected:
        assert visible(reg, who, ids) == households, who


def test_unit_in_scope_answers_unknown_and_foreign_units_alike(county):
    reg, _ = county
    t = reg.tree
    grid = actor("village_grid", t.village_a1)
    with reg.sessions() as session:
        assert jurisdiction.unit_in_scope(session, grid, None).id == t.village_a1
        assert jurisdiction.unit_in_scope(session, grid, t.liaison_2).id == t.liaison_2
        assert jurisdiction.unit_in_scope(session, grid, t.village_a2) is None
        assert jurisdiction.unit_in_scope(session, grid, t.township_a) is None  # above her
        assert jurisdiction.unit_in_scope(session, grid, 999_999) is None
        assert jurisdiction.unit_in_scope(session, actor("department", None), None).id == t.county


# ---------------------------------------------------------------------------------------- creating


def create(reg: Registry, who: Actor, values: dict) -> dict:
    with reg.sessions.begin() as session:
        return editing.create_household(session, values, who, "新户登记", reg.protector)


def test_a_liaison_worker_registers_a_household_in_her_own_unit(county):
    reg, _ = county
    t = reg.tree
    worker = actor("liaison_worker", t.liaison_1, "lw-1")
    detail = create(
        reg, worker, {"book_no": "632623-N-1", "liaison_unit_id": t.liaison_1, "head_name": "拉毛"}
    )
    assert detail["book_no"] == "632623-N-1" and detail["version"] == 1
    assert detail["liaison_unit"]["id"] == t.liaison_1

    with pytest.raises(RecordError) as outside:
        create(reg, worker, {"book_no": "632623-N-2", "liaison_unit_id": t.liaison_2, "head_name": "拉毛"})
    assert outside.value.field == "liaison_unit_id"
    with pytest.raises(Refused) as taken:
        create(reg, worker, {"book_no": "632623-N-1", "liaison_unit_id": t.liaison_1, "head_name": "卓玛"})
    assert taken.value.code == "conflict"
    with pytest.raises(Refused) as reader:
        create(
            reg,
            actor("department", None),
            {"book_no": "X-1", "liaison_unit_id": t.liaison_1, "head_name": "a"},
        )
    assert reader.value.code == "forbidden"
    with pytest.raises(RecordError) as village:  # a village is not a liaison unit
        create(reg, COMMANDER, {"book_no": "X-2", "liaison_unit_id": t.village_a1, "head_name": "a"})
    assert village.value.field == "liaison_unit_id"
    with pytest.raises(RecordError) as bad_id:
        create(
            reg,
            COMMANDER,
            {
                "book_no": "X-3",
                "liaison_unit_id": t.liaison_1,
                "head_name": "a",
                "members": [{"name": "a", "relation": "户主", "id_number": "632623197503040010"}],
            },
        )
    assert bad_id.value.field == "members.0.id_number"
    assert "632623197503040010" not in str(bad_id.value.as_dict())
    with reg.sessions() as session:
        assert session.scalars(
            select(Household.book_no).where(Household.book_no.not_like("%-T-%"))
        ).all() == ["632623-N-1"]


# ---------------------------------------------------------------------------------------- changing


def update(reg: Registry, who: Actor, household_id: int, changes, version: int | None = None) -> dict:
    with reg.sessions.begin() as session:
        return editing.update_household(
            session, household_id, changes, version, who, "走访更新", reg.protector
        )


def test_a_change_keeps_what_was_not_sent_and_the_old_values(county):
    reg, ids = county
    grid = actor("village_grid", reg.tree.village_a1, "grid-a1")
    before = update(reg, COMMANDER, ids[1], {"flags": ["low_income", "disability"]})
    after = update(reg, grid, ids[1], {"address": "夏季牧场"}, version=before["version"])
    assert after["address"] == "夏季牧场"
    assert after["flags"] == ["low_income", "disability"]  # not sent, not touched
    assert after["head_name"] == before["head_name"] and after["version"] == before["version"] + 1
    with reg.sessions() as session:
        changed = session.execute(
            select(History.field, History.old_value, History.new_value, History.changed_by).where(
                History.entity == "household", History.entity_id == ids[1], History.field == "address"
            )
        ).one()
    assert changed == ("address", "甘德县江千乡江千一村", "夏季牧场", "grid-a1")


def test_a_stale_version_is_refused_not_overwritten(county):
    reg, ids = county
    first = update(reg, COMMANDER, ids[1], {"address": "冬季牧场"})
    with pytest.raises(Refused) as stale:
        update(reg, COMMANDER, ids[1], {"address": "别的地址"}, version=first["version"] - 1)
    assert stale.value.code == "conflict"
    with reg.sessions() as session:
        assert session.get(Household, ids[1]).address == "冬季牧场"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"book_no": "NEW"}, "book_no"),
        ({"version": 9}, "version"),
        ({}, "body"),
        ([1], "body"),
        ({"lat": 200}, "lat"),
        ({"flags": ["rich"]}, "flags.0"),
        ({"nickname": "x"}, "nickname"),
    ],
)
def test_bad_changes_name_their_field(county, changes, field):
    reg, ids = county
    with pytest.raises(RecordError) as refused:
        update(reg, COMMANDER, ids[1], changes)
    assert refused.value.field == field


def test_changes_stay_inside_the_area(county):
    reg, ids = county
    t = reg.tree
    grid = actor("village_grid", t.village_a1)
    with pytest.raises(Refused) as foreign:
        update(reg, grid, ids[3], {"address": "x"})  # village A2's household
    assert foreign.value.code == "not_found"
    with pytest.raises(RecordError) as moved_out:
        update(reg, grid, ids[1], {"liaison_unit_id": t.liaison_3})
    assert moved_out.value.field == "liaison_unit_id"
    moved = update(reg, grid, ids[1], {"liaison_unit_id": t.liaison_2})
    assert moved["liaison_unit"]["id"] == t.liaison_2
    with pytest.raises(Refused) as reader:
        update(reg, actor("department", None), ids[1], {"address": "x"})
    assert reader.value.code == "forbidden"


# ------------------------------------------------------------------------------------- documents


@pytest.fixture
def blobs(tmp_path, registry: Registry):  # noqa: F811
    return FilesystemBlobStore(tmp_path / "blobs", sealer=registry.protector)


def add(reg: Registry, blobs, who: Actor, household_id: int, data: bytes, **fields) -> dict:
    document = documents.DocumentIn.model_validate({"kind": "id_card", **fields})
    with reg.sessions.begin() as session:
        return documents.add_document(session, household_id, document, data, who, reg.protector, blobs)


def test_a_scan_is_stored_sealed_once_and_opened_only_with_a_reason(county, blobs):
    reg, ids = county
    worker = actor("liaison_worker", reg.tree.liaison_1, "lw-1")
    first = add(reg, blobs, worker, ids[1], JPEG, number="632623197503040011", original_name="扎西.jpg")
    assert first["created"] and first["file_type"] == "image/jpeg" and first["file_size"] == len(JPEG)
    assert first["number"] == "632623**********11"
    again = add(reg, blobs, worker, ids[1], JPEG, number="632623197503040011")
    assert not again["created"] and again["id"] == first["id"]

    on_disk = blobs.path_of(first["file_sha256"]).read_bytes()
    assert JPEG[16:64] not in on_disk  # sealed at rest
    with reg.sessions() as session:
        row = session.get(Document, first["id"])
        assert "632623197503040011" not in (row.number_cipher or "") + (row.number_masked or "")

    def open_as(who: Actor, reason: str | None):
        with reg.sessions.begin() as session:
            return documents.open_document(session, first["id"], who, reason, blobs)

    for who, reason, code in [
        (worker, "核对", "forbidden"),
        (actor("department", None), "核对", "forbidden"),
        (COMMANDER, None, "reason_required"),
        (actor("township_command", reg.tree.township_b), "核对", "not_found"),
    ]:
        with pytest.raises(Refused) as refused:
            open_as(who, reason)
        assert refused.value.code == code, who
    record, data = open_as(COMMANDER, "残疾补贴复核")
    assert data == JPEG and record["id"] == first["id"]
    with reg.sessions() as session:
        trail = session.execute(
            select(AuditEntry.action, AuditEntry.entity, AuditEntry.reason).order_by(AuditEntry.id)
        ).all()
    assert ("create", "document", None) in trail
    assert trail[-1] == ("read_sensitive", "document", "残疾补贴复核")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "file"),
        (b"MZ\x90\x00 not a scan", "file"),
        (b"<html><script>alert(1)</script>", "file"),
        (b"\xff\xd8\xff" + b"\x00" * documents.MAX_DOCUMENT_BYTES, "file"),
    ],
)
def test_a_file_that_is_not_a_scan_is_refused(county, blobs, data, field):
    reg, ids = county
    with pytest.raises(RecordError) as refused:
        add(reg, blobs, COMMANDER, ids[1], data)
    assert refused.value.field == field
    assert not blobs.root.exists() or not any(blobs.root.rglob("*"))  # nothing kept


def test_documents_stay_inside_the_area_and_their_household(county, blobs):
    reg, ids = county
    t = reg.tree
    with pytest.raises(Refused) as foreign:
        add(reg, blobs, actor("liaison_worker", t.liaison_1), ids[2], PDF)
    assert foreign.value.code == "not_found"
    with pytest.raises(Refused) as reader:
        add(reg, blobs, actor("department", None), ids[1], PDF)
    assert reader.value.code == "forbidden"
    other = reg.apply([family(t.liaison_4, book_no="632623-T-000099")], COMMANDER)["household_ids"][0]
    with reg.sessions() as session:
        member = session.scalar(select(Member.id).where(Member.household_id == other))
    with pytest.raises(RecordError) as not_a_member:
        add(reg, blobs, COMMANDER, ids[1], PDF, member_id=member)
    assert not_a_member.value.field == "member_id"
    assert add(reg, blobs, COMMANDER, other, PDF, member_id=member, kind="disability_cert")["created"]


def test_a_tampered_blob_is_never_served(county, blobs):
    reg, ids = county
    record = add(reg, blobs, COMMANDER, ids[1], PDF)
    path = blobs.path_of(record["file_sha256"])
    sealed = bytearray(path.read_bytes())
    sealed[-1] ^= 1
    path.write_bytes(bytes(sealed))
    with pytest.raises(CorruptBlob), reg.sessions.begin() as session:
        documents.open_document(session, record["id"], COMMANDER, "核对", blobs)


def test_office_files_are_not_scans():
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("word/document.xml", "<w/>")
    with pytest.raises(ValueError):
        documents.DocumentIn.model_validate({"kind": "passport"})
    assert sniff_one_of(archive.getvalue(), DOCUMENT_TYPES) is None


@pytest.fixture
def green_driver():
    """psycopg2 with a wait callback, as eventlet leaves it in every nameko process."""
    from psycopg2 import extensions, extras

    extensions.set_wait_callback(extras.wait_select)
    yield
    extensions.set_wait_callback(None)


def test_the_write_path_works_with_a_cooperative_driver(registry, green_driver):  # noqa: F811
    counts = registry.apply([family(registry.tree.liaison_1)], COMMANDER)
    assert counts["created"] == 1
    with registry.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 3
        assert session.scalar(select(func.count()).select_from(AuditEntry)) >= 1


def test_a_township_file_cannot_reach_into_another_township(county):
    reg, ids = county
    t = reg.tree
    township_a = actor("township_command", t.township_a, "jq-command")

    def run(rows: list[str]) -> dict:
        data = "\n".join(["户口簿编号,联户单元,户主姓名,姓名,与户主关系", *rows]).encode()
        with reg.sessions() as session:
            scope = jurisdiction.scope_path(session, township_a)
            return importer.import_file(
                session, data, "a.csv", township_a, "核对", reg.protector, scope=scope
            )

    # Household 4 is township B's: listing its book under one of A's units would move it.
    moved = run(
        [
            f"632623-T-000001,{t.liaison_1},扎西多杰,扎西多杰,户主",
            f"632623-T-000004,{t.liaison_2},扎西多杰,扎西多杰,户主",
        ]
    )
    assert moved["imported"] is False
    assert [(e["row"], e["column"]) for e in moved["errors"]] == [(3, "户口簿编号")]
    outside_unit = run([f"632623-T-000009,{t.liaison_4},拉毛,拉毛,户主"])  # B's unit reads as unknown
    assert outside_unit["imported"] is False and outside_unit["errors"][0]["column"] == "联户单元"
    with reg.sessions() as session:
        assert session.get(Household, ids[4]).liaison_unit_id == t.liaison_4
        assert session.scalar(select(func.count()).select_from(Household)) == 4
    assert run(
        [
            f"632623-T-000001,{t.liaison_1},扎西多杰,扎西多杰,户主",
            f"632623-T-000010,{t.liaison_3},拉毛,拉毛,户主",
        ]
    )["imported"]
