"""The figures a leader is asked for ("82 collected, 69 resolved"), exact, for a unit's subtree.

Which cases count for a unit: every case for the county; for a township or village, the cases whose
matter lies in its subtree (the case's ``area_path`` starts with the unit's path); for a county
department or the governance centre, which have no area of their own, the cases that reached them.
A period is the cases *submitted* in it. A case counts as resolved while its resolution stands (a
reopened case until it is resolved again), on time when it never missed a deadline, overdue and
escalated when it ever did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, sessionmaker

from services.routing.clock import ClockRules, local_midnight
from services.routing.escalation import path_ids, path_of
from services.routing.models import Case, CaseRecipient

COUNTS = ("collected", "resolved", "resolved_on_time", "overdue", "escalated")
NO_AREA_KINDS = frozenset({"department", "governance_centre"})


@dataclass(frozen=True)
class Scope:
    kind: Literal["all", "area", "reached"]
    unit_id: int
    path: str


def scope_for(chain: list[dict]) -> Scope:
    unit = chain[0]["unit"]
    if len(chain) == 1:
        return Scope("all", unit["id"], path_of(chain))
    return Scope("reached" if unit["kind"] in NO_AREA_KINDS else "area", unit["id"], path_of(chain))


def parse_moment(value: object, rules: ClockRules) -> datetime | None:
    """An ISO date (the start of that day in the county) or date-time (no zone: the county's)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date or date-time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date or date-time") from None
    if len(value) <= len("2026-11-30"):
        return local_midnight(date.fromisoformat(value), rules)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=rules.zone)
    return moment.astimezone(UTC)


def _blank() -> dict:
    return dict.fromkeys(COUNTS, 0) | {"rated": 0, "_rating_sum": 0}


def _add(total: dict, row) -> None:
    for name in (*COUNTS, "rated"):
        total[name] += getattr(row, name)
    total["_rating_sum"] += row.rating_sum or 0


def _finish(total: dict) -> dict:
    rating_sum = total.pop("_rating_sum")
    total["satisfaction_avg"] = round(rating_sum / total["rated"], 2) if total["rated"] else None
    return total


def summary(session: Session, scope: Scope, start: datetime | None, end: datetime | None) -> dict:
    resolved = Case.resolved_at.is_not(None)
    query = select(
        Case.area_path,
        Case.category,
        func.count().label("collected"),
        func.count(Case.resolved_at).label("resolved"),
        func.coalesce(func.sum(case((and_(resolved, Case.overdue_at.is_(None)), 1), else_=0)), 0).label(
            "resolved_on_time"
        ),
        func.count(Case.overdue_at).label("overdue"),
        func.coalesce(func.sum(case((Case.escalations > 0, 1), else_=0)), 0).label("escalated"),
        func.count(Case.rating).label("rated"),
        func.sum(Case.rating).label("rating_sum"),
    ).group_by(Case.area_path, Case.category)
    if scope.kind == "area":
        query = query.where(Case.area_path.like(f"{scope.path}%"))
    elif scope.kind == "reached":
        reached = select(CaseRecipient.case_id).where(CaseRecipient.org_unit_id == scope.unit_id)
        query = query.where(Case.id.in_(reached))
    if start is not None:
        query = query.where(Case.submitted_at >= start)
    if end is not None:
        query = query.where(Case.submitted_at < end)

    total, by_category, by_unit = _blank(), {}, {}
    depth = len(path_ids(scope.path))
    for row in session.execute(query):
        _add(total, row)
        _add(by_category.setdefault(row.category, _blank()), row)
        ids = path_ids(row.area_path or "")
        if scope.kind != "reached" and len(ids) > depth:
            _add(by_unit.setdefault(ids[depth], _blank()), row)
    return {
        **_finish(total),
        "by_category": {category: _finish(counts) for category, counts in sorted(by_category.items())},
        "by_unit": [{"unit_id": unit_id, **_finish(counts)} for unit_id, counts in sorted(by_unit.items())],
    }


def read_summary(sessions: sessionmaker, scope: Scope, start: datetime | None, end: datetime | None) -> dict:
    with sessions() as session:
        return summary(session, scope, start, end)
