"""Reviewing a rules file before it goes live (``lianhu rules validate|diff|dry-run``): a broken file
is named, every decision-changing difference is listed, and the stored reports are re-read under
the candidate without changing any of them."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from lianhu import cli
from services.routing import rules_review
from services.routing.classify import DEFAULT_RULES_PATH, load_rules
from services.routing.config import routing_settings
from services.routing.models import Case
from tests.unit.routing_world import POLICY, World, routing_sessions

SNOW = "昨晚大雪，三户牧民的帐篷被压塌了"


def candidate(tmp_path, *changes: tuple[str, str]) -> str:
    """The shipped rules with some lines changed, as a file."""
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8").replace('version: "2026.11-2"', 'version: "draft"')
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "candidate.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def live_rules(monkeypatch):
    monkeypatch.delenv("LIANHU_RULES_PATH", raising=False)
    routing_settings.cache_clear()
    yield load_rules()
    routing_settings.cache_clear()


def test_a_broken_file_is_named_and_refused(tmp_path, capsys, live_rules):
    broken = candidate(tmp_path, ("default_deadline_hours: 168", "default_deadline_hours: -1"))
    assert cli.main(["rules", "validate", broken]) == 1
    assert "default_deadline_hours" in capsys.readouterr().err
    assert cli.main(["rules", "validate", str(DEFAULT_RULES_PATH)]) == 0
    assert "valid: version 2026.11-2" in capsys.readouterr().out


def test_the_diff_lists_what_changes_a_decision(tmp_path, capsys, live_rules):
    path = candidate(
        tmp_path,
        ("default_deadline_hours: 168", "default_deadline_hours: 120"),
        ("urgent_terms:\n  zh: [紧急,", "urgent_terms:\n  zh: [紧急, 帐篷被压塌,"),
    )
    lines = rules_review.diff_rules(live_rules, load_rules(path))
    assert "version: 2026.11-2 -> draft" in lines
    assert "default_deadline_hours: 168 -> 120" in lines
    assert any(line.startswith("urgent_terms_zh: +[帐篷被压塌]") for line in lines)
    assert cli.main(["rules", "diff", path]) == 0
    assert "帐篷被压塌" in capsys.readouterr().out
    assert rules_review.diff_rules(live_rules, live_rules) == []


def test_a_dry_run_rereads_the_stored_reports_and_changes_none(tmp_path, database_url, live_rules):
    engine, sessions = routing_sessions(database_url)
    world = World(sessions)
    snow, policy = world.report(SNOW), world.report(POLICY)
    with sessions() as session:
        before = {case.report_id: (case.category, case.urgency) for case in session.scalars(select(Case))}
    draft = load_rules(
        candidate(tmp_path, ("urgent_terms:\n  zh: [紧急,", "urgent_terms:\n  zh: [紧急, 帐篷被压塌,"))
    )
    with sessions() as session:
        found = rules_review.dry_run(session, live_rules, draft).as_json()
    engine.dispose()
    assert before[snow] == ("house_collapse", "general")
    assert (found["reports"], found["changed"]) == (2, 1)
    assert found["urgencies"] == [{"from": "general", "to": "urgent", "reports": 1}]
    assert found["categories"] == [] and found["departments"] == []
    assert found["examples"] == {"general->urgent": [{"report_id": snow, "summary": SNOW}]}
    assert policy not in json.dumps(found["examples"])
    with sessions() as session:
        after = {case.report_id: (case.category, case.urgency) for case in session.scalars(select(Case))}
    assert after == before


def test_the_dry_run_command_reads_the_routing_database(tmp_path, monkeypatch, capsys, live_rules):
    url = f"sqlite:///{tmp_path / 'routing.db'}"
    engine, sessions = routing_sessions(url)
    World(sessions).report(SNOW)
    engine.dispose()
    monkeypatch.setenv("LIANHU_ROUTING_DATABASE_URL", url)
    from lianhu.config import kit_settings

    kit_settings.cache_clear()
    try:
        assert cli.main(["rules", "dry-run", "--json", str(DEFAULT_RULES_PATH)]) == 0
    finally:
        kit_settings.cache_clear()
    found = json.loads(capsys.readouterr().out)
    assert (found["reports"], found["changed"]) == (1, 0)  # the rules in force change nothing
