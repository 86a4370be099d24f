"""From a submitted report to a routed case: classify, pick recipients, set the deadline, record."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from lianhu.events import Recipient, Reporter, ReportRouted, ReportSubmitted, utcnow
from services.routing.classify import Classification, Rules
from services.routing.models import Case, CaseRecipient
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
    report_id: str, text: str, reporter: Reporter, decision: Decision, rules: Rules
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
    )


def find_case(session: Session, report_id: str) -> Case | None:
    return session.scalar(
        select(Case).where(Case.report_id == report_id).options(selectinload(Case.recipients))
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
        recipients=[
            CaseRecipient(
                org_unit_id=r.org_unit.id,
                role=r.role,
                position=r.position,
                added_at=now,
                detail=r.model_dump(mode="json"),
            )
            for r in event.recipients
        ],
    )
    session.add(case)
    return case


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
