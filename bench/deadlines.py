"""Routing's durable clock at scale: N open cases, the poller's scan, and how late timers fire.

Usage::

    .venv/bin/python bench/deadlines.py --open-cases 1000000 [--database-url URL] [--due 6000]
        [--window 60] [--pollers 2] [--tick 5] [--scans 300]

Where: a temporary SQLite file by default; with ``--database-url`` naming a PostgreSQL server, a
scratch database made there and dropped afterwards. The schema comes from routing's migrations.

What it builds: N open cases handled by a village grid leader, each with its first stage's timers
(the 48 h and 8 h reminders and the deadline of a 7-day case) falling due 3 to 7 days from now, so
the poller's index holds N entries. ``--due`` of them instead have their deadline fall inside a
``--window``-second window that opens when the pollers start: firing those escalates each case to
its township (a new stage with a fresh deadline and timers), the clock's heaviest step.

What it measures:

- scan: the poller's claiming query (``timers.due_cases``: cases with a timer due, earliest first,
  200 at a time, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), ``--scans`` times inside a write
  transaction that is rolled back, at moments sweeping the window; p99 in milliseconds;
- fire lag: ``--pollers`` processes run the clock as the routing service does (a pass of
  ``timers.fire_due`` every ``--tick`` seconds, passes back to back while a batch comes back full)
  until the window has passed; a timer's lag is the end of the pass that fired it (its commit) minus
  its due time; p99 in seconds. It checks that every due timer fired, and each case escalated once.

Prints progress, then as its last line JSON: ``{"open_cases", "scan_ms_p99", "fire_lag_s_p99"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from lianhu.db import make_engine, make_session_factory, migrate, normalise_url  # noqa: E402
from lianhu.events import utcnow  # noqa: E402
from services.routing import timers  # noqa: E402
from services.routing.classify import load_rules  # noqa: E402
from services.routing.clock import CaseClock  # noqa: E402
from services.routing.models import Case, CaseEvent, CaseTimer  # noqa: E402

MIGRATIONS = ROOT / "services" / "routing" / "migrations"
CHUNK = 50_000


def _unit(unit_id: int, kind: str, level: int) -> dict:
    return {"id": unit_id, "name": f"{kind}-{unit_id}", "name_bo": None, "kind": kind, "level": level}


def _recipient(unit: dict, role: str, position: str) -> dict:
    person = {"id": unit["id"] * 100, "name": f"head-{unit['id']}", "name_bo": None, "phone": None}
    return {"role": role, "position": position, "org_unit": unit, "person": person, "reason": "bench"}


COUNTY, CENTRE = _unit(1, "county", 1), _unit(2, "governance_centre", 1)
TOWNSHIP, VILLAGE = _unit(10, "township", 2), _unit(20, "village", 3)
HANDLER = _recipient(VILLAGE, "handler", "village_grid")
LADDER = [
    _recipient(TOWNSHIP, "handler", "township_command"),
    _recipient(COUNTY, "handler", "county_command"),
]
OVERSEERS = [_recipient(COUNTY, "copy", "county_command"), _recipient(CENTRE, "copy", "governance_centre")]


def case_row(index: int, routed: datetime, deadline: datetime) -> dict:
    return {
        "id": str(uuid.UUID(int=index)),
        "report_id": str(uuid.UUID(int=(1 << 64) + index)),
        "state": "routed",
        "category": "policy",
        "urgency": "general",
        "language": "zh",
        "rules_version": "bench",
        "explanation": "bench",
        "summary": "请问补助什么时候发放",
        "reporter_username": f"lw-{index % 5000}",
        "handler_unit_id": VILLAGE["id"],
        "submitted_at": routed,
        "routed_at": routed,
        "deadline_at": deadline,
        "routed_event": {},
        "revision": 1,
        "stage": 1,
        "seq": 0,
        "handler": HANDLER,
        "ladder": LADDER,
        "overseers": OVERSEERS,
        "area_path": "/1/10/20/30/",
        "stage_started_at": routed,
        "escalations": 0,
    }


def timer_rows(case_id: str, deadline: datetime, with_reminders: bool) -> list[dict]:
    points = [("remind:48", timedelta(hours=48)), ("remind:8", timedelta(hours=8))] if with_reminders else []
    rows = [
        {"case_id": case_id, "stage": 1, "kind": kind, "due_at": deadline - before} for kind, before in points
    ]
    return [*rows, {"case_id": case_id, "stage": 1, "kind": "due", "due_at": deadline}]


def generate(first: int, count: int, deadline_of, with_reminders: bool) -> Iterator[tuple[list, list]]:
    """Chunks of (case rows, timer rows); ``deadline_of(index)`` places each case's deadline."""
    routed = utcnow() - timedelta(days=1)
    for start in range(first, first + count, CHUNK):
        cases, case_timers = [], []
        for index in range(start, min(start + CHUNK, first + count)):
            deadline = deadline_of(index)
            row = case_row(index, routed, deadline)
            row_timers = timer_rows(row["id"], deadline, with_reminders)
            row["next_due_at"] = min(timer["due_at"] for timer in row_timers)
            cases.append(row)
            case_timers.extend(row_timers)
        yield cases, case_timers


def load_sqlite(sessions, chunks: Iterator[tuple[list, list]]) -> None:
    with sessions.begin() as session:
        for cases, case_timers in chunks:
            session.execute(insert(Case), cases)
            session.execute(insert(CaseTimer), case_timers)


def _copy(cursor, table: str, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = list(rows[0])
    for row in rows:
        writer.writerow(
            json.dumps(v, ensure_ascii=False)
            if isinstance(v, dict | list)
            else v.isoformat()
            if isinstance(v, datetime)
            else v
            for v in (row[c] for c in columns)
        )
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buffer)


def load_postgresql(url: str, chunks: Iterator[tuple[list, list]]) -> None:
    connection = psycopg2.connect(normalise_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        with connection, connection.cursor() as cursor:
            for cases, case_timers in chunks:
                _copy(cursor, "cases", cases)
                _copy(cursor, "case_timers", case_timers)
        with connection.cursor() as cursor:
            connection.autocommit = True
            cursor.execute("VACUUM ANALYZE cases")
            cursor.execute("VACUUM ANALYZE case_timers")
    finally:
        connection.close()


def load(url: str, sessions, chunks) -> None:
    if make_url(url).get_backend_name() == "sqlite":
        load_sqlite(sessions, chunks)
    else:
        load_postgresql(url, chunks)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_scans(sessions, start: datetime, window: float, count: int) -> list[float]:
    """The poller's claiming query at moments sweeping the window, each in a rolled-back transaction."""
    lock = sessions.kw["bind"].dialect.name == "postgresql"
    timings = []
    for n in range(count):
        now = start + timedelta(seconds=window * n / count)
        with sessions() as session, session.begin():
            began = time.perf_counter()
            session.scalars(timers.due_cases(now, timers.BATCH, lock)).all()
            timings.append((time.perf_counter() - began) * 1000)
            session.rollback()
    return timings


def poller(url: str, until: float, tick: float, passes) -> None:
    """One routing process's clock: a pass every tick, back to back while batches come back full."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    clock = CaseClock(load_rules())
    while time.time() < until:
        began = time.time()
        now = utcnow()
        done = timers.fire_due(sessions, clock, now)
        if done.fired:
            passes.put((now.isoformat(), utcnow().isoformat()))
        if done.cases < timers.BATCH:
            time.sleep(max(0.0, tick - (time.time() - began)))
    engine.dispose()


@contextlib.contextmanager
def scratch_database(server: str | None, say) -> Iterator[str]:
    if server is None:
        directory = tempfile.mkdtemp(prefix="routing-deadlines-")
        try:
            yield f"sqlite:///{Path(directory) / 'routing.db'}"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    admin_url = make_url(server).set(drivername="postgresql")
    name = f"lianhu_bench_deadlines_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(admin_url.render_as_string(False))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        say(f"  created database {name}")
        try:
            yield admin_url.set(database=name).render_as_string(False)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def run(args: argparse.Namespace, say) -> dict:
    with scratch_database(args.database_url, say) as url:
        engine_name = make_url(url).get_backend_name()
        say(f"deadlines bench: {args.open_cases:,} open cases on {engine_name}")
        migrate(MIGRATIONS, url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        background = args.open_cases - args.due
        began = time.perf_counter()
        later = utcnow() + timedelta(days=3)
        spread = timedelta(days=4) / max(background, 1)
        load(url, sessions, generate(0, background, lambda i: later + spread * i, with_reminders=True))
        say(f"  loaded {background:,} cases due in 3-7 days in {time.perf_counter() - began:.1f} s")

        # The window opens once the due cases are in and the scans are done.
        start = utcnow() + timedelta(seconds=args.lead)
        step = timedelta(seconds=args.window) / max(args.due, 1)
        load(url, sessions, generate(background, args.due, lambda i: start + step * (i - background), False))
        say(f"  {args.due:,} cases fall due over {args.window:.0f} s from {start:%H:%M:%S}")

        scans = measure_scans(sessions, start, args.window, args.scans)
        say(f"  scan: p50 {percentile(scans, 0.5):.1f} ms, p99 {percentile(scans, 0.99):.1f} ms")
        if utcnow() >= start:
            raise SystemExit("the scans ran past the window's opening: raise --lead")

        passes = multiprocessing.Queue()
        until = start.timestamp() + args.window + 2 * args.tick + 5
        workers = [
            multiprocessing.Process(target=poller, args=(url, until, args.tick, passes))
            for _ in range(args.pollers)
        ]
        time.sleep(max(0.0, (start - utcnow()).total_seconds() - 1))
        for worker in workers:
            worker.start()
        ended: dict[str, datetime] = {}
        while any(worker.is_alive() for worker in workers) or not passes.empty():
            with contextlib.suppress(Exception):
                now, end = passes.get(timeout=0.5)
                ended[now] = datetime.fromisoformat(end)
        for worker in workers:
            worker.join()

        with sessions() as session:
            fired = session.execute(
                select(CaseTimer.due_at, CaseTimer.done_at).where(CaseTimer.outcome == "fired")
            ).all()
            escalated = session.scalar(select(func.count()).where(CaseEvent.kind == "escalated"))
        engine.dispose()
        lags = [(ended[done.isoformat()] - due).total_seconds() for due, done in fired]
        say(f"  fired {len(fired):,} timers ({escalated:,} escalations) with {args.pollers} pollers")
        if len(fired) != args.due or escalated != args.due:
            raise SystemExit(f"expected {args.due} timers fired and as many escalations")
        say(f"  fire lag: p50 {percentile(lags, 0.5):.2f} s, max {max(lags):.2f} s")
        return {
            "open_cases": args.open_cases,
            "scan_ms_p99": round(percentile(scans, 0.99), 2),
            "fire_lag_s_p99": round(percentile(lags, 0.99), 2),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--open-cases", type=int, default=100_000)
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to make a scratch database on; default: a temporary SQLite file",
    )
    parser.add_argument("--due", type=int, default=6_000, help="cases whose deadline falls in the window")
    parser.add_argument("--window", type=float, default=60.0, help="seconds over which they fall due")
    parser.add_argument("--pollers", type=int, default=2, help="routing processes running the clock")
    parser.add_argument(
        "--tick", type=float, default=5.0, help="the clock's tick (LIANHU_CLOCK_TICK_SECONDS)"
    )
    parser.add_argument("--scans", type=int, default=300, help="measured scans")
    parser.add_argument("--lead", type=float, default=30.0, help="seconds from loading to the window")
    args = parser.parse_args(argv)
    if not 0 < args.due <= args.open_cases:
        parser.error("--due must be between 1 and --open-cases")
    result = run(args, lambda message: print(message, flush=True))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
