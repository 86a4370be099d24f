"""Registry import at scale: an N-row spreadsheet of synthetic households, imported into a fresh registry.

Usage::

    .venv/bin/python bench/registry_import.py --rows 100000 [--database-url URL] [--format csv|xlsx]
        [--profile FILE]

What it does: builds a small org tree (7 townships, villages, one liaison unit per ~8 households) in a
fresh database: a SQLite file in a temporary directory by default, or, with ``--database-url`` naming
a PostgreSQL server (any database on it, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``), a
temporary database created there and dropped afterwards. It then writes an N-row file in the import
format (one row per member, about four per household: realistic Tibetan names in Chinese and Tibetan
script, valid ID numbers with unique region/date/sequence, phones for heads, flags, livestock) and
imports it with ``importer.import_file``, exactly as the gateway would. Everything the user waits for
is timed: read and validate the file, write (``records.apply_households``) and commit.

It then imports the same file again, which must change nothing (``reimport_seconds``).

Progress goes to stdout; the last line is JSON: ``{"rows", "seconds", "rows_per_s"}`` plus
``engine``, ``format``, ``file_mb``, ``households``, ``parse_seconds``, ``write_seconds`` (inside
``apply_households``), ``commit_seconds`` (the rest: unit lookup, commit), ``cpu_seconds`` (this
process's CPU time over the whole import; ``parse_cpu_seconds``, ``write_cpu_seconds`` by phase),
``reimport_seconds``,
``reimport_unchanged`` and the import's ``counts``; with ``--export``, ``export``: the seconds and
size of a full export in each format, and a re-import of the CSV export (must change nothing). With
``--profile``, the first import runs under cProfile: where its time goes is printed before the JSON
(and saved for ``python -m pstats``); cProfile slows the Python parts, so its figures run high.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import functools
import io
import json
import os
import pstats
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make ``lianhu`` and ``services`` importable
    sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
from sqlalchemy import insert, update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from lianhu.db import make_engine, make_session_factory, migrate, normalise_url  # noqa: E402
from services.registry import exporter, importer, records  # noqa: E402
from services.registry.idnumber import check_character  # noqa: E402
from services.registry.models import OrgUnit  # noqa: E402
from services.registry.protection import Protector  # noqa: E402
from services.registry.schemas import Actor  # noqa: E402
from services.registry.seed import (  # noqa: E402
    COUNTY_ADMIN_CODE,
    FEMALE_SECOND,
    MALE_FIRST,
    MALE_SECOND,
    PARTS,
    invented_phone,
)

MIGRATIONS = ROOT / "services" / "registry" / "migrations"
REGION = COUNTY_ADMIN_CODE  # the ID numbers' and book numbers' prefix
TOWNSHIPS = (("柯曲镇", "kequ"), ("上贡麻乡", "shanggongma"), ("下贡麻乡", "xiagongma"),
             ("岗龙乡", "ganglong"), ("青珍乡", "qingzhen"), ("江千乡", "jiangqian"),
             ("下藏科乡", "xiazangke"))  # fmt: skip
VILLAGES_PER_TOWNSHIP = 4
HOUSEHOLDS_PER_UNIT = 8
# The demo seed's name parts (pastoral Tibetans carry no surname: two parts, the second usually
# marking the sex).
MALE = tuple((part, PARTS[part]) for part in dict.fromkeys(MALE_FIRST + MALE_SECOND))
FEMALE = tuple((part, PARTS[part]) for part in FEMALE_SECOND)
# Household sizes as in the demo seed: mean about four.
SIZE_WEIGHTS = {1: 4, 2: 12, 3: 22, 4: 27, 5: 18, 6: 10, 7: 5, 8: 2}
FLAG_SHARES = {"低保户": 0.08, "残疾": 0.03, "五保户": 0.005, "留守老人": 0.05}  # fmt: skip


def say(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# The database


@contextlib.contextmanager
def fresh_database(server_url: str | None, workdir: Path, revision: str = "head") -> Iterator[str]:
    """A migrated, empty registry database; a temporary PostgreSQL database is dropped afterwards."""
    if server_url is None:
        url = f"sqlite:///{workdir / 'registry.db'}"
        migrate(MIGRATIONS, url, revision)
        yield url
        return
    parsed = make_url(server_url)
    if parsed.get_backend_name() != "postgresql":
        raise SystemExit("--database-url must name a PostgreSQL server (the bench makes its own database)")
    name = f"lianhu_bench_{uuid.uuid4().hex[:10]}"
    admin = normalise_url(server_url).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)

    def run(statement: str) -> None:
        connection = psycopg2.connect(dsn)
        connection.autocommit = True  # CREATE/DROP DATABASE refuse to run in a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    run(f'CREATE DATABASE "{name}"')
    try:
        url = normalise_url(server_url).set(database=name).render_as_string(hide_password=False)
        migrate(MIGRATIONS, url, revision)
        yield url
    finally:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_units(sessions, households: int) -> list[str]:
    """County, townships, villages and enough liaison units; their codes, in order."""
    units_needed = max(1, -(-households // HOUSEHOLDS_PER_UNIT))
    villages = len(TOWNSHIPS) * VILLAGES_PER_TOWNSHIP
    codes: list[str] = []
    with sessions.begin() as session:

        def add(parent: OrgUnit | None, kind: str, level: int, name: str, code: str) -> OrgUnit:
            unit = OrgUnit(
                parent_id=parent.id if parent else None, kind=kind, level=level, name=name, code=code
            )
            session.add(unit)
            session.flush()
            unit.path = f"{parent.path if parent else '/'}{unit.id}/"
            return unit

        county = add(None, "county", 1, "甘德县", "gande")
        village_units = []
        for township_name, slug in TOWNSHIPS:
            township = add(county, "township", 2, township_name, slug)
            for v in range(1, VILLAGES_PER_TOWNSHIP + 1):
                village_units.append(
                    add(township, "village", 3, f"{township_name[:-1]}{v}村", f"{slug}-v{v}")
                )
        rows = []
        for n in range(units_needed):
            village = village_units[n % villages]
            code = f"{village.code}-lw{n // villages + 1:03d}"
            rows.append(
                {
                    "parent_id": village.id,
                    "kind": "liaison",
                    "level": 4,
                    "name": f"联户组{n + 1}",
                    "code": code,
                }
            )
            codes.append(code)
        # Bulk: thousands of units one flush each would dwarf the rest of the setup.
        ids = list(
            session.execute(
                insert(OrgUnit).returning(OrgUnit.id, sort_by_parameter_order=True), rows
            ).scalars()
        )
        paths = {village.id: village.path for village in village_units}
        session.execute(
            update(OrgUnit),
            [{"id": i, "path": f"{paths[row['parent_id']]}{i}/"} for i, row in zip(ids, rows, strict=True)],
        )
    return codes


# ---------------------------------------------------------------------------------------------
# The file


class People:
    """Seeded names, birth dates, unique ID numbers and phones."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.sequence: dict[date, int] = {}
        self.phones: set[str] = set()

    def name(self, sex: str) -> tuple[str, str]:
        first, second = (
            self.rng.sample(MALE, 2) if sex == "M" else (self.rng.choice(MALE), self.rng.choice(FEMALE))
        )
        return first[0] + second[0], f"{first[1]}་{second[1]}"

    def id_number(self, born: date, sex: str) -> str:
        # Sequence numbers are odd for men, even for women; unique per birth date across the file.
        seq = self.sequence.get(born, 0) + 1
        if (seq % 2 == 1) != (sex == "M"):
            seq += 1
        self.sequence[born] = seq
        if seq >= 1000:
            raise RuntimeError("more than 999 people born on one day: widen the range of birth dates")
        first17 = f"{REGION}{born:%Y%m%d}{seq:03d}"
        return first17 + check_character(first17)

    def phone(self) -> str:
        return invented_phone(self.rng, self.phones)


def household_sizes(rng: random.Random, rows: int) -> list[int]:
    sizes: list[int] = []
    left = rows
    while left > 0:
        size = min(left, rng.choices(list(SIZE_WEIGHTS), weights=list(SIZE_WEIGHTS.values()))[0])
        sizes.append(size)
        left -= size
    return sizes


def file_rows(rows: int, codes: list[str], rng: random.Random) -> Iterator[list[Any]]:
    """The header, then ``rows`` member rows, typed as the export writes them."""
    people = People(rng)
    yield [column.header for column in importer.COLUMNS]
    latest_child = date(2025, 6, 30)
    for n, size in enumerate(household_sizes(rng, rows)):
        township = TOWNSHIPS[n % len(TOWNSHIPS)][0]
        head_sex = "M" if rng.random() < 0.8 else "F"
        head_born = date(rng.randint(1945, 1998), 1, 1) + timedelta(days=rng.randrange(365))
        members = [(head_sex, head_born, "户主")]
        if size >= 2:
            members.append(
                (
                    "F" if head_sex == "M" else "M",
                    head_born + timedelta(days=rng.randint(-2000, 2000)),
                    "配偶",
                )
            )
        while len(members) < size:
            sex = "M" if rng.random() < 0.5 else "F"
            born = head_born + timedelta(days=rng.randint(18 * 365, 34 * 365))
            if born > latest_child:  # a young head's children: spread them, never pile them on one day
                born = date(2000, 1, 1) + timedelta(
                    days=rng.randrange((latest_child - date(2000, 1, 1)).days)
                )
            members.append((sex, born, "子" if sex == "M" else "女"))
        household: dict[str, Any] = {
            "book_no": f"{REGION}-BN-{n + 1:07d}",
            "liaison_unit": codes[n // HOUSEHOLDS_PER_UNIT],
            "address": f"甘德县{township}",
            "lat": round(33.9 + rng.uniform(-0.3, 0.3), 5),
            "lon": round(99.9 + rng.uniform(-0.3, 0.3), 5),
            "grassland_area_mu": float(rng.randrange(200, 6000, 10)),
            "livestock_year": 2025,
            "yak": rng.randint(0, 120),
            "sheep": rng.randint(0, 300),
            "goat": rng.randint(0, 40),
            "horse": rng.randint(0, 5),
        }
        for header, share in FLAG_SHARES.items():
            key = importer.HEADER_LOOKUP[importer.normalise_header(header)]
            household[key] = importer.YES if rng.random() < share else importer.NO
        for i, (sex, born, relation) in enumerate(members):
            name, name_bo = people.name(sex)
            if i == 0:
                household["head_name"], household["head_name_bo"] = name, name_bo
            # A few children have no ID number yet: the registry must take them without one.
            has_id = relation in ("户主", "配偶") or rng.random() < 0.9
            member = {
                "name": name,
                "name_bo": name_bo,
                "sex": "男" if sex == "M" else "女",
                "birth_date": born,
                "relation": relation,
                "ethnicity": "藏族",
                "phone": people.phone() if i == 0 else None,
                "id_number": people.id_number(born, sex) if has_id else None,
            }
            yield [{**household, **member}.get(column.key) for column in importer.COLUMNS]


def make_file(rows: int, codes: list[str], fmt: str, seed: int) -> bytes:
    generated = file_rows(rows, codes, random.Random(seed))
    if fmt == "xlsx":
        return exporter._xlsx(generated)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in generated:
        writer.writerow(["" if v is None else v.isoformat() if isinstance(v, date) else v for v in row])
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


# ---------------------------------------------------------------------------------------------
# The run


class Stopwatch:
    """Wall time spent inside a wrapped function, summed over calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start
                self.seconds[f"{label}_cpu"] = (
                    self.seconds.get(f"{label}_cpu", 0.0) + time.process_time() - cpu
                )

        return timed


def timed_import(
    sessions, data: bytes, fmt: str, protector: Protector, profile: Path | None = None
) -> tuple[dict[str, Any], dict[str, float]]:
    """Import ``data``, timed by phase; with ``profile``, under cProfile, its statistics saved there."""
    watch = Stopwatch()
    originals = importer.parse_and_validate, records.apply_households
    importer.parse_and_validate = watch.wrap("parse", originals[0])
    records.apply_households = watch.wrap("write", originals[1])
    try:
        actor = Actor(username="bench", role="governance_centre")
        start, cpu = time.perf_counter(), time.process_time()
        with sessions() as session, cProfile.Profile() if profile else contextlib.nullcontext() as profiler:
            answer = importer.import_file(session, data, f"bench.{fmt}", actor, "bench", protector)
        watch.seconds["total"] = time.perf_counter() - start
        watch.seconds["cpu"] = time.process_time() - cpu
    finally:
        importer.parse_and_validate, records.apply_households = originals
    if profile:
        profiler.dump_stats(profile)
        say(f"profile of the import in {profile}; the calls that took longest, all in all:")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    return answer, watch.seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    households_estimate = args.rows // 4 + 1
    protector = Protector(os.urandom(32), os.urandom(32))
    with (
        tempfile.TemporaryDirectory(prefix="lianhu-bench-import-") as workdir,
        fresh_database(args.database_url, Path(workdir), args.revision) as url,
    ):
        engine = make_engine(url)
        try:
            sessions = make_session_factory(engine)
            say(f"engine {engine.dialect.name}: building the org tree")
            codes = build_units(sessions, households_estimate)
            say(f"{len(codes)} liaison units; writing a {args.rows:,}-row {args.format} file")
            start = time.perf_counter()
            data = make_file(args.rows, codes, args.format, args.seed)
            say(f"file: {len(data) / 1048576:.1f} MB in {time.perf_counter() - start:.1f} s; importing")
            answer, seconds = timed_import(sessions, data, args.format, protector, args.profile)
            if not answer["imported"]:
                raise SystemExit(
                    f"the import was refused: {json.dumps(answer['errors'][:5], ensure_ascii=False)}"
                )
            counts = answer["counts"]
            say(
                f"imported {answer['rows']:,} rows in {seconds['total']:.1f} s "
                f"(parse {seconds['parse']:.1f} s, write {seconds['write']:.1f} s): {json.dumps(counts)}"
            )
            again, reseconds = (
                (None, {}) if args.no_reimport else timed_import(sessions, data, args.format, protector)
            )
            if again is not None:
                say(f"re-imported in {reseconds['total']:.1f} s: {json.dumps(again.get('counts'))}")
            exports = export_round_trip(sessions, protector, counts) if args.export else None
        finally:
            engine.dispose()
    total = seconds["total"]
    return {
        "rows": answer["rows"],
        "seconds": round(total, 2),
        "rows_per_s": round(answer["rows"] / total),
        "engine": engine.dialect.name,
        "revision": args.revision,
        "format": args.format,
        "file_mb": round(len(data) / 1048576, 1),
        "households": counts["created"] + counts["updated"] + counts["unchanged"],
        "parse_seconds": round(seconds["parse"], 2),
        "write_seconds": round(seconds["write"], 2),
        "commit_seconds": round(total - seconds["parse"] - seconds["write"], 2),
        # This process's CPU time: on a shared machine, wall time minus this is mostly waiting (for
        # the CPU, the disk, or PostgreSQL, whose own work is not counted here).
        "cpu_seconds": round(seconds["cpu"], 2),
        "parse_cpu_seconds": round(seconds["parse_cpu"], 2),
        "write_cpu_seconds": round(seconds["write_cpu"], 2),
        "reimport_seconds": round(reseconds["total"], 2) if again else None,
        "reimport_unchanged": None if again is None else _unchanged(again, counts),
        "counts": counts,
        **({"export": exports} if exports else {}),
    }


def export_round_trip(sessions, protector: Protector, counts: dict[str, Any]) -> dict[str, Any]:
    """Export everything in both formats (masked ID numbers), and import the CSV export back."""
    figures: dict[str, Any] = {}
    for fmt in ("csv", "xlsx"):
        start = time.perf_counter()
        with sessions() as session:
            data = exporter.export_households(session, None, fmt, None, False)
        figures[f"{fmt}_seconds"] = round(time.perf_counter() - start, 2)
        figures[f"{fmt}_mb"] = round(len(data) / 1048576, 1)
        say(f"exported {fmt}: {figures[f'{fmt}_mb']} MB in {figures[f'{fmt}_seconds']} s")
        if fmt == "csv":
            answer, seconds = timed_import(sessions, data, fmt, protector)
            figures["csv_reimport_seconds"] = round(seconds["total"], 2)
            figures["csv_reimport_unchanged"] = _unchanged(answer, counts)
            say(f"re-imported the CSV export in {seconds['total']:.1f} s: {json.dumps(answer.get('counts'))}")
    return figures


def _unchanged(again: dict[str, Any], first: dict[str, Any]) -> bool:
    """The key property: the same file again touches nothing."""
    households = first["created"] + first["updated"] + first["unchanged"]
    counts = again.get("counts") or {}
    return bool(again["imported"]) and (counts.get("unchanged"), counts.get("history_rows")) == (
        households,
        0,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="member rows in the file")
    parser.add_argument("--database-url", help="a PostgreSQL server to make a temporary database on")
    parser.add_argument("--format", choices=("csv", "xlsx"), default="csv")
    parser.add_argument("--seed", type=int, default=2026, help="random seed of the synthetic data")
    parser.add_argument("--no-reimport", action="store_true", help="skip the second, no-change import")
    parser.add_argument("--export", action="store_true", help="also time exports and re-import one")
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile the first import (cProfile, which slows Python code) and save the statistics here",
    )
    parser.add_argument(
        "--revision",
        default="head",
        help="migrate only this far, e.g. 0002_household_registry: the import without later indexes",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.rows <= importer.MAX_ROWS:
        parser.error(f"--rows must be between 1 and {importer.MAX_ROWS:,}")
    print(json.dumps(run(args), ensure_ascii=False))


if __name__ == "__main__":
    main()
