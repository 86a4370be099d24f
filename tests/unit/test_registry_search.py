"""Registry search on both engines, over a small hand-built county written straight into the tables.

Every query kind the box understands, the filters, ranking, paging, deduplication, literal handling of
SQL-looking input, and the trigger-kept search structures after updates and deletes (equal to a fresh
rebuild). The paths a large registry takes (rank by rank; walking book order) are forced by shrinking
``MATERIALISE_LIMIT`` and ``TIER_LIMIT`` and must answer the same.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, text, update

from lianhu.db import make_engine, make_session_factory, migrate
from services.registry import search
from services.registry.idnumber import check_character, mask_id_number
from services.registry.models import Household, Member, OrgUnit
from services.registry.protection import Protector

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"
PROTECTOR = Protector(
    hashlib.sha256(b"test encryption key").digest(), hashlib.sha256(b"test index key").digest()
)


def _id_number(first16: str, check: str | None = None) -> str:
    """A valid number; with ``check``, the first sequence digit that gives that check character."""
    for last in "0123456789":
        first17 = first16 + last
        if check is None or check_character(first17) == check:
            return first17 + check_character(first17)
    raise AssertionError("no such number")


ID_X = _id_number("6326231975061212", check="X")  # ends in X: searched for with a lower-case x
ID_PLAIN = _id_number("6326231988020311")

LONG_NAME = "阿旺罗布桑丹贝坚赞嘉措旺姆次仁平措顿珠"
# Org tree: county 1; townships 2 (江千乡) and 3 (柯曲镇); villages 4, 5; liaison units 6, 7.
UNITS = [
    (1, None, "county", 1, "甘德县", "/1/"),
    (2, 1, "township", 2, "江千乡", "/1/2/"),
    (3, 1, "township", 2, "柯曲镇", "/1/3/"),
    (4, 2, "village", 3, "江千一村", "/1/2/4/"),
    (5, 3, "village", 3, "柯曲一村", "/1/3/5/"),
    (6, 4, "liaison", 4, "江千一村第1联户组", "/1/2/4/6/"),
    (7, 5, "liaison", 4, "柯曲一村第1联户组", "/1/3/5/7/"),
]
# id, book number, liaison unit, head (Chinese, Tibetan), flags
HOUSEHOLDS = [
    (1, "632623-JQ-000001", 6, "扎西", "བཀྲ་ཤིས", {"low_income"}),
    (2, "632623-JQ-000002", 6, "扎西才让", "བཀྲ་ཤིས་ཚེ་རིང", {"disability"}),
    (3, "632623-JQ-000003", 6, "才让扎西", "ཚེ་རིང་བཀྲ་ཤིས", set()),
    (4, "632623-KQ-000001", 7, "扎西多杰", "བཀྲ་ཤིས་རྡོ་རྗེ", set()),
    (5, "632623-KQ-000002", 7, "王建国", None, set()),
    (6, "632623-JQ-000010", 6, "多杰", "རྡོ་རྗེ", {"low_income", "left_behind_elderly"}),
    (7, "632623-JQ-000011", 6, "才让多杰", "ཚེ་རིང་རྡོ་རྗེ", set()),
]
# id, household, name, Tibetan name, phone, ID number
MEMBERS = [
    (1, 1, "扎西", "བཀྲ་ཤིས", None, None),
    (2, 1, "卓玛", "སྒྲོལ་མ", None, None),
    (3, 2, "扎西才让", "བཀྲ་ཤིས་ཚེ་རིང", None, None),
    (4, 2, "拉毛", "ལྷ་མོ", None, None),
    (5, 3, "才让扎西", "ཚེ་རིང་བཀྲ་ཤིས", None, None),
    (6, 3, "才让卓玛", "ཚེ་རིང་སྒྲོལ་མ", None, ID_PLAIN),
    # Two members of one household match 扎西: the household is still one result.
    (7, 4, "扎西多杰", "བཀྲ་ཤིས་རྡོ་རྗེ", None, None),
    (8, 4, "扎西卓玛", "བཀྲ་ཤིས་སྒྲོལ་མ", None, None),
    (9, 5, "王建国", None, "13912345678", None),
    (10, 5, "王秀英", None, None, None),
    (11, 6, "多杰", "རྡོ་རྗེ", None, ID_X),
    (12, 7, "才让多杰", "ཚེ་རིང་རྡོ་རྗེ", "188-0000-1234", None),
    (13, 7, "央金", "དབྱངས་ཅན", None, None),
    # Longer than the 16 characters PostgreSQL keeps as one key: found all the same.
    (14, 5, LONG_NAME, None, None, None),
]


def _household_row(hid, book_no, unit, head, head_bo, flags):
    return {
        "id": hid,
        "book_no": book_no,
        "liaison_unit_id": unit,
        "head_name": head,
        "head_name_bo": head_bo,
        **{f"flag_{flag}": flag in flags for flag in search.FLAGS},
    }


def _member_row(mid, hid, name, name_bo, phone, id_number):
    row = {
        "id": mid,
        "household_id": hid,
        "name": name,
        "name_bo": name_bo,
        "relation": "户主",
        "phone": phone,
    }
    if id_number is not None:
        row.update(
            id_number_cipher=PROTECTOR.encrypt(id_number),
            id_number_index=PROTECTOR.blind_index(id_number),
            id_number_masked=mask_id_number(id_number),
        )
    return row


@pytest.fixture
def sessions(database_url):
    migrate(MIGRATIONS, database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        session.execute(
            insert(OrgUnit),
            [
                {"id": i, "parent_id": p, "kind": k, "level": lv, "name": n, "path": path}
                for i, p, k, lv, n, path in UNITS
            ],
        )
        session.execute(insert(Household), [_household_row(*row) for row in HOUSEHOLDS])
        session.execute(insert(Member), [_member_row(*row) for row in MEMBERS])
    yield factory
    engine.dispose()


@pytest.fixture(params=["memory", "tiers", "walk"])
def run(request, sessions, monkeypatch):
    """Search as the service would. The small county always fits the in-memory ranking; "tiers"
    forces counting rank by rank, "walk" also paging each rank by walking book order."""
    if request.param in ("tiers", "walk"):
        monkeypatch.setattr(search, "MATERIALISE_LIMIT", 0)
    if request.param == "walk":
        monkeypatch.setattr(search, "TIER_LIMIT", 0)

    def _run(q, **kwargs):
        with sessions() as session:
            return search.search_households(session, q, PROTECTOR, **kwargs)

    return _run


def ids(result) -> list[int]:
    return [item["id"] for item in result["items"]]


def test_chinese_full_name(run):
    result = run("才让多杰")
    assert ids(result) == [7]
    assert result["total"] == 1 and result["total_is_estimate"] is False
    item = result["items"][0]
    assert item["book_no"] == "632623-JQ-000011"
    assert item["head_name"] == "才让多杰" and item["head_name_bo"] == "ཚེ་རིང་རྡོ་རྗེ"
    assert item["liaison_unit_id"] == 6 and item["members"] == 2 and item["flags"] == []
    assert {"field": "name", "value": "才让多杰", "member_id": 12} in item["matched"]


def test_two_character_name_ranks_exact_then_prefix_then_inside(run):
    result = run("扎西")
    # Exact 扎西, then names starting with it by book number, then 才让扎西.
    assert ids(result) == [1, 2, 4, 3]
    assert result["total"] == 4


def test_household_with_two_matching_members_is_one_result(run):
    result = run("扎西")
    assert ids(result).count(4) == 1
    matched = next(item for item in result["items"] if item["id"] == 4)["matched"]
    assert {m["member_id"] for m in matched if m["field"] == "name"} == {7, 8}


def test_chinese_partial_names(run):
    assert ids(run("卓玛")) == [1, 3, 4]  # 卓玛 exactly, then 才让卓玛 and 扎西卓玛 by book number
    assert ids(run("王")) == [5]  # a Han surname: names starting with 王
    assert ids(run("让扎")) == [3]  # any run of characters: 才让扎西
    assert ids(run("西才")) == [2]
    assert ids(run("扎西 才让")) == [2]  # typed with a space


def test_long_names(run):
    assert ids(run(LONG_NAME)) == [5]
    assert ids(run(LONG_NAME[:17])) == [5]  # a prefix longer than any key
    assert ids(run(LONG_NAME[1:])) == [5]  # inside, longer than any key
    assert ids(run(LONG_NAME[1:-1] + "扎")) == []


def test_tibetan_names(run):
    assert ids(run("བཀྲ་ཤིས")) == [1, 2, 4, 3]  # same ranking as its transcription 扎西
    assert ids(run("བཀྲ་ཤིས་")) == [1, 2, 4, 3]  # a trailing tsheg changes nothing
    assert ids(run("ཤིས་ཚེ")) == [2]  # a run of syllables inside a name
    assert ids(run("བཀྲ་ཤི")) == []  # Tibetan matches whole syllables: ཤི is not ཤིས
    # Two characters: names starting with the syllable, then names with it as a later syllable.
    assert ids(run("ཚེ")) == [3, 7, 2]


def test_id_number_is_found_through_the_blind_index_and_shown_masked(run):
    result = run(ID_X.lower())  # a lower-case x, as phones type it
    assert ids(result) == [6]
    assert result["items"][0]["matched"] == [
        {"field": "id_number", "value": mask_id_number(ID_X), "member_id": 11}
    ]
    assert ids(run(ID_PLAIN)) == [3]
    assert ids(run(ID_PLAIN[:-1] + ("0" if ID_PLAIN[-1] != "0" else "1"))) == []


def test_no_clear_id_number_in_any_result(run):
    dumped = json.dumps(
        [run(q) for q in (ID_X, ID_X.lower(), ID_PLAIN, "多杰", "才让", "632623", None)], ensure_ascii=False
    )
    for number in (ID_X, ID_PLAIN):
        assert number not in dumped and number.lower() not in dumped and number[6:14] not in dumped


def test_id_number_search_needs_the_protector(sessions):
    with sessions() as session, pytest.raises(ValueError, match="Protector"):
        search.search_households(session, ID_X, None)
    with sessions() as session:
        assert ids(search.search_households(session, "扎西", None)) == [1, 2, 4, 3]


def test_book_number_exact_and_prefix(run):
    result = run("632623-JQ-000001")
    assert ids(result) == [1]
    assert result["items"][0]["matched"] == [{"field": "book_no", "value": "632623-JQ-000001"}]
    assert ids(run("632623-JQ-00000")) == [1, 2, 3]
    assert ids(run("632623-KQ")) == [4, 5]
    assert run("632623")["total"] == 7
    assert ids(run("６３２６２３－ＫＱ－０００００２")) == [5]  # full-width, as pasted from a spreadsheet


def test_phone_exact_and_last_digits(run):
    assert ids(run("13912345678")) == [5]
    assert ids(run("139 1234 5678")) == [5]
    assert ids(run("5678")) == [5]
    # Stored as 188-0000-1234: found by its last four and by the whole number.
    result = run("1234")
    assert ids(result) == [7]
    assert result["items"][0]["matched"] == [{"field": "phone", "value": "188-0000-1234", "member_id": 12}]
    assert ids(run("18800001234")) == [7]
    assert ids(run("345678")) == [5]  # any tail of four digits or more
    assert ids(run("445678")) == []
    assert ids(run("234")) == []  # fewer than four digits is no phone tail


def test_subtree_filter(run):
    assert ids(run("扎西", unit_path="/1/3/")) == [4]
    assert ids(run("扎西", unit_path="/1/2/4/")) == [1, 2, 3]
    assert ids(run("扎西", unit_path="/1/2/4/6")) == [1, 2, 3]
    assert ids(run("扎西", unit_path="/1/")) == [1, 2, 4, 3]
    assert ids(run("13912345678", unit_path="/1/2/")) == []
    assert run("扎西", unit_path="/1/9/")["total"] == 0  # no such unit
    with pytest.raises(ValueError):
        run("扎西", unit_path="1/2")


def test_flag_filter(run):
    assert ids(run(None, flags={"low_income"})) == [1, 6]
    assert ids(run("扎西", flags={"low_income"})) == [1]
    assert ids(run(None, flags={"low_income", "left_behind_elderly"})) == [6]
    assert ids(run("", flags={"five_guarantee"})) == []
    assert run(None, flags={"low_income"})["items"][1]["flags"] == ["low_income", "left_behind_elderly"]
    with pytest.raises(ValueError):
        run(None, flags={"rich"})


def test_browse_the_subtree_in_book_order(run):
    result = run(None, unit_path="/1/2/")
    assert ids(result) == [1, 2, 3, 6, 7]
    assert result["total"] == 5
    assert ids(run("  ")) == [1, 2, 3, 6, 7, 4, 5]


def test_paging_and_total(run):
    pages = [run("扎西", page=page, page_size=2) for page in (1, 2, 3)]
    assert [ids(page) for page in pages] == [[1, 2], [4, 3], []]
    assert {page["total"] for page in pages} == {4}
    assert pages[1]["page"] == 2 and pages[1]["page_size"] == 2
    assert [ids(run(None, page=page, page_size=3)) for page in (1, 2, 3)] == [[1, 2, 3], [6, 7, 4], [5]]
    with pytest.raises(ValueError):
        run("扎西", page=0)
    with pytest.raises(ValueError):
        run("扎西", page_size=search.MAX_PAGE_SIZE + 1)


def test_total_above_the_cap_is_an_estimate(run, monkeypatch):
    monkeypatch.setattr(search, "TOTAL_CAP", 3)
    monkeypatch.setattr(search, "MATERIALISE_LIMIT", 0)  # the cap only applies past in-memory ranking
    result = run("扎西", page_size=2)
    assert result["total"] == 3 and result["total_is_estimate"] is True
    assert ids(result) == [1, 2]
    assert ids(run("扎西", page=2, page_size=2)) == [4]  # the cap is also the deepest result served
    assert ids(run("扎西", page=3, page_size=2)) == []


@pytest.mark.parametrize(
    "q", ["%", "_", "'", '"', "扎西%", "扎_", "%扎西%", "' OR '1'='1", '"扎西" OR "卓玛"', "\\", "*"]
)
def test_sql_and_fts_syntax_is_taken_literally(run, q):
    result = run(q)
    assert result["items"] == [] and result["total"] == 0


def test_documents_follow_updates_and_deletes(sessions, run):
    with sessions.begin() as session:
        session.execute(update(Member).where(Member.id == 2).values(name="格桑", name_bo="སྐལ་བཟང"))
        session.execute(update(Member).where(Member.id == 13).values(household_id=5))  # moved house
        session.execute(update(Household).where(Household.id == 5).values(flag_five_guarantee=True))
        session.execute(update(Household).where(Household.id == 6).values(liaison_unit_id=7))
    assert ids(run("格桑")) == [1]
    assert ids(run("སྐལ་བཟང")) == [1]
    assert ids(run("卓玛")) == [3, 4]
    assert ids(run("央金")) == [5]
    assert ids(run(None, flags={"five_guarantee"})) == [5]
    assert ids(run("多杰", unit_path="/1/3/")) == [6, 4]

    with sessions.begin() as session:
        session.execute(
            update(Household).where(Household.id == 1).values(head_name="尼玛", head_name_bo="ཉི་མ")
        )
        session.execute(delete(Member).where(Member.id == 1))
        session.execute(delete(Member).where(Member.household_id == 3))
        session.execute(delete(Household).where(Household.id == 3))
    assert ids(run("扎西")) == [2, 4]
    assert ids(run("尼玛")) == [1]
    assert run(None)["total"] == 6

    # A unit moved to the other township: its households follow it into the new subtree.
    with sessions.begin() as session:
        session.execute(update(OrgUnit).where(OrgUnit.id == 5).values(parent_id=2, path="/1/2/5/"))
        session.execute(update(OrgUnit).where(OrgUnit.id == 7).values(path="/1/2/5/7/"))
    assert ids(run("扎西", unit_path="/1/2/")) == [2, 4]
    assert ids(run("扎西", unit_path="/1/3/")) == []


def _migration():
    path = MIGRATIONS / "versions" / "0003_search_indexes.py"
    spec = importlib.util.spec_from_file_location("search_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _names(doc: str) -> list[str]:
    return sorted(item for item in re.split("[\x02\x03\x04]+", doc) if item)


def assert_index_is_a_rebuild(session) -> None:
    """What the triggers kept equals what building the search structures afresh gives."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("CREATE TEMP TABLE kept AS SELECT * FROM search_households"))
        session.execute(text("SELECT search_households_refresh(ARRAY(SELECT id FROM households))"))
        for first, second in (("kept", "search_households"), ("search_households", "kept")):
            extra = session.execute(text(f"SELECT * FROM {first} EXCEPT SELECT * FROM {second}")).all()
            assert extra == []
        return
    kept = session.execute(text("SELECT * FROM search_households ORDER BY household_id")).mappings().all()
    fresh = (
        session.execute(text("SELECT * FROM search_households_source ORDER BY household_id")).mappings().all()
    )
    assert [{**row, "doc": _names(row["doc"])} for row in kept] == [
        {**row, "doc": _names(row["doc"])} for row in fresh
    ]
    # The FTS index: every term in as many rows as a freshly filled copy of it has.
    migration = _migration()
    definition = next(s for s in migration.SQLITE_UP if "CREATE VIRTUAL TABLE search_households_keys" in s)
    session.execute(text(definition.replace("search_households_keys", "temp.rebuilt", 1)))
    for statement in migration.SQLITE_UP[-2:]:
        session.execute(text(statement.replace("search_households_keys", "temp.rebuilt", 1)))
    session.execute(
        text("CREATE VIRTUAL TABLE temp.kept_terms USING fts5vocab(main, search_households_keys, 'row')")
    )
    session.execute(text("CREATE VIRTUAL TABLE temp.fresh_terms USING fts5vocab(temp, rebuilt, 'row')"))
    terms = "SELECT term, doc FROM temp.{} ORDER BY term"
    assert (
        session.execute(text(terms.format("kept_terms"))).all()
        == session.execute(text(terms.format("fresh_terms"))).all()
    )


def test_search_structures_equal_a_rebuild_after_every_kind_of_change(sessions):
    with sessions() as session:
        assert_index_is_a_rebuild(session)
        session.rollback()
    with sessions.begin() as session:
        session.execute(
            update(Member).where(Member.id == 2).values(name="格桑", name_bo="སྐལ་བཟང", phone="139-0000-0002")
        )
        session.execute(update(Member).where(Member.id == 13).values(household_id=5))
        session.execute(
            update(Household).where(Household.id == 5).values(flag_five_guarantee=True, head_name="王建华")
        )
        session.execute(update(Household).where(Household.id == 6).values(liaison_unit_id=7))
        session.execute(delete(Member).where(Member.household_id == 3))
        session.execute(delete(Household).where(Household.id == 3))
        session.execute(update(OrgUnit).where(OrgUnit.id == 7).values(path="/1/2/5/7/"))
        session.execute(
            insert(Member),
            [_member_row(15, 1, "才让扎西", "ཚེ་རིང་བཀྲ་ཤིས", "13800001111", None)],
        )
    with sessions() as session:
        assert_index_is_a_rebuild(session)
        session.rollback()
