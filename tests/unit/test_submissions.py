"""Accepting reports: group commit with the outbox, and Idempotency-Key semantics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

import services.intake
import services.intake.submissions as submissions
from lianhu.auth import Principal
from lianhu.db import make_engine, make_session_factory, migrate
from services.intake.accounts import load_accounts
from services.intake.models import Report, outbox
from services.intake.schemas import ReportIn
from services.intake.submissions import KeyConflict, Overloaded, ReportWriter

WORKER = Principal(username="jq-lw", role="liaison_worker", person_id=7, org_unit_id=70, township="江千乡")
OTHER = Principal(username="jq-lw-2", role="liaison_worker", person_id=8, org_unit_id=71, township="江千乡")
WAIT = 30


def account(username: str, person: int, unit: int) -> dict:
    return {
        "username": username,
        "password": "s3cret-pass",
        "role": "liaison_worker",
        "person_id": person,
        "org_unit": unit,
        "org_unit_name": "联户",
        "township": "江千乡",
    }


@pytest.fixture
def sessions(database_url):
    migrate(Path(services.intake.__file__).parent / "migrations", database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    load_accounts(factory, [account("jq-lw", 7, 70), account("jq-lw-2", 8, 71)])
    yield factory
    engine.dispose()


@pytest.fixture
def writer(sessions):
    """A writer that is not started: the test decides when queued reports get written."""
    commits = []
    writer = ReportWriter(sessions, max_queue=100, on_commit=lambda: commits.append(1))
    writer.commits = commits
    yield writer
    writer.stop()


def accept(writer, principal, text, key=None):
    return writer.submit(principal, ReportIn(text=text), key).result(WAIT)


def counts(sessions) -> tuple[int, int]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Report)),
            session.scalar(select(func.count()).select_from(outbox)),
        )


def test_report_and_its_event_commit_together(sessions, writer):
    writer.start()
    outcome = accept(writer, WORKER, "  牦牛死了三头  ")
    assert outcome.status_code == 201 and not outcome.replayed
    assert outcome.body["text"] == "牦牛死了三头"
    assert counts(sessions) == (1, 1)
    with sessions() as session:
        row = session.execute(select(outbox.c.routing_key, outbox.c.body)).one()
    event = json.loads(row.body)
    assert row.routing_key == "report_submitted"
    assert event["report_id"] == outcome.body["id"]
    assert event["reporter"] == {
        "username": "jq-lw",
        "person_id": 7,
        "org_unit_id": 70,
        "role": "liaison_worker",
    }
    assert event["event_id"] and event["occurred_at"] and event["version"] == 1
    assert writer.commits, "the relay is woken after each commit"


def test_queued_reports_are_written_in_one_batch(sessions, writer):
    futures = [writer.submit(WORKER, ReportIn(text=f"报告 {n}"), f"k{n}") for n in range(50)]
    writer.start()
    bodies = [future.result(WAIT).body for future in futures]
    assert len({body["id"] for body in bodies}) == 50
    assert counts(sessions) == (50, 50)
    assert len(writer.commits) == 1


def test_same_key_same_body_replays_the_original(sessions, writer):
    writer.start()
    first = accept(writer, WORKER, "路断了", "k1")
    again = accept(writer, WORKER, "路断了", "k1")
    assert again.replayed and again.body == first.body and again.status_code == 201
    assert counts(sessions) == (1, 1)


def test_a_key_belongs_to_one_account(sessions, writer):
    writer.start()
    mine = accept(writer, WORKER, "路断了", "shared")
    theirs = accept(writer, OTHER, "路断了", "shared")
    assert mine.body["id"] != theirs.body["id"] and not theirs.replayed
    assert counts(sessions) == (2, 2)


def test_same_key_other_body_is_refused_once_stored_and_while_queued(sessions, writer):
    queued = writer.submit(WORKER, ReportIn(text="路断了"), "k2")
    with pytest.raises(KeyConflict) as while_queued:
        writer.submit(WORKER, ReportIn(text="路没断"), "k2")
    assert while_queued.value.status_code == 422
    writer.start()
    queued.result(WAIT)
    with pytest.raises(KeyConflict) as once_stored:
        accept(writer, WORKER, "路没断", "k2")
    assert once_stored.value.status_code == 422
    assert counts(sessions) == (1, 1)


def test_a_retry_while_the_first_is_still_queued_is_409(sessions, writer):
    first = writer.submit(WORKER, ReportIn(text="雪灾"), "k3")
    with pytest.raises(KeyConflict) as conflict:
        writer.submit(WORKER, ReportIn(text="雪灾"), "k3")
    assert conflict.value.status_code == 409
    writer.start()
    assert first.result(WAIT).status_code == 201
    assert accept(writer, WORKER, "雪灾", "k3").replayed


def test_a_full_queue_says_overloaded_and_forgets_the_key(sessions):
    writer = ReportWriter(sessions, max_queue=2)
    writer.submit(WORKER, ReportIn(text="a"), "q1")
    writer.submit(WORKER, ReportIn(text="b"), "q2")
    with pytest.raises(Overloaded):
        writer.submit(WORKER, ReportIn(text="c"), "q3")
    writer.start()
    assert accept(writer, WORKER, "c", "q3").status_code == 201
    writer.stop()
    assert counts(sessions) == (3, 3)


def test_a_failed_commit_writes_nothing_and_the_phone_may_retry(sessions, writer, monkeypatch):
    def broken(_event):
        raise RuntimeError("disk full")

    monkeypatch.setattr(submissions, "outbox_row", broken)
    writer.start()
    futures = [
        writer.submit(WORKER, ReportIn(text="雪灾"), "k5"),
        writer.submit(OTHER, ReportIn(text="路断了")),
    ]
    for future in futures:
        with pytest.raises(RuntimeError):
            future.result(WAIT)
    assert counts(sessions) == (0, 0)
    monkeypatch.undo()
    assert accept(writer, WORKER, "雪灾", "k5").status_code == 201
    assert counts(sessions) == (1, 1)


def test_two_gateway_processes_racing_on_one_key_make_one_report(sessions, database_url):
    # Two writers on two engines: what two gateway replicas sharing one database do.
    engine = make_engine(database_url)
    writers = [ReportWriter(sessions), ReportWriter(make_session_factory(engine))]
    futures = [w.submit(WORKER, ReportIn(text="雪灾"), f"race-{n}") for n in range(20) for w in writers]
    for w in writers:
        w.start()
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result(WAIT))
        except KeyConflict as conflict:
            outcomes.append(conflict.status_code)
    for w in writers:
        w.stop()
    engine.dispose()
    assert counts(sessions) == (20, 20)
    ids = {o.body["id"] for o in outcomes if not isinstance(o, int)}
    assert len(ids) == 20
    assert set(o for o in outcomes if isinstance(o, int)) <= {409}


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01", "字" * 4001])
def test_text_must_be_present_and_bounded(text):
    with pytest.raises(ValueError):
        ReportIn(text=text)


def test_control_characters_are_removed_and_limit_is_inclusive():
    assert ReportIn(text="雪\x00灾\n很大").text == "雪灾\n很大"
    assert len(ReportIn(text="字" * 4000).text) == 4000


def test_the_writer_outlives_a_batch_that_breaks_it(sessions, writer, monkeypatch):
    def broken(_batch):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(writer, "_commit", broken)
    writer.start()
    with pytest.raises(RuntimeError):
        accept(writer, WORKER, "雪灾", "k9")
    monkeypatch.undo()
    assert accept(writer, WORKER, "雪灾", "k9").status_code == 201
