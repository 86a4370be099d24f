"""The audit trail: who changed or saw what, when, and why.

Rows are only ever inserted: the 0002 migration installs triggers that make the database itself refuse
UPDATE and DELETE on ``audit_log``, so not even a bug here (or a hand-typed SQL session) can rewrite it.
``fields`` names what was touched (field names and counts), never the values: the audit log must not
become a second copy of the sensitive data it guards.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.registry import bulk
from services.registry.models import AuditEntry
from services.registry.schemas import Actor

ACTIONS = ("create", "update", "import", "read_sensitive")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class AuditFilters(BaseModel):
    """What ``entries`` narrows to; every criterion is optional and they combine with AND."""

    model_config = ConfigDict(extra="forbid")

    actor: str | None = None
    action: str | None = None
    entity: str | None = None
    entity_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # Timestamps are stored as UTC; a bare time from a query string is taken to be UTC too.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def row(
    actor: Actor,
    action: str,
    entity: str,
    entity_id: int | None,
    fields: Any,
    reason: str | None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """One audit row as a dict, for callers that write many in one bulk INSERT."""
    return {
        "at": at or datetime.now(UTC),
        "actor": actor.username,
        "actor_role": actor.role,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "fields": None if fields is None else json.dumps(fields, ensure_ascii=False, sort_keys=True),
        "reason": reason,
    }


def record(
    session: Session,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: int | None,
    fields: Any,
    reason: str | None,
) -> None:
    record_many(session, [row(actor, action, entity, entity_id, fields, reason)])


def record_many(session: Session, rows: Iterable[Mapping[str, Any]]) -> None:
    bulk.insert_rows(session, AuditEntry.__table__, list(rows))


def _as_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "actor_role": entry.actor_role,
        "action": entry.action,
        "entity": entry.entity,
        "entity_id": entry.entity_id,
        "fields": None if entry.fields is None else json.loads(entry.fields),
        "reason": entry.reason,
    }


def entries(
    session: Session,
    filters: AuditFilters | Mapping[str, Any] | None = None,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> dict[str, Any]:
    """A page of the trail, newest first: ``{"items", "total", "page"}``."""
    criteria = filters if isinstance(filters, AuditFilters) else AuditFilters.model_validate(filters or {})
    conditions = []
    for name in ("actor", "action", "entity", "entity_id"):
        value = getattr(criteria, name)
        if value is not None:
            conditions.append(getattr(AuditEntry, name) == value)
    if criteria.since is not None:
        conditions.append(AuditEntry.at >= criteria.since)
    if criteria.until is not None:
        conditions.append(AuditEntry.at < criteria.until)
    page = max(1, page)
    page_size = min(max(1, page_size), MAX_PAGE_SIZE)
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions)) or 0
    rows = session.scalars(
        select(AuditEntry)
        .where(*conditions)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    return {"items": [_as_dict(entry) for entry in rows], "total": total, "page": page}
