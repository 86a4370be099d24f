"""From a submitted report to a routed case: classify, pick recipients, set the deadline and the
escalation ladder, record the case with its first stage's timers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from lianhu.events import (
    Recipient,
    Reporter,
    ReportRouted,
    ReportSubmitted,
    ReportTranscribed,
    TranscriptionFailed,
    UnitRef,
    utcnow,
)
from services.routing import escalation
from services.routing.casework import Casework, entry_json
from services.routing.classify import Classification, Rules
from services.routing.clock import CaseClock
from services.routing.lifecycle import OPEN
from services.routing.models import Case, CaseEvent, CaseRecipient, CaseTimer
from services.routing.recipients import resolve_recipients

SUMMARY_CHARS = 80


@dataclass(frozen=True)
class Decision:
    classification: Classification
    handler: Recipient
    recipients: list[Recipient]
    deadline_at: datetime
    # The first stage's reminder points and deadline, as (kind, due) pairs.
    timers: list[tuple[str, datetime]]
    ladder: list[Recipient]
    overseers: list[Recipient]
    area_path: str | None
    reporter_unit: UnitRef | None
    township: str | None = None


def decide(
    classification: Classification,
    rules: Rules,
    context: dict,
    department: dict | None,
    base_time: datetime,
    scale: float = 1.0,
) -> Decision:
    """Who gets a classified report, by when, and who above, from the registry's view of the reporter."""
    handler, recipients = resolve_recipients(context, classification.urgency, department)
    clock = CaseClock(rules, scale)
    deadline = clock.deadline(classification.category, classification.urgency, base_time)
    chain = context.get("chain") or []
    unit = context.get("unit")
    return Decision(
        classification,
        handler,
        recipients,
        deadline,
        timers=clock.stage_timers(classification.urgency, base_time, deadline),
        ladder=escalation.ladder_above(handler, chain, department),
        overseers=escalation.overseers(chain, context.get("governance_centre")),
        area_path=escalation.path_of(chain) if chain else None,
        reporter_unit=UnitRef.model_validate(unit) if unit else None,
        township=escalation.township_of(chain),
    )


def summarise(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def routed_event(
    report_id: str,
    text: str,
    reporter: Reporter,
    decision: Decision,
    rules: Rules,
    submitted: ReportSubmitted,
) -> ReportRouted:
    c = decision.classification
    reasons = "; ".join(f"{r.org_unit.name}: {r.reason}" for r in decision.recipients)
    return ReportRouted(
        report_id=report_id,
        case_id=str(uuid.uuid4()),
        category=c.category,
        urgency=c.urgency,
        matched=c.matched,
        rules_version=rules.version,
        deadline_at=decision.deadline_at,
        handler=decision.handler,
        recipients=decision.recipients,
        summary=summarise(text),
        reporter=reporter,
        explanation=f"{c.explanation} Recipients: {reasons}",
        transcription="pending" if submitted.audio else None,
        audio=submitted.audio,
    )


def find_case(session: Session, report_id: str) -> Case | None:
    return session.scalar(
        select(Case).where(Case.report_id == report_id).options(selectinload(Case.recipients))
    )


def timeline(session: Session, case_id: str) -> list[dict]:
    rows = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id))
    return [entry_json(row) for row in rows]


def _recipient_row(recipient: Recipient, now) -> CaseRecipient:
    return CaseRecipient(
        org_unit_id=recipient.org_unit.id,
        role=recipient.role,
        position=recipient.position,
        added_at=now,
        detail=recipient.model_dump(mode="json"),
    )


def record_case(
    session: Session, event: ReportRouted, decision: Decision, submitted: ReportSubmitted
) -> Case:
    now = utcnow()
    dumped = [recipient.model_dump(mode="json") for recipient in decision.ladder]
    case = Case(
        id=event.case_id,
        report_id=event.report_id,
        state="routed",
        category=event.category,
        urgency=event.urgency,
        language=decision.classification.language,
        rules_version=event.rules_version,
        explanation=event.explanation,
        summary=event.summary,
        reporter_username=event.reporter.username,
        household_id=submitted.household_id,
        handler_unit_id=event.handler.org_unit.id,
        submitted_at=submitted.submitted_at,
        routed_at=now,
        deadline_at=event.deadline_at,
        routed_event=event.to_wire(),
        transcription=event.transcription,
        text=submitted.text,
        recipients=[_recipient_row(r, now) for r in event.recipients],
        stage=1,
        seq=0,
        handler=event.handler.model_dump(mode="json"),
        ladder=dumped,
        overseers=[overseer.model_dump(mode="json") for overseer in decision.overseers],
        reporter_unit=decision.reporter_unit.model_dump(mode="json") if decision.reporter_unit else None,
        area_path=decision.area_path,
        township=decision.township,
        stage_started_at=submitted.submitted_at,
        next_due_at=min((due for _, due in decision.timers), default=None),
        escalations=0,
    )
    session.add(case)
    session.add_all(
        CaseTimer(case_id=case.id, stage=1, kind=kind, due_at=due) for kind, due in decision.timers
    )
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            kind="routed",
            actor="routing",
            detail={
                "category": event.category,
                "urgency": event.urgency,
                "units": [r.org_unit.id for r in event.recipients],
            },
        )
    )
    return case


def record_once(
    sessions: sessionmaker, event: ReportRouted, decision: Decision, submitted: ReportSubmitted
) -> dict:
    """Record the case unless a concurrent delivery of the same report did; returns the routed
    event as recorded, to emit (again)."""
    try:
        with sessions.begin() as session:
            record_case(session, event, decision, submitted)
        return event.to_wire()
    except IntegrityError:
        with sessions() as session:
            return find_case(session, event.report_id).routed_event


def rerouted_event(
    case: Case, transcribed: ReportTranscribed, decision: Decision, rules: Rules
) -> ReportRouted:
    """The case as its transcript shows it: recipients only added, urgency only raised, the
    deadline only brought forward; the category is the transcript's unless it says nothing."""
    previous = ReportRouted.model_validate(case.routed_event)
    c = decision.classification
    have = {r.org_unit.id for r in previous.recipients}
    recipients = previous.recipients + [r for r in decision.recipients if r.org_unit.id not in have]
    category = previous.category if c.category == "other" else c.category
    urgency = "urgent" if "urgent" in (c.urgency, previous.urgency) else "general"
    reasons = "; ".join(f"{r.org_unit.name}: {r.reason}" for r in recipients)
    return previous.model_copy(
        update={
            "event_id": str(uuid.uuid4()),
            "occurred_at": utcnow(),
            "category": category,
            "urgency": urgency,
            "matched": c.matched or previous.matched,
            "rules_version": rules.version,
            # Brought forward only while the first handler has it: a later stage keeps its own deadline.
            "deadline_at": min(previous.deadline_at, decision.deadline_at)
            if case.stage == 1
            else case.deadline_at,
            "recipients": recipients,
            "summary": summarise(" ".join(part for part in (previous.summary, transcribed.text) if part)),
            "explanation": f"{c.explanation} (transcript) Recipients: {reasons}",
            "revision": previous.revision + 1,
            "transcription": "done",
        }
    )


def record_transcript(
    session: Session, case: Case, transcribed: ReportTranscribed, routed: ReportRouted
) -> None:
    before = ReportRouted.model_validate(case.routed_event)
    now = utcnow()
    known = {recipient.org_unit_id for recipient in case.recipients}
    added = [r for r in routed.recipients if r.org_unit.id not in known]
    case.recipients.extend(_recipient_row(r, now) for r in added)
    case.category = routed.category
    case.urgency = routed.urgency
    case.deadline_at = routed.deadline_at
    case.explanation = routed.explanation
    case.summary = routed.summary
    case.routed_event = routed.to_wire()
    case.revision = routed.revision
    case.transcription = "done"
    case.transcript = transcribed.text
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            kind="transcribed",
            actor="speech",
            detail={
                "engine": transcribed.engine,
                "model": transcribed.model,
                "language": transcribed.language,
                "audio_seconds": transcribed.audio_seconds,
                "category": [before.category, routed.category],
                "urgency": [before.urgency, routed.urgency],
                "added_units": [r.org_unit.id for r in added],
            },
        )
    )


def apply_transcript(
    session: Session,
    case: Case,
    transcribed: ReportTranscribed,
    decision: Decision,
    rules: Rules,
    clock: CaseClock,
    now: datetime,
) -> list[str]:
    """Record what a transcript changes; while the first handler has the case its ladder and timers
    follow the new category and deadline. Returns the ids of the events to publish."""
    rerouted = rerouted_event(case, transcribed, decision, rules)
    record_transcript(session, case, transcribed, rerouted)
    work = Casework(session, clock, now)
    if case.stage == 1:
        case.ladder = [rung.model_dump(mode="json") for rung in decision.ladder]
        if case.state in OPEN:
            work.reschedule_stage(case)
    work.settle(case, "transcribed", "speech")
    return work.published


def apply_transcript_once(
    sessions: sessionmaker,
    transcribed: ReportTranscribed,
    decision: Decision,
    rules: Rules,
    clock: CaseClock,
    now: datetime,
) -> tuple[dict, list[str]]:
    """Apply a transcript unless a concurrent delivery did; returns the routed event to emit and the
    ids of the case updates to publish."""
    with sessions.begin() as session:
        case = find_case(session, transcribed.report_id)
        if case.transcription == "done":
            return case.routed_event, []
        published = apply_transcript(session, case, transcribed, decision, rules, clock, now)
        return case.routed_event, published


def record_failure_once(sessions: sessionmaker, failed: TranscriptionFailed) -> bool:
    """Note a failed transcription on a case still waiting for one; False when the case is unknown."""
    with sessions.begin() as session:
        case = find_case(session, failed.report_id)
        if case is None:
            return False
        if case.transcription == "pending":
            record_transcription_failure(session, case, failed)
        return True


def record_transcription_failure(session: Session, case: Case, failed: TranscriptionFailed) -> None:
    case.transcription = "failed"
    session.add(
        CaseEvent(
            case_id=case.id,
            at=utcnow(),
            kind="transcription_failed",
            actor="speech",
            detail={"reason": failed.reason, "detail": failed.detail, "language": failed.language},
        )
    )


def case_json(case: Case) -> dict:
    routed = case.routed_event
    return {
        "id": case.id,
        "report_id": case.report_id,
        "state": case.state,
        "category": case.category,
        "urgency": case.urgency,
        "language": case.language,
        "matched": routed["matched"],
        "rules_version": case.rules_version,
        "explanation": case.explanation,
        # The current stage's: every escalation, reassignment or reopening sets a fresh one.
        "deadline_at": case.deadline_at.isoformat(),
        "routed_at": routed["occurred_at"],
        "handler": case.handler,
        "recipients": [recipient.detail for recipient in case.recipients],
        "revision": case.revision,
        "transcription": case.transcription,
        "transcript": case.transcript,
        "stage": case.stage,
        "stage_started_at": case.stage_started_at.isoformat(),
        "next_due_at": case.next_due_at.isoformat() if case.next_due_at else None,
        "ladder": [rung["org_unit"] for rung in case.ladder],
        "township": case.township,
        "escalations": case.escalations,
        "overdue": case.overdue_at is not None,
        "resolved_at": case.resolved_at.isoformat() if case.resolved_at else None,
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "rating": None if case.rating is None else {"score": case.rating, "note": case.rating_note},
        "merged_into": case.merged_into,
    }


def explanation_json(decision: Decision, rules: Rules) -> dict:
    c = decision.classification
    return {
        "category": c.category,
        "urgency": c.urgency,
        "language": c.language,
        "matched": [term.model_dump() for term in c.matched],
        "explanation": c.explanation,
        "rules_version": rules.version,
        "handler": decision.handler.model_dump(mode="json"),
        "recipients": [recipient.model_dump(mode="json") for recipient in decision.recipients],
        "deadline_at": decision.deadline_at.isoformat(),
    }
