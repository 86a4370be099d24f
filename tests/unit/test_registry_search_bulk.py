"""A large registry write rebuilds its households' search rows in bulk (migration 0004); a small one
leaves them to the row triggers. Both must give the same search documents and keys, on both engines.

The same county is written twice, into two fresh databases: once as one large write (the bulk path)
and once as many small ones (the triggers), then changed in every way the write path can change a
household (names, phones, flags, liaison unit, new members), again in bulk and in small writes.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session, sessionmaker

from lianhu.db import make_engine, make_session_factory, migrate
from services.registry import records
from services.registry.idnumber import check_character
from services.registry.models import Household, Member, OrgUnit
from services.registry.protection import Protector
from services.registry.schemas import Actor, HouseholdIn, LivestockIn, MemberIn
from services.registry.seed import COUNTY_ADMIN_CODE, PARTS, invented_phone
from tests.conftest import create_pg_database, drop_pg_database
from tests.unit.test_registry_search import assert_index_is_a_rebuild

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"
PROTECTOR = Protector(hashlib.sha256(b"bulk search key").digest(), hashlib.sha256(b"bulk index key").digest())
ACTOR = Actor(username="bulk-tester", role="governance_centre")
# County 1; townships 2, 3; villages 4, 5; liaison units 6 and 7 (village 4) and 8 (village 5).
UNITS = [
    (1, None, "county", 1, "/1/"),
    (2, 1, "township", 2, "/1/2/"),
    (3, 1, "township", 2, "/1/3/"),
    (4, 2, "village", 3, "/1/2/4/"),
    (5, 3, "village", 3, "/1/3/5/"),
    (6, 4, "liaison", 4, "/1/2/4/6/"),
    (7, 4, "liaison", 4, "/1/2/4/7/"),
    (8, 5, "liaison", 4, "/1/3/5/8/"),
]
LIAISON_UNITS = (6, 7, 8)
HOUSEHOLDS = 600  # enough for both writes to be large: records.SEARCH_BULK_ROWS
SMALL_WRITE = 5  # households per small write: far below records.SEARCH_BULK_ROWS


def _registry(url: str) -> tuple[Engine, sessionmaker]:
    migrate(MIGRATIONS, url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        session.execute(
            insert(OrgUnit),
            [
                {"id": i, "parent_id": p, "kind": k, "level": lv, "name": f"单位{i}", "path": path}
                for i, p, k, lv, path in UNITS
            ],
        )
    return engine, sessions


@pytest.fixture
def twins(database_url, tmp_path) -> Iterator[tuple[sessionmaker, sessionmaker]]:
    """Two fresh registries on one engine: the first for large writes, the second for small ones."""
    other = (
        f"sqlite:///{tmp_path / 'small.db'}" if database_url.startswith("sqlite") else create_pg_database()
    )
    engines = []
    try:
        (bulk_engine, bulk), (small_engine, small) = _registry(database_url), _registry(other)
        engines = [bulk_engine, small_engine]
        yield bulk, small
    finally:
        for engine in engines:
            engine.dispose()
        if not other.startswith("sqlite"):
            drop_pg_database(other)


class County:
    """Seeded households: Chinese and Tibetan names (some with the spaces and tshegs people type),
    phones, flags, ID numbers (so a renamed member is still the same member)."""

    def __init__(self, seed: int = 2026):
        self.rng = random.Random(seed)
        self.phones: set[str] = set()
        self.people = 0

    def name(self) -> tuple[str, str | None]:
        first, second = self.rng.sample(sorted(PARTS), 2)
        zh, bo = first + second, f"{PARTS[first]}\u0f0b{PARTS[second]}"
        shape = self.rng.randrange(8)
        if shape == 0:
            return f"{first} {second}", None  # typed with a space, no Tibetan
        if shape == 1:
            return zh, bo + "\u0f0b"  # a trailing tsheg
        return zh, bo

    def id_number(self) -> str:
        self.people += 1
        born = date(1950, 1, 1) + timedelta(days=self.people // 100)
        first17 = f"{COUNTY_ADMIN_CODE}{born:%Y%m%d}{self.people % 100:03d}"
        return first17 + check_character(first17)

    def member(self, relation: str, phone: bool = False) -> MemberIn:
        name, name_bo = self.name()
        return MemberIn(
            name=name,
            name_bo=name_bo,
            relation=relation,
            phone=invented_phone(self.rng, self.phones) if phone else None,
            id_number=self.id_number(),
        )

    def households(self) -> list[HouseholdIn]:
        items = []
        for n in range(1, HOUSEHOLDS + 1):
            members = [self.member("户主", phone=True)]
            members += [
                self.member("子女", phone=self.rng.random() < 0.2) for _ in range(self.rng.randrange(6))
            ]
            items.append(
                HouseholdIn(
                    book_no=f"{COUNTY_ADMIN_CODE}-BK-{n:06d}",
                    liaison_unit_id=self.rng.choice(LIAISON_UNITS),
                    head_name=members[0].name,
                    head_name_bo=members[0].name_bo,
                    flags={flag for flag in ("low_income", "disability") if self.rng.random() < 0.2},
                    members=members,
                )
            )
        return items

    def changed(self, items: list[HouseholdIn]) -> list[HouseholdIn]:
        """Every household with a member renamed (both scripts), most changed in one more way."""
        out = []
        for n, item in enumerate(items):
            fields = item.model_dump()
            members = fields["members"]
            members[-1]["name"], members[-1]["name_bo"] = self.name()
            kind = n % 5
            if kind == 1:  # flags changed, moved to another liaison unit
                fields["flags"] = {"five_guarantee"} if not item.flags else set()
                fields["liaison_unit_id"] = LIAISON_UNITS[(LIAISON_UNITS.index(item.liaison_unit_id) + 1) % 3]
            elif kind == 2:  # a new member
                members.append(self.member("孙子女", phone=True).model_dump())
            elif kind == 3:  # a new head, a new phone
                fields["head_name"], fields["head_name_bo"] = self.name()
                members[0]["phone"] = invented_phone(self.rng, self.phones)
            elif kind == 4:  # and livestock, which search does not hold
                fields["livestock"] = [LivestockIn(year=2026, species="yak", head_count=n)]
            out.append(HouseholdIn.model_validate(fields))
        return out


def _write(sessions: sessionmaker, items: list[HouseholdIn], size: int) -> None:
    for start in range(0, len(items), size):
        with sessions.begin() as session:
            records.apply_households(session, items[start : start + size], ACTOR, "test", PROTECTOR)


def _search_rows(session: Session) -> tuple[list, list]:
    """Every search document (its names and phones, in any order) and every search key."""
    documents = [
        {**row, "doc": sorted(re.findall("\x02\x02(.*?)(\x03\x03|\x04\x04)", row["doc"]))}
        for row in session.execute(text("SELECT * FROM search_households ORDER BY household_id")).mappings()
    ]
    if session.get_bind().dialect.name == "postgresql":
        keys = session.execute(
            text(
                "SELECT household_id, array(SELECT unnest(search_household_keys(doc)) ORDER BY 1) "
                "FROM search_households ORDER BY household_id"
            )
        ).all()
    else:
        # Each FTS row (a member, or minus a household for its head) with each of its keys.
        session.execute(
            text(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_terms "
                "USING fts5vocab(main, search_households_keys, 'instance')"
            )
        )
        keys = session.execute(text("SELECT doc, term FROM temp.search_terms ORDER BY doc, term")).all()
    return documents, keys


def _pending(session: Session) -> int:
    return session.scalar(text("SELECT count(*) FROM search_households_pending"))


def assert_same_search_rows(bulk: sessionmaker, small: sessionmaker) -> None:
    with bulk() as bulk_session, small() as small_session:
        ids = "SELECT book_no, id FROM households ORDER BY id"
        # The same rows under the same ids, so documents and keys compare one to one.
        assert bulk_session.execute(text(ids)).all() == small_session.execute(text(ids)).all()
        assert bulk_session.execute(text("SELECT id, household_id FROM members ORDER BY id")).all() == (
            small_session.execute(text("SELECT id, household_id FROM members ORDER BY id")).all()
        )
        documents, keys = _search_rows(bulk_session)
        assert len(documents) == HOUSEHOLDS and keys
        assert (documents, keys) == _search_rows(small_session)
        assert _pending(bulk_session) == _pending(small_session) == 0
        assert_index_is_a_rebuild(bulk_session)
        bulk_session.rollback()


def test_a_large_write_indexes_as_small_writes_do(twins, monkeypatch):
    bulk, small = twins
    rebuilt_at_end = []
    original = records._search_rebuilt_at_end

    def spy(session, household_ids):
        rebuilt_at_end.append(len(household_ids))
        return original(session, household_ids)

    monkeypatch.setattr(records, "_search_rebuilt_at_end", spy)
    county = County()
    first = county.households()
    _write(bulk, first, len(first))
    _write(small, first, SMALL_WRITE)
    assert rebuilt_at_end == [HOUSEHOLDS]  # the large write took the bulk path, the small ones not
    assert_same_search_rows(bulk, small)

    second = county.changed(first)
    _write(bulk, second, len(second))
    _write(small, second, SMALL_WRITE)
    assert rebuilt_at_end == [HOUSEHOLDS, HOUSEHOLDS]
    assert_same_search_rows(bulk, small)


def test_a_large_write_that_fails_leaves_search_as_it_was(database_url, monkeypatch):
    engine, sessions = _registry(database_url)
    try:
        county = County()
        first = county.households()
        _write(sessions, first, len(first))

        def fail(session, inserted):
            # The last step of the write: every row went out, the search rows are not rebuilt yet.
            assert _pending(session) == HOUSEHOLDS
            raise RuntimeError("the disk is full")

        monkeypatch.setattr(records, "_refresh_statistics", fail)
        with sessions() as session:
            with pytest.raises(RuntimeError):
                records.apply_households(session, county.changed(first), ACTOR, "test", PROTECTOR)
            # Nothing of it is left, not even households out of the triggers' care: a caller that
            # commits anyway commits nothing of it.
            assert _pending(session) == 0
            session.commit()
        monkeypatch.undo()

        # The triggers still index every household: a small write after it is found. Its history row
        # is the only one: none of the failed write's is left.
        renamed = first[0].model_copy(update={"head_name": "格桑旺姆"})
        _write(sessions, [renamed], 1)
        with sessions() as session:
            assert session.scalar(text("SELECT count(*) FROM history")) == 1
            assert "格桑旺姆" in session.scalar(
                text("SELECT doc FROM search_households WHERE household_id = 1")
            )
            assert_index_is_a_rebuild(session)
            session.rollback()
    finally:
        engine.dispose()


def test_the_triggers_leave_pending_households_to_the_refresh(database_url):
    engine, sessions = _registry(database_url)
    try:
        with sessions.begin() as session:
            session.execute(text("INSERT INTO search_households_pending (household_id) VALUES (1)"))
            session.execute(text("INSERT INTO search_households_bulk (step) VALUES ('forget')"))
            for hid, name in ((1, "扎西"), (2, "卓玛")):
                session.execute(
                    insert(Household),
                    [{"id": hid, "book_no": f"B{hid}", "liaison_unit_id": 6, "head_name": name}],
                )
                session.execute(insert(Member), [{"household_id": hid, "name": name, "relation": "户主"}])
            indexed = text("SELECT household_id FROM search_households ORDER BY household_id")
            # Household 2 is not pending: its triggers indexed it; household 1 waits for the refresh.
            assert session.scalars(indexed).all() == [2]
            session.execute(text("INSERT INTO search_households_bulk (step) VALUES ('refresh')"))
            assert session.scalars(indexed).all() == [1, 2]
            assert _pending(session) == 0
            assert session.scalar(text("SELECT count(*) FROM search_households_bulk")) == 0
        with sessions() as session:
            assert_index_is_a_rebuild(session)
            session.rollback()
    finally:
        engine.dispose()
