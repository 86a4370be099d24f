"""From a submitted report to a routed case: classify, pick recipients, set the deadline, record."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from lianhu.events import (
    Recipient,
    Reporter,
    ReportRouted,
    ReportSubmitted,
    ReportTranscribed,
    TranscriptionFailed,
    utcnow,
)
from services.routing.classify import Classification, Rules
from services.routing.models import Case, CaseEvent, CaseRecipient
from services.routing.recipients import resolve_recipients

SUMMARY_CHARS = 80


@dataclass(frozen=True)
class Decision:
    classification: Classification
    handler: Recipient
    recipients: list[Recipient]
    deadline_at: datetime


def decide(
    classification: Classification, rules: Rules, context: dict, department: dict | None, base_time: datetime
) -> Decision:
    """Who gets a classified report and by when, from the registry's view of the reporter."""
    handler, recipients = resolve_recipients(context, classification.urgency, department)
    deadline = base_time + rules.deadline_for(classification.category, classification.urgency)
    return Decision(classification, handler, recipients, deadline)


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
    return [{"at": row.at.isoformat(), "kind": row.kind, "actor": row.actor, **row.detail} for row in rows]


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
    )
    session.add(case)
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
            "deadline_at": min(previous.deadline_at, decision.deadline_at),
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
        "deadline_at": routed["deadline_at"],
        "routed_at": routed["occurred_at"],
        "handler": routed["handler"],
        "recipients": [recipient.detail for recipient in case.recipients],
        "revision": case.revision,
        "transcription": case.transcription,
        "transcript": case.transcript,
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
