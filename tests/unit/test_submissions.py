"""Accepting reports: one transaction with the outbox, and Idempotency-Key semantics."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

import services.intake
from lianhu.auth import Principal
from lianhu.db import make_engine, make_session_factory, migrate
from lianhu.events import utcnow
from services.intake.accounts import authenticate, load_accounts
from services.intake.models import IdempotencyKey, Report, outbox
from services.intake.schemas import ReportIn
from services.intake.submissions import KeyConflict, submit_report

WORKER = Principal(username="jq-lw", role="liaison_worker", person_id=7, org_unit_id=70, township="江千乡")


@pytest.fixture
def sessions(database_url):
    migrate(Path(services.intake.__file__).parent / "migrations", database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    load_accounts(
        factory,
        [
            {
                "username": "jq-lw",
                "password": "s3cret-pass",
                "role": "liaison_worker",
                "person_id": 7,
                "org_unit": 70,
                "org_unit_name": "联户",
                "township": "江千乡",
            }
        ],
    )
    yield factory
    engine.dispose()


def counts(sessions) -> tuple[int, int]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Report)),
            session.scalar(select(func.count()).select_from(outbox)),
        )


def test_report_and_its_event_commit_together(sessions):
    outcome = submit_report(sessions, WORKER, ReportIn(text="  牦牛死了三头  "), None, 30)
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


def test_same_key_same_body_replays_the_original(sessions):
    first = submit_report(sessions, WORKER, ReportIn(text="路断了"), "k1", 30)
    again = submit_report(sessions, WORKER, ReportIn(text="路断了"), "k1", 30)
    assert again.replayed and again.body == first.body and again.status_code == 201
    assert counts(sessions) == (1, 1)


def test_keys_belong_to_one_user(sessions):
    other = Principal(username="jq-lw", role="liaison_worker", person_id=7, org_unit_id=70)
    submit_report(sessions, WORKER, ReportIn(text="a"), "shared", 30)
    with pytest.raises(KeyConflict) as conflict:
        submit_report(sessions, other, ReportIn(text="b"), "shared", 30)
    assert conflict.value.status_code == 422


def test_same_key_other_body_is_refused(sessions):
    submit_report(sessions, WORKER, ReportIn(text="路断了"), "k2", 30)
    with pytest.raises(KeyConflict) as conflict:
        submit_report(sessions, WORKER, ReportIn(text="路没断"), "k2", 30)
    assert conflict.value.status_code == 422
    assert counts(sessions) == (1, 1)


def claim_in_flight(sessions, key: str, age: timedelta, text: str) -> None:
    from services.intake.submissions import request_fingerprint

    with sessions.begin() as session:
        session.add(
            IdempotencyKey(
                username="jq-lw",
                key=key,
                request_hash=request_fingerprint(ReportIn(text=text)),
                claim_id="first-attempt",
                claimed_at=utcnow() - age,
            )
        )


def test_key_still_in_flight_is_409(sessions):
    claim_in_flight(sessions, "k3", timedelta(seconds=1), "雪灾")
    with pytest.raises(KeyConflict) as conflict:
        submit_report(sessions, WORKER, ReportIn(text="雪灾"), "k3", 30)
    assert conflict.value.status_code == 409
    assert counts(sessions) == (0, 0)


def test_key_whose_first_request_died_is_taken_over(sessions):
    claim_in_flight(sessions, "k4", timedelta(minutes=5), "雪灾")
    outcome = submit_report(sessions, WORKER, ReportIn(text="雪灾"), "k4", 30)
    assert outcome.status_code == 201 and not outcome.replayed
    assert counts(sessions) == (1, 1)


def test_failed_commit_releases_the_key_and_writes_nothing(sessions, monkeypatch):
    import services.intake.submissions as submissions

    def broken_enqueue(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(submissions, "enqueue", broken_enqueue)
    with pytest.raises(RuntimeError):
        submit_report(sessions, WORKER, ReportIn(text="雪灾"), "k5", 30)
    assert counts(sessions) == (0, 0)
    monkeypatch.undo()
    assert submit_report(sessions, WORKER, ReportIn(text="雪灾"), "k5", 30).status_code == 201


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01", "字" * 4001])
def test_text_must_be_present_and_bounded(text):
    with pytest.raises(ValueError):
        ReportIn(text=text)


def test_control_characters_are_removed_and_limit_is_inclusive():
    assert ReportIn(text="雪\x00灾\n很大").text == "雪灾\n很大"
    assert len(ReportIn(text="字" * 4000).text) == 4000


def test_accounts_authenticate_by_scrypt_hash(sessions):
    with sessions() as session:
        assert authenticate(session, "jq-lw", "s3cret-pass").org_unit_id == 70
        assert authenticate(session, "jq-lw", "wrong") is None
        assert authenticate(session, "nobody", "s3cret-pass") is None
        stored = session.get(services.intake.models.Account, "jq-lw").password_hash
    assert stored.startswith("scrypt$") and "s3cret-pass" not in stored


def age_claim(sessions, key: str, age: timedelta) -> None:
    with sessions.begin() as session:
        session.get(IdempotencyKey, ("jq-lw", key)).claimed_at = utcnow() - age


def test_request_presumed_dead_cannot_complete_after_another_took_over(sessions):
    from services.intake.submissions import _claim, request_fingerprint, store_report

    report = ReportIn(text="雪灾")
    earlier, slow_claim = _claim(sessions, "jq-lw", "k6", request_fingerprint(report), 30)
    assert earlier is None
    age_claim(sessions, "k6", timedelta(minutes=5))
    retry = submit_report(sessions, WORKER, report, "k6", 30)
    assert retry.status_code == 201
    # The slow first request finally reaches its commit: it must not make a second report.
    late = store_report(sessions, WORKER, report, "k6", slow_claim)
    assert late.replayed and late.body == retry.body
    assert counts(sessions) == (1, 1)


def test_racing_takeovers_of_a_stale_key_make_one_report(sessions):
    from concurrent.futures import ThreadPoolExecutor

    claim_in_flight(sessions, "k7", timedelta(minutes=5), "雪灾")

    def attempt(_):
        try:
            return submit_report(sessions, WORKER, ReportIn(text="雪灾"), "k7", 30).body["id"]
        except KeyConflict as conflict:
            return conflict.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(16)))
    ids = {result for result in results if isinstance(result, str)}
    assert len(ids) == 1, results
    assert set(results) - ids <= {409}
    assert counts(sessions) == (1, 1)
