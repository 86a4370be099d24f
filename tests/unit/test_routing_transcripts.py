"""A voice report is routed at once, then again on its transcript: recipients only added, urgency
only raised, the deadline only brought forward, every change on the case's timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import services.routing
from lianhu.db import make_engine, make_session_factory, migrate
from lianhu.events import (
    AudioRef,
    Reporter,
    ReportRouted,
    ReportSubmitted,
    ReportTranscribed,
    TranscriptionFailed,
)
from services.routing import cases
from services.routing.classify import classify, load_rules
from tests.unit.test_recipients import COUNTY, HEALTH, LIAISON, TOWNSHIP, VILLAGE, context

RULES = load_rules()
SUBMITTED_AT = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
REPORTER = Reporter(username="jq-lw", org_unit_id=LIAISON["unit"]["id"], role="liaison_worker")
AUDIO = AudioRef(sha256="a" * 64, media_type="audio/ogg", size_bytes=5000, duration_seconds=5.2)


@pytest.fixture
def sessions(database_url):
    migrate(Path(services.routing.__file__).parent / "migrations", database_url)
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def decision_for(text: str) -> cases.Decision:
    classification = classify(text, RULES)
    department = HEALTH if classification.category == "illness" else None
    return cases.decide(
        classification, RULES, context(LIAISON, VILLAGE, TOWNSHIP, COUNTY), department, SUBMITTED_AT
    )


def route_voice_report(sessions, text: str = "") -> ReportRouted:
    submitted = ReportSubmitted(
        report_id="r-1", text=text, reporter=REPORTER, submitted_at=SUBMITTED_AT, audio=AUDIO
    )
    decision = decision_for(text)
    routed = cases.routed_event("r-1", text, REPORTER, decision, RULES, submitted)
    with sessions.begin() as session:
        cases.record_case(session, routed, decision, submitted)
    return routed


def transcribed(text: str) -> ReportTranscribed:
    return ReportTranscribed(
        report_id="r-1",
        text=text,
        language="zh",
        engine="vosk",
        model="m",
        audio_seconds=5.2,
        decode_seconds=0.9,
    )


def apply(sessions, event: ReportTranscribed) -> ReportRouted:
    with sessions.begin() as session:
        case = cases.find_case(session, "r-1")
        text = " ".join(part for part in (case.text or "", event.text) if part)
        rerouted = cases.rerouted_event(case, event, decision_for(text), RULES)
        cases.record_transcript(session, case, event, rerouted)
    return rerouted


def units(event: ReportRouted) -> list[int]:
    return [recipient.org_unit.id for recipient in event.recipients]


def test_an_audio_only_report_goes_to_the_grid_and_centre_at_once(sessions):
    routed = route_voice_report(sessions)
    assert routed.transcription == "pending" and routed.audio == AUDIO and routed.revision == 1
    assert (routed.category, routed.urgency) == ("other", "general")
    assert units(routed) == [VILLAGE["unit"]["id"], 2]  # the grid leader acts, the centre is told


def test_an_urgent_transcript_adds_the_township_and_the_department_and_keeps_everyone(sessions):
    first = route_voice_report(sessions)
    second = apply(sessions, transcribed("牧民 家里 的 老人 突然 昏迷 不醒"))
    assert (second.category, second.urgency) == ("illness", "urgent")
    assert second.case_id == first.case_id and second.revision == 2 and second.event_id != first.event_id
    assert units(second)[:2] == units(first)  # nobody who had it is removed
    assert set(units(second)) - set(units(first)) == {TOWNSHIP["unit"]["id"], HEALTH["unit"]["id"]}
    assert second.deadline_at < first.deadline_at
    with sessions() as session:
        case = cases.find_case(session, "r-1")
        assert (case.transcription, case.transcript, case.revision) == (
            "done",
            "牧民 家里 的 老人 突然 昏迷 不醒",
            2,
        )
        assert sorted(r.org_unit_id for r in case.recipients) == sorted(units(second))
        [routed, done] = cases.timeline(session, case.id)
    assert (routed["kind"], done["kind"], done["actor"]) == ("routed", "transcribed", "speech")
    assert done["category"] == ["other", "illness"] and done["urgency"] == ["general", "urgent"]
    assert set(done["added_units"]) == {TOWNSHIP["unit"]["id"], HEALTH["unit"]["id"]}


def test_a_transcript_that_says_nothing_new_changes_no_one(sessions):
    first = route_voice_report(sessions, "家里的牦牛生病了")
    second = apply(sessions, transcribed(""))
    assert (second.category, second.urgency) == (first.category, first.urgency)
    assert units(second) == units(first) and second.deadline_at == first.deadline_at


def test_urgency_is_never_lowered_by_a_calmer_transcript(sessions):
    first = route_voice_report(sessions, "草场着火了")
    second = apply(sessions, transcribed("请问 补助 什么 时候 发放"))
    assert first.urgency == second.urgency == "urgent"
    assert second.deadline_at <= first.deadline_at and set(units(first)) <= set(units(second))


def test_a_failed_transcription_is_recorded_and_the_case_stays(sessions):
    route_voice_report(sessions)
    failure = TranscriptionFailed(report_id="r-1", language="bo", reason="no_model", detail="no model for bo")
    with sessions.begin() as session:
        cases.record_transcription_failure(session, cases.find_case(session, "r-1"), failure)
    with sessions() as session:
        case = cases.find_case(session, "r-1")
        assert case.transcription == "failed" and case.state == "routed"
        assert (
            cases.timeline(session, case.id)[-1] | {"reason": "no_model"}
            == cases.timeline(session, case.id)[-1]
        )
