"""The per-unit inbox: one item per unit a case reached, each told every change meant for it once,
read freshest first."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lianhu.events import (
    CaseUpdated,
    Notice,
    PersonRef,
    ReportRouted,
    TaskAnswered,
    TaskAssigned,
    TaskCancelled,
    UnitRef,
    utcnow,
)
from services.notify.models import InboxItem, InboxNotice

MAX_PAGE = 200


def deliver(session: Session, event: ReportRouted) -> int:
    """Write the items this case's recipients do not have yet, and bring the others up to a newer
    revision of the case; returns how many items were new."""
    items = session.scalars(select(InboxItem).where(InboxItem.case_id == event.case_id)).all()
    for item in items:
        if item.revision < event.revision:
            item.category, item.urgency, item.summary = event.category, event.urgency, event.summary
            item.revision, item.transcription = event.revision, event.transcription
            # Once the case has moved on (case_updated), its deadline comes from there.
            if item.seq == 0:
                item.deadline_at = event.deadline_at
    have = {item.org_unit_id for item in items}
    now = utcnow()
    new = [recipient for recipient in event.recipients if recipient.org_unit.id not in have]
    for recipient in new:
        have.add(recipient.org_unit.id)
        session.add(
            _new_item(
                event,
                recipient.org_unit,
                recipient.person,
                now,
                **_case_fields(event),
                role=recipient.role,
                position=recipient.position,
                reason=recipient.reason,
                revision=event.revision,
                has_audio=event.audio is not None,
                transcription=event.transcription,
            )
        )
    return len(new)


def apply_update(session: Session, event: CaseUpdated) -> int:
    """Bring the case's items to its newest state and tell each unit what the update says it must
    hear, once per key; a unit the case had not reached gets its item now. Returns how many notices
    were new."""
    items = {
        item.org_unit_id: item
        for item in session.scalars(select(InboxItem).where(InboxItem.case_id == event.case_id))
    }
    told = set(
        session.execute(
            select(InboxNotice.org_unit_id, InboxNotice.key).where(InboxNotice.case_id == event.case_id)
        ).all()
    )
    now = utcnow()
    new = 0
    for notice in event.notices:
        if (notice.org_unit.id, notice.key) in told:
            continue
        told.add((notice.org_unit.id, notice.key))
        item = items.get(notice.org_unit.id)
        if item is None:
            item = items[notice.org_unit.id] = _item_for(event, notice, now)
            session.add(item)
        session.add(
            InboxNotice(
                case_id=event.case_id,
                org_unit_id=notice.org_unit.id,
                key=notice.key,
                kind=notice.kind,
                role=notice.role,
                note=notice.note,
                actor=event.actor,
                event_id=event.event_id,
                at=event.occurred_at,
            )
        )
        item.attention, item.read_at, item.updated_at = notice.kind, None, now
        new += 1
    handler = event.handler.org_unit.id
    for item in items.values():
        if item.seq >= event.seq:
            continue
        item.seq, item.state, item.deadline_at = event.seq, event.state, event.deadline_at
        item.category, item.urgency, item.summary = event.category, event.urgency, event.summary
        if item.org_unit_id == handler:
            item.role = "handler"
        elif item.role == "handler":
            item.role = "copy"
    return new


def _new_item(
    event: ReportRouted | CaseUpdated | TaskAssigned, unit: UnitRef, person: PersonRef | None, now, **fields
) -> InboxItem:
    """A new item in ``unit``'s inbox, stamped now; ``fields`` say what it is about."""
    return InboxItem(
        event_id=event.event_id,
        org_unit_id=unit.id,
        org_unit_name=unit.name,
        person_id=person.id if person else None,
        person_name=person.name if person else None,
        created_at=now,
        updated_at=now,
        **fields,
    )


def _case_fields(event: ReportRouted | CaseUpdated) -> dict:
    return {
        "report_id": event.report_id,
        "case_id": event.case_id,
        "category": event.category,
        "urgency": event.urgency,
        "summary": event.summary,
        "deadline_at": event.deadline_at,
    }


def _item_for(event: CaseUpdated, notice: Notice, now) -> InboxItem:
    return _new_item(
        event,
        notice.org_unit,
        notice.person,
        now,
        **_case_fields(event),
        role=notice.role,
        position=notice.position,
        reason=notice.note,
        seq=0,
    )


def notice_json(notice: InboxNotice) -> dict:
    return {
        "kind": notice.kind,
        "role": notice.role,
        "note": notice.note,
        "actor": notice.actor,
        "at": notice.at.isoformat(),
    }


def _common_json(item: InboxItem) -> dict:
    """What every inbox item says, a case's or a task's: who it is for, why, by when, read or not."""
    return {
        "id": item.id,
        "urgency": item.urgency,
        "role": item.role,
        "position": item.position,
        "reason": item.reason,
        "summary": item.summary,
        "org_unit": {"id": item.org_unit_id, "name": item.org_unit_name},
        "person": None if item.person_id is None else {"id": item.person_id, "name": item.person_name},
        "deadline_at": item.deadline_at.isoformat(),
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
        "read": item.read_at is not None,
        "attention": item.attention,
    }


def item_json(item: InboxItem, notices: list[InboxNotice] = ()) -> dict:
    if item.kind == "task":
        return task_item_json(item)
    return {
        **_common_json(item),
        "kind": "case",
        "report_id": item.report_id,
        "case_id": item.case_id,
        "category": item.category,
        "audio": f"/v1/reports/{item.report_id}/audio" if item.has_audio else None,
        "transcription": item.transcription,
        "revision": item.revision,
        "state": item.state or "routed",
        "notices": [notice_json(notice) for notice in notices],
    }


def list_inbox(session: Session, org_unit_id: int, limit: int, offset: int, unread_only: bool) -> dict:
    where = [InboxItem.org_unit_id == org_unit_id]
    if unread_only:
        where.append(InboxItem.read_at.is_(None))
    total = session.scalar(select(func.count()).select_from(InboxItem).where(*where))
    items = session.scalars(
        select(InboxItem)
        .where(*where)
        .order_by(InboxItem.updated_at.desc(), InboxItem.id.desc())
        .limit(max(1, min(limit, MAX_PAGE)))
        .offset(max(0, offset))
    ).all()
    notices: dict[str, list[InboxNotice]] = {}
    if items:
        for notice in session.scalars(
            select(InboxNotice)
            .where(
                InboxNotice.org_unit_id == org_unit_id,
                InboxNotice.case_id.in_([i.case_id for i in items if i.case_id is not None]),
            )
            .order_by(InboxNotice.at, InboxNotice.id)
        ):
            notices.setdefault(notice.case_id, []).append(notice)
    return {"items": [item_json(item, notices.get(item.case_id, [])) for item in items], "total": total}


# --- tasks sent down: one item per task and recipient unit -------------------------------------------

TASK_REASON = "上级下发任务，请按时回复 / a task from {sender}: answer it by its due time"


def deliver_task(session: Session, event: TaskAssigned) -> int:
    """An item for each recipient unit that has none for this task yet; returns how many were new."""
    have = set(session.scalars(select(InboxItem.org_unit_id).where(InboxItem.task_id == event.task_id)).all())
    now = utcnow()
    sender = event.sender_unit.name if event.sender_unit else "?"
    new = 0
    for recipient in event.recipients:
        if recipient.org_unit.id in have:
            continue
        have.add(recipient.org_unit.id)
        session.add(
            _new_item(
                event,
                recipient.org_unit,
                recipient.person,
                now,
                kind="task",
                task_id=event.task_id,
                role="recipient",
                position="liaison_worker",
                reason=TASK_REASON.format(sender=sender),
                category=event.kind,
                urgency="general",
                summary=event.title,
                deadline_at=event.due_at,
                state="open",
                attention="task",
            )
        )
        new += 1
    return new


def apply_task_answered(session: Session, event: TaskAnswered) -> bool:
    """The recipient's item shows the task answered; False while the item is not there yet."""
    item = session.scalar(
        select(InboxItem).where(
            InboxItem.task_id == event.task_id, InboxItem.org_unit_id == event.org_unit_id
        )
    )
    if item is None:
        return False
    if item.state != "cancelled":
        item.state, item.read_at = "answered", item.read_at or event.answered_at
    return True


def apply_task_cancelled(session: Session, event: TaskCancelled) -> bool:
    """Every item of the task shows it cancelled, unread again; False while there are none yet."""
    items = session.scalars(select(InboxItem).where(InboxItem.task_id == event.task_id)).all()
    now = utcnow()
    for item in items:
        if item.state != "cancelled":
            item.state, item.attention, item.read_at, item.updated_at = "cancelled", "cancelled", None, now
            if event.note:
                item.reason = event.note
    return bool(items)


def task_item_json(item: InboxItem) -> dict:
    return {
        **_common_json(item),
        "kind": "task",
        "task_id": item.task_id,
        "report_id": None,
        "case_id": None,
        "title": item.summary,
        "task_kind": item.category,
        "category": item.category,
        "audio": None,
        "transcription": None,
        "revision": 1,
        "state": item.state or "open",
        "notices": [],
    }
