"""The per-unit inbox: written once per recipient, read newest first."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lianhu.events import ReportRouted, utcnow
from services.notify.models import InboxItem

MAX_PAGE = 200


def deliver(session: Session, event: ReportRouted) -> int:
    """Write the items this case's recipients do not have yet; returns how many were new."""
    have = set(session.scalars(select(InboxItem.org_unit_id).where(InboxItem.case_id == event.case_id)))
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
