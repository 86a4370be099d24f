"""Cases routed before the case lifecycle keep working: their first handler becomes the current one
and their deadline is on the clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

import services.routing
from lianhu.db import make_engine, make_session_factory, migrate
from services.routing import cases

MIGRATIONS = Path(services.routing.__file__).parent / "migrations"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
HANDLER = {
    "role": "handler",
    "position": "village_grid",
    "org_unit": {"id": 20, "name": "一村", "kind": "village", "level": 3},
}


def test_a_case_routed_before_the_lifecycle_is_carried_over(database_url):
    migrate(MIGRATIONS, database_url, "0002")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO cases (id, report_id, state, category, urgency, language, rules_version,"
                " explanation, summary, reporter_username, handler_unit_id, submitted_at, routed_at,"
                " deadline_at, routed_event, revision) VALUES ('c-1', 'r-1', 'routed', 'policy',"
                " 'general', 'zh', 'old', '', '', 'jq-lw', 20, :t, :t, :deadline, :event, 1)"
            ),
            {"t": T0, "deadline": T0 + timedelta(days=7), "event": json.dumps({"handler": HANDLER})},
        )
    migrate(MIGRATIONS, database_url)
    with make_session_factory(engine)() as session:
        case = cases.find_case(session, "r-1")
        assert (case.handler, case.ladder, case.stage, case.seq) == (HANDLER, [], 1, 0)
        assert case.next_due_at == T0 + timedelta(days=7) and case.stage_started_at == T0
        timers = session.execute(text("SELECT stage, kind FROM case_timers WHERE case_id = 'c-1'")).all()
        assert [tuple(row) for row in timers] == [(1, "due")]
    engine.dispose()
