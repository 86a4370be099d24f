"""The per-unit inbox: written once per recipient, read newest first."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lianhu.events import ReportRouted, utcnow
from services.notify.models import InboxItem

MAX_PAGE = 200


def deliver(session: Session, event: ReportRouted) -> int:
    """Write the items this case's recipients do not have yet, and bring the others up to a newer
    revision of the case; returns how many items were new."""
    items = session.scalars(select(InboxItem).where(InboxItem.case_id == event.case_id)).all()
    for item in items:
        if item.revision < event.revision:
            item.category, item.urgency, item.summary = event.category, event.urgency, event.summary
            item.deadline_at, item.revision, item.transcription = (
                event.deadline_at,
                event.revision,
                event.transcription,
            )
    have = {item.org_unit_id for item in items}
    now = utcnow()
    new = [recipient for recipient in event.recipients if recipient.org_unit.id not in have]
    for recipient in new:
        have.add(recipient.org_unit.id)
        session.add(
            InboxItem(
                event_id=event.event_id,
                report_id=event.report_id,
                case_id=event.case_id,
                org_unit_id=recipient.org_unit.id,
                org_unit_name=recipient.org_unit.name,
                person_id=recipient.person.id if recipient.person else None,
                person_name=recipient.person.name if recipient.person else None,
                role=recipient.role,
                position=recipient.position,
                reason=recipient.reason,
                category=event.category,
                urgency=event.urgency,
                summary=event.summary,
                deadline_at=event.deadline_at,
                created_at=now,
                revision=event.revision,
                has_audio=event.audio is not None,
                transcription=event.transcription,
            )
        )
    return len(new)


def item_json(item: InboxItem) -> dict:
    return {
        "id": item.id,
        "report_id": item.report_id,
        "case_id": item.case_id,
        "category": item.category,
        "urgency": item.urgency,
        "role": item.role,
        "position": item.position,
        "reason": item.reason,
        "summary": item.summary,
        "org_unit": {"id": item.org_unit_id, "name": item.org_unit_name},
        "person": None if item.person_id is None else {"id": item.person_id, "name": item.person_name},
        "deadline_at": item.deadline_at.isoformat(),
        "created_at": item.created_at.isoformat(),
        "read": item.read_at is not None,
        "audio": f"/v1/reports/{item.report_id}/audio" if item.has_audio else None,
        "transcription": item.transcription,
        "revision": item.revision,
    }


def list_inbox(session: Session, org_unit_id: int, limit: int, offset: int, unread_only: bool) -> dict:
    where = [InboxItem.org_unit_id == org_unit_id]
    if unread_only:
        where.append(InboxItem.read_at.is_(None))
    total = session.scalar(select(func.count()).select_from(InboxItem).where(*where))
    items = session.scalars(
        select(InboxItem)
        .where(*where)
        .order_by(InboxItem.created_at.desc(), InboxItem.id.desc())
        .limit(max(1, min(limit, MAX_PAGE)))
        .offset(max(0, offset))
    )
    return {"items": [item_json(item) for item in items], "total": total}
