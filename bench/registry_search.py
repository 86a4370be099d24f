"""Registry search at scale: N synthetic people, a mixed query set, latency percentiles.

Usage::

    .venv/bin/python bench/registry_search.py --persons 1000000 [--database-url URL] [--queries 2200]

What it builds (deterministic for a given ``--persons`` and ``--seed``):

- a county with 7 townships of 8 villages each, and liaison units of 5-12 households under them;
- households of 1-8 people (about 4), realistic Tibetan names made of two parts (a few one- and
  three-part names, 3 % Han names) in Chinese transcription and Tibetan script, drawn with a Zipf-like
  skew: 扎西 is in about one name in five, so a two-character query can match half the households;
- valid GB 11643 ID numbers, stored the registry's way (AES-GCM ciphertext, blind index with a fixed
  bench key, masked form), phones for 70 % of adults, flags at plausible rates.

Where: a temporary SQLite file by default; with ``--database-url`` pointing at a PostgreSQL server, a
scratch database made there and dropped afterwards (``--keep`` keeps it, ``--reuse`` queries a kept
one again without loading). The schema comes from the registry's migrations; rows go in with bulk
inserts (SQLite: executemany in one transaction, members before their households so the search
triggers index each household once; PostgreSQL: COPY with the search triggers off, then one bulk
refresh of the search documents and the search indexes rebuilt).

What it measures: ``--queries`` searches (after ``--warmup`` unmeasured ones), one kind after the other
in turn: Chinese full name, three characters of one, a two-character name part, Tibetan full name,
one or two Tibetan syllables, ID number (30 % typed with a lower-case x), book number exact and by
prefix, phone exact and by its last four digits, and browsing a subtree. Half run inside a township
or a village (browsing always does, 30 % of it with a flag), one in five asks for page 5. Each query
is timed wall-clock around ``search_households`` in a fresh session, as the service would run it.

Prints progress, per-kind percentiles and the slowest queries, then as its last line JSON:
``{"persons", "p50_ms", "p99_ms", "engine", ...}`` with ``queries``, ``households``, ``build_s``
(generating the data), ``load_s``, ``by_kind`` and ``load_average`` (the machine's, before and after:
figures from a busy machine are worth less).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import functools
import hashlib
import io
import itertools
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from lianhu.db import make_engine, make_session_factory, migrate, normalise_url  # noqa: E402
from services.registry import search  # noqa: E402
from services.registry.idnumber import CHECK_CHARACTERS, mask_id_number  # noqa: E402
from services.registry.protection import Protector  # noqa: E402
from services.registry.seed import COUNTY_ADMIN_CODE  # noqa: E402

MIGRATIONS = ROOT / "services" / "registry" / "migrations"
# Fixed bench keys: the data is invented, and a fixed key makes two runs build the same index.
BENCH_ENCRYPTION_KEY = hashlib.sha256(b"lianhu bench encryption key").digest()
BENCH_INDEX_KEY = hashlib.sha256(b"lianhu bench blind-index key").digest()
COUNTY_CODE = COUNTY_ADMIN_CODE

# Name parts as pastoral Tibetans carry them (no surname; two parts, the second often marking the
# sex), in Chinese transcription and Tibetan script. Variant transcriptions of one Tibetan name
# (格桑 / 尕藏, 拉毛 / 拉姆, 才让 / 才仁) are kept on purpose: they are what makes search hard.
# Order is rough frequency: weights fall off along each list.
MALE_PARTS = [
    ("扎西", "བཀྲ་ཤིས"),
    ("才让", "ཚེ་རིང"),
    ("多杰", "རྡོ་རྗེ"),
    ("尼玛", "ཉི་མ"),
    ("索南", "བསོད་ནམས"),
    ("旦增", "བསྟན་འཛིན"),
    ("达娃", "ཟླ་བ"),
    ("桑杰", "སངས་རྒྱས"),
    ("更登", "དགེ་འདུན"),
    ("才旦", "ཚེ་བརྟན"),
    ("仁青", "རིན་ཆེན"),
    ("洛桑", "བློ་བཟང"),
    ("格桑", "སྐལ་བཟང"),
    ("公保", "མགོན་པོ"),
    ("东珠", "དོན་འགྲུབ"),
    ("南加", "རྣམ་རྒྱལ"),
    ("华旦", "དཔལ་ལྡན"),
    ("久美", "འཇིགས་མེད"),
    ("昂秀", "དབང་ཕྱུག"),
    ("加措", "རྒྱ་མཚོ"),
    ("益西", "ཡེ་ཤེས"),
    ("江央", "འཇམ་དབྱངས"),
    ("诺布", "ནོར་བུ"),
    ("万玛", "པདྨ"),
    ("周加", "འབྲུག་རྒྱལ"),
    ("仁增", "རིག་འཛིན"),
    ("尕藏", "སྐལ་བཟང"),
    ("才仁", "ཚེ་རིང"),
]
FEMALE_PARTS = [
    ("卓玛", "སྒྲོལ་མ"),
    ("拉毛", "ལྷ་མོ"),
    ("措毛", "མཚོ་མོ"),
    ("吉毛", "སྐྱིད་མོ"),
    ("央金", "དབྱངས་ཅན"),
    ("白玛", "པད་མ"),
    ("周毛", "འབྲུག་མོ"),
    ("卓嘎", "སྒྲོལ་དཀར"),
    ("德吉", "བདེ་སྐྱིད"),
    ("曲珍", "ཆོས་སྒྲོན"),
    ("央吉", "དབྱངས་སྐྱིད"),
    ("拉姆", "ལྷ་མོ"),
    ("切吉", "ཆོས་སྐྱིད"),
    ("措吉", "མཚོ་སྐྱིད"),
]
# A few Han residents (traders, teachers, cadres in the county town), Chinese names only.
HAN_SURNAMES = "王李张刘陈杨赵马韩"
HAN_GIVEN = ["建国", "秀英", "海燕", "志强", "桂兰", "文华", "小军", "丽娟", "永福", "玉梅"]

FLAG_SHARES = {"low_income": 0.08, "disability": 0.03, "five_guarantee": 0.005, "left_behind_elderly": 0.05}
TOWNSHIPS = [
    ("柯曲镇", "KQ"),
    ("上贡麻乡", "SG"),
    ("下贡麻乡", "XG"),
    ("岗龙乡", "GL"),
    ("青珍乡", "QZ"),
    ("江千乡", "JQ"),
    ("下藏科乡", "XZ"),
]
VILLAGES_PER_TOWNSHIP = 8
HOUSEHOLD_SIZE_WEIGHTS = {1: 4, 2: 12, 3: 22, 4: 27, 5: 18, 6: 10, 7: 5, 8: 2}


def _cumulative(count: int, skew: float) -> list[float]:
    """Zipf-like cumulative weights: a few parts are everywhere (扎西, 才让, 卓玛), most are rarer."""
    total = 0.0
    out = []
    for rank in range(count):
        total += 1 / (rank + 1) ** skew
        out.append(total)
    return out


class _Picker:
    """Weighted choice by bisection on precomputed cumulative weights: rng.choices is too slow for 10^6."""

    def __init__(self, items: list, skew: float = 0.6):
        self.items = items
        self.cum = _cumulative(len(items), skew)
        self.total = self.cum[-1]

    def pick(self, rng: random.Random):
        return self.items[bisect.bisect(self.cum, rng.random() * self.total)]


class NameMaker:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.male = _Picker(MALE_PARTS)
        self.female = _Picker(FEMALE_PARTS)
        # Women's first part is a common neutral part (才让卓玛, 尼玛拉毛) or a women's one (央金拉毛).
        self.female_first = _Picker(MALE_PARTS[:14] + FEMALE_PARTS[4:10])

    def name(self, sex: str) -> tuple[str, str | None]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.03:
            return HAN_SURNAMES[int(rng.random() * len(HAN_SURNAMES))] + HAN_GIVEN[
                int(rng.random() * 10)
            ], None
        first, second = (
            (self.male.pick(rng), self.male.pick(rng))
            if sex == "M"
            else (self.female_first.pick(rng), self.female.pick(rng))
        )
        if roll < 0.06 or first == second:
            return first  # one-part names (扎西, 卓玛) are common enough to matter for exact hits
        if roll < 0.08:
            # Three parts (才让拉毛措 style) for the odd long name.
            third = (self.female if sex == "F" else self.male).pick(rng)
            return first[0] + second[0] + third[0], "་".join((first[1], second[1], third[1]))
        return first[0] + second[0], f"{first[1]}་{second[1]}"


@dataclass
class Dataset:
    units: list[tuple] = field(default_factory=list)  # id, parent_id, kind, level, name, code, path
    households: list[tuple] = field(default_factory=list)
    members: list[tuple] = field(default_factory=list)
    # What the query mix draws from: clear ID numbers exist only here, never in the database.
    id_numbers: list[str] = field(default_factory=list)
    township_paths: list[str] = field(default_factory=list)
    village_paths: list[str] = field(default_factory=list)


_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


@functools.cache
def _prefix_sum(prefix14: str) -> int:
    return sum(int(d) * w for d, w in zip(prefix14, _WEIGHTS, strict=False))


def _id_number(rng: random.Random, born: date, sex: str, taken: set[str]) -> str:
    """A GB 11643 number: region, birth date, sequence (odd for men), check character."""
    region = (
        COUNTY_CODE if rng.random() < 0.9 else ("632621", "632622", "632624", "632625")[int(rng.random() * 4)]
    )
    prefix = f"{region}{born.year:04d}{born.month:02d}{born.day:02d}"
    partial = _prefix_sum(prefix)
    while True:
        sequence = int(rng.random() * 500) * 2 + (1 if sex == "M" else 0)
        a, b, c = sequence // 100, sequence // 10 % 10, sequence % 10
        number = f"{prefix}{sequence:03d}{CHECK_CHARACTERS[(partial + a * 8 + b * 4 + c * 2) % 11]}"
        if number not in taken:
            taken.add(number)
            return number


def build_dataset(persons: int, seed: int = 7) -> Dataset:
    """Deterministic for a given (persons, seed): a reused database can rebuild its query mix."""
    rng = random.Random(seed)
    names = NameMaker(rng)
    protector = Protector(BENCH_ENCRYPTION_KEY, BENCH_INDEX_KEY)
    data = Dataset()
    now = datetime(2026, 1, 1, tzinfo=UTC).isoformat(" ")
    data.units.append((1, None, "county", 1, "甘德县", "bench-county", "/1/"))
    next_unit = 2
    villages: list[list[tuple[int, str]]] = []  # per township: (village id, path)
    for township, slug in TOWNSHIPS:
        tid = next_unit
        next_unit += 1
        data.units.append((tid, 1, "township", 2, township, f"bench-{slug}", f"/1/{tid}/"))
        data.township_paths.append(f"/1/{tid}/")
        row = []
        for v in range(VILLAGES_PER_TOWNSHIP):
            vid = next_unit
            next_unit += 1
            data.units.append(
                (
                    vid,
                    tid,
                    "village",
                    3,
                    f"{township[:-1]}{v + 1}村",
                    f"bench-{slug}-v{v + 1}",
                    f"/1/{tid}/{vid}/",
                )
            )
            data.village_paths.append(f"/1/{tid}/{vid}/")
            row.append((vid, f"/1/{tid}/{vid}/"))
        villages.append(row)

    sizes = _Picker(list(HOUSEHOLD_SIZE_WEIGHTS))
    sizes.cum = list(itertools.accumulate(HOUSEHOLD_SIZE_WEIGHTS.values()))
    sizes.total = sizes.cum[-1]
    taken_ids: set[str] = set()
    phones: set[str] = set()
    household_count_estimate = max(1, persons // 4)
    book_seq = [0] * len(TOWNSHIPS)
    member_id = 0
    household_id = 0
    liaison_id = 0
    liaison_left = 0
    liaison_path = ""
    while member_id < persons:
        household_id += 1
        t = min(len(TOWNSHIPS) - 1, (household_id - 1) * len(TOWNSHIPS) // household_count_estimate)
        if liaison_left == 0 or not liaison_path.startswith(data.township_paths[t]):
            # Each liaison worker covers 5-12 households, as the Gande practice asks.
            village_id, village_path = rng.choice(villages[t])
            liaison_id = next_unit
            next_unit += 1
            liaison_path = f"{village_path}{liaison_id}/"
            data.units.append(
                (
                    liaison_id,
                    village_id,
                    "liaison",
                    4,
                    f"联户组{liaison_id}",
                    f"bench-lw{liaison_id}",
                    liaison_path,
                )
            )
            liaison_left = rng.randint(5, 12)
        liaison_left -= 1
        book_seq[t] += 1
        size = min(sizes.pick(rng), persons - member_id)
        head_born = 1945 + int(rng.random() * 54)
        family: list[tuple[str, int, str]] = []
        head_sex = "M" if rng.random() < 0.8 else "F"
        family.append((head_sex, head_born, "户主"))
        if size >= 2:
            family.append(("F" if head_sex == "M" else "M", head_born - 5 + int(rng.random() * 11), "配偶"))
        while len(family) < size:
            sex = "M" if rng.random() < 0.5 else "F"
            family.append(
                (sex, min(head_born + 20 + int(rng.random() * 15), 2025), "子" if sex == "M" else "女")
            )
        head_name: tuple[str, str | None] = ("", None)
        for index, (sex, born_year, relation) in enumerate(family):
            member_id += 1
            name, name_bo = names.name(sex)
            if index == 0:
                head_name = (name, name_bo)
            born = date(born_year, 1 + int(rng.random() * 12), 1 + int(rng.random() * 28))
            number = _id_number(rng, born, sex, taken_ids)
            data.id_numbers.append(number)
            phone = None
            if born_year <= 2009 and rng.random() < 0.7:
                while True:
                    phone = f"1{rng.choice('3589')}{rng.randrange(10**9):09d}"
                    if phone not in phones:
                        phones.add(phone)
                        break
            data.members.append(
                (
                    member_id,
                    household_id,
                    name,
                    name_bo,
                    sex,
                    born_year,
                    relation,
                    born.isoformat(),
                    None if name_bo is None else "藏族",
                    phone,
                    protector.encrypt(number),
                    protector.blind_index(number),
                    mask_id_number(number),
                    1,
                    now,
                )
            )
        flags = tuple(rng.random() < share for share in FLAG_SHARES.values())
        data.households.append(
            (
                household_id,
                f"{COUNTY_CODE}-{TOWNSHIPS[t][1]}-{book_seq[t]:07d}",
                liaison_id,
                head_name[0],
                head_name[1],
                f"甘德县{TOWNSHIPS[t][0]}",
                *flags,
                1,
                now,
            )
        )
    return data


UNIT_COLUMNS = ("id", "parent_id", "kind", "level", "name", "code", "path")
HOUSEHOLD_COLUMNS = (
    "id",
    "book_no",
    "liaison_unit_id",
    "head_name",
    "head_name_bo",
    "address",
    "flag_low_income",
    "flag_disability",
    "flag_five_guarantee",
    "flag_left_behind_elderly",
    "version",
    "updated_at",
)
MEMBER_COLUMNS = (
    "id",
    "household_id",
    "name",
    "name_bo",
    "sex",
    "birth_year",
    "relation",
    "birth_date",
    "ethnicity",
    "phone",
    "id_number_cipher",
    "id_number_index",
    "id_number_masked",
    "version",
    "updated_at",
)
SQLITE_TIMESTAMP = "2026-01-01 00:00:00.000000"  # SQLAlchemy's SQLite storage format, UTC


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def load_sqlite(path: str, data: Dataset, say) -> None:
    """Plain executemany in one transaction, through the migration's triggers.

    Members go in before their households (foreign keys are checked at the end): a member's trigger
    then finds no household to index yet, and each household's trigger indexes it once, with all its
    members, instead of once per member.
    """
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("BEGIN")
        connection.execute("PRAGMA defer_foreign_keys=ON")
        connection.executemany(_insert_sql("org_units", UNIT_COLUMNS), data.units)
        say(f"  {len(data.units):,} org units")
        step = 200_000
        for start in range(0, len(data.members), step):
            connection.executemany(
                _insert_sql("members", MEMBER_COLUMNS),
                (row[:-1] + (SQLITE_TIMESTAMP,) for row in data.members[start : start + step]),
            )
            say(f"  {min(start + step, len(data.members)):,} members")
        for start in range(0, len(data.households), step):
            connection.executemany(
                _insert_sql("households", HOUSEHOLD_COLUMNS),
                (row[:-1] + (SQLITE_TIMESTAMP,) for row in data.households[start : start + step]),
            )
            say(f"  {min(start + step, len(data.households)):,} households (indexed for search)")
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        connection.close()


def _copy_text(rows, columns: int) -> io.StringIO:
    def cell(value) -> str:
        if value is None:
            return "\\N"
        if value is True:
            return "t"
        if value is False:
            return "f"
        return str(value)

    buffer = io.StringIO()
    buffer.writelines("\t".join(cell(v) for v in row) + "\n" for row in rows)
    buffer.seek(0)
    return buffer


def load_postgresql(url: str, data: Dataset, say) -> None:
    """COPY with the search triggers and secondary search indexes off, then one bulk refresh of every
    household's search document and the indexes rebuilt (as a bulk load into an empty registry
    should run); index definitions are read back from the catalogue, not repeated here."""
    connection = psycopg2.connect(normalise_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        with connection.cursor() as cursor:
            # Secondary search indexes only: the table's primary key stays (the refresh keys on it).
            cursor.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() "
                "AND i.indexname LIKE 'search\\_%' AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
            )
            deferred = cursor.fetchall()
            for name, _ in deferred:
                cursor.execute(f'DROP INDEX "{name}"')
            for table in ("org_units", "households", "members"):
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            for table, columns, rows in (
                ("org_units", UNIT_COLUMNS, data.units),
                ("households", HOUSEHOLD_COLUMNS, data.households),
                ("members", MEMBER_COLUMNS, data.members),
            ):
                step = 200_000
                for start in range(0, len(rows), step):
                    cursor.copy_expert(
                        f"COPY {table} ({', '.join(columns)}) FROM STDIN",
                        _copy_text(rows[start : start + step], len(columns)),
                    )
                say(f"  {len(rows):,} {table}")
            for table in ("org_units", "households", "members"):
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            started = time.perf_counter()
            cursor.execute("SELECT search_households_refresh(ARRAY(SELECT id FROM households))")
            say(f"  search documents built in {time.perf_counter() - started:.1f} s")
            connection.commit()
            cursor.execute("SET maintenance_work_mem = '512MB'")
            for name, definition in deferred:
                started = time.perf_counter()
                cursor.execute(definition)
                connection.commit()
                say(f"  index {name} rebuilt in {time.perf_counter() - started:.1f} s")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    finally:
        connection.close()


@dataclass(frozen=True)
class BenchQuery:
    kind: str
    q: str | None
    unit_path: str | None = None
    flags: frozenset[str] = frozenset()
    page: int = 1


QUERY_KINDS = (
    "name_zh_full",
    "name_zh_partial",
    "name_zh_2char",
    "name_bo_full",
    "name_bo_partial",
    "id_number",
    "book_exact",
    "book_prefix",
    "phone_exact",
    "phone_tail",
    "browse",
)


def make_queries(data: Dataset, count: int, seed: int = 11) -> list[BenchQuery]:
    """The mixed query set: every kind equally often, drawn from real rows (so common names come up
    as often as they occur), half of them inside a township or village, one in five on page 5."""
    rng = random.Random(seed)
    members = data.members
    households = data.households
    phones = [m[9] for m in members[: min(len(members), 200_000)] if m[9]]
    out = []
    for n in range(count):
        kind = QUERY_KINDS[n % len(QUERY_KINDS)]
        member = members[int(rng.random() * len(members))]
        household = households[int(rng.random() * len(households))]
        name, name_bo = member[2], member[3]
        if kind == "name_zh_full":
            q = name
        elif kind == "name_zh_partial":
            q = name[:3] if len(name) < 4 or rng.random() < 0.5 else name[-3:]
        elif kind == "name_zh_2char":
            q = name[:2] if rng.random() < 0.5 else name[-2:]
        elif kind == "name_bo_full":
            q = name_bo or name
        elif kind == "name_bo_partial":
            syllables = (name_bo or "བཀྲ་ཤིས").split("་")
            start = int(rng.random() * len(syllables))
            q = "་".join(syllables[start : start + 1 + int(rng.random() * 2)])
        elif kind == "id_number":
            q = data.id_numbers[member[0] - 1]
            q = q.lower() if rng.random() < 0.3 else q
        elif kind == "book_exact":
            q = household[1]
        elif kind == "book_prefix":
            q = household[1][:-2]
        elif kind == "phone_exact":
            q = rng.choice(phones)
        elif kind == "phone_tail":
            q = rng.choice(phones)[-4:]
        else:
            q = None
        unit_path = None
        if kind == "browse" or rng.random() < 0.5:
            pool = data.township_paths if rng.random() < 0.6 else data.village_paths
            unit_path = rng.choice(pool)
        flags = frozenset({"low_income"}) if kind == "browse" and rng.random() < 0.3 else frozenset()
        page = 5 if rng.random() < 0.2 else 1
        out.append(BenchQuery(kind, q, unit_path, flags, page))
    return out


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run_queries(url: str, queries: list[BenchQuery], say) -> dict[str, list[float]]:
    """Each query in its own session, as the service runs one per RPC call; wall time per query."""
    protector = Protector(BENCH_ENCRYPTION_KEY, BENCH_INDEX_KEY)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    timings: dict[str, list[float]] = {kind: [] for kind in QUERY_KINDS}
    slowest: list[tuple[float, BenchQuery]] = []
    try:
        started = time.perf_counter()
        for n, query in enumerate(queries, start=1):
            began = time.perf_counter()
            with sessions() as session:
                search.search_households(
                    session, query.q, protector, unit_path=query.unit_path, flags=query.flags, page=query.page
                )
            elapsed = (time.perf_counter() - began) * 1000
            timings[query.kind].append(elapsed)
            slowest = sorted([*slowest, (elapsed, query)], key=lambda pair: -pair[0])[:8]
            if n % 500 == 0:
                say(f"  {n:,} queries, {time.perf_counter() - started:.1f} s")
    finally:
        engine.dispose()
    for elapsed, query in slowest:
        say(f"  slow: {elapsed:7.2f} ms  {query}")
    return timings


@contextlib.contextmanager
def scratch_database(url: str | None, say, keep: bool = False) -> Iterator[str]:
    """A temporary SQLite file, or a temporary database created on the PostgreSQL server at ``url``
    (any database name in the URL only picks the server), removed afterwards unless ``keep``."""
    if url is None or make_url(url).get_backend_name() == "sqlite":
        if url is not None:
            yield url
            return
        directory = tempfile.mkdtemp(prefix="registry-search-")
        try:
            yield f"sqlite:///{Path(directory) / 'registry.db'}"
        finally:
            if keep:
                say(f"  kept sqlite:///{Path(directory) / 'registry.db'}")
            else:
                shutil.rmtree(directory, ignore_errors=True)
        return
    server = make_url(url).set(drivername="postgresql")
    name = f"lianhu_bench_search_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server.set(database="postgres").render_as_string(False))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        say(f"  created database {name}")
        try:
            yield server.set(database=name).render_as_string(False)
        finally:
            if keep:
                say(f"  kept {server.set(database=name).render_as_string(False)}")
            else:
                with admin.cursor() as cursor:
                    cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                say(f"  dropped database {name}")
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server (a scratch database is made on it) "
        "or a SQLite URL; default: a temporary SQLite file",
    )
    parser.add_argument("--queries", type=int, default=2_200, help="measured queries (default 2,200)")
    parser.add_argument("--warmup", type=int, default=220, help="queries run first and not measured")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="query the database at --database-url as "
        "an earlier run with the same --persons and --seed left it (see --keep); no load",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database and print its URL")
    args = parser.parse_args(argv)
    if args.reuse and not args.database_url:
        parser.error("--reuse needs --database-url")

    def say(message: str) -> None:
        print(message, flush=True)

    scratch = (
        contextlib.nullcontext(args.database_url)
        if args.reuse
        else scratch_database(args.database_url, say, args.keep)
    )
    with scratch as url:
        engine_name = make_url(url).get_backend_name()
        say(f"registry search bench: {args.persons:,} persons on {engine_name}")
        started = time.perf_counter()
        data = build_dataset(args.persons, args.seed)
        built = time.perf_counter() - started
        say(
            f"built {len(data.households):,} households, {len(data.members):,} people, "
            f"{len(data.units):,} org units in {built:.1f} s"
        )
        loaded = 0.0
        if not args.reuse:
            migrate(MIGRATIONS, url)
            started = time.perf_counter()
            if engine_name == "sqlite":
                load_sqlite(make_url(url).database, data, say)
            else:
                load_postgresql(url, data, say)
            loaded = time.perf_counter() - started
            say(f"loaded in {loaded:.1f} s")
        queries = make_queries(data, args.warmup + args.queries)
        households = len(data.households)
        del data
        say(f"warming up with {args.warmup:,} queries")
        run_queries(url, queries[: args.warmup], lambda _: None)
        load_before = os.getloadavg()[0]
        say(f"measuring {args.queries:,} queries (load average {load_before:.2f})")
        timings = run_queries(url, queries[args.warmup :], say)

    load_after = os.getloadavg()[0]
    everything = [ms for values in timings.values() for ms in values]
    by_kind = {
        kind: {
            "n": len(v),
            "p50_ms": round(percentile(v, 0.5), 2),
            "p99_ms": round(percentile(v, 0.99), 2),
            "max_ms": round(max(v), 2),
        }
        for kind, v in timings.items()
        if v
    }
    for kind, figures in by_kind.items():
        say(
            f"  {kind:16} n={figures['n']:5}  p50 {figures['p50_ms']:7.2f} ms"
            f"  p99 {figures['p99_ms']:7.2f} ms"
            f"  max {figures['max_ms']:7.2f} ms"
        )
    print(
        json.dumps(
            {
                "persons": args.persons,
                "p50_ms": round(percentile(everything, 0.5), 2),
                "p99_ms": round(percentile(everything, 0.99), 2),
                "engine": engine_name,
                "queries": len(everything),
                "households": households,
                "build_s": round(built, 1),
                "load_s": round(loaded, 1),
                "by_kind": by_kind,
                "load_average": [round(load_before, 2), round(load_after, 2)],
            },
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
