"""Who may read which case, and the case list a console filters.

A user sees a case when it lies in their part of the org tree (its ``area_path`` starts with the
path of the user's unit), when it reached their unit (handler, copy, former handler), when they sent
it, or when they stand above its handler; the county command and the governance centre see every
case. Anything else answers as if it did not exist. The same rule decides the list, one case's
page, and whether an action is refused as ``forbidden`` (seen, not theirs) or ``not_found``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from lianhu.events import CaseState
from services.routing import escalation
from services.routing.actions import Actor, Invalid
from services.routing.cases import case_json
from services.routing.escalation import COUNTY_LEVEL, Party, path_of
from services.routing.lifecycle import ALLOWED_FROM, OPEN, WHO_MAY
from services.routing.models import Case, CaseRecipient
from services.routing.stats import Scope

MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Viewer:
    """A user as the case reads see them: their unit's place in the tree."""

    username: str
    unit_id: int | None
    # The materialised path of the user's unit ("/1/5/23/"); None without a unit.
    path: str | None
    county_wide: bool

    @classmethod
    def of(cls, actor: Actor, chain: list[dict]) -> Viewer:
        """``chain``: the registry's chain above the actor's unit (nearest first), [] without one."""
        if actor.org_unit_id is None or not chain or chain[0]["unit"]["id"] != actor.org_unit_id:
            return cls(actor.username, None, None, False)
        county_wide = chain[0]["unit"]["kind"] in COUNTY_LEVEL
        return cls(actor.username, actor.org_unit_id, path_of(chain), county_wide)


def sees_area(case: Case, viewer: Viewer) -> bool:
    """Whether the case lies in the viewer's part of the tree (or the viewer sees the county)."""
    if viewer.county_wide:
        return True
    return viewer.path is not None and (case.area_path or "").startswith(viewer.path)


def standing(case: Case, viewer: Viewer, above: frozenset[int]) -> set[Party]:
    """How the viewer stands to the case; ``above``: the units above its handler."""
    return escalation.parties(
        viewer.unit_id,
        viewer.username,
        handler_id=case.handler_unit_id,
        reporter_username=case.reporter_username,
        above=set(above),
        involved={recipient.org_unit_id for recipient in case.recipients},
    )


def case_page(case: Case, timeline: list[dict], viewer: Viewer, above: frozenset[int]) -> dict | None:
    """The case as its page shows it, with what the viewer may do now; None when they may not see it."""
    parties = standing(case, viewer, above)
    if not parties and not sees_area(case, viewer):
        return None
    return {
        **case_json(case),
        "timeline": timeline,
        "allowed_actions": allowed_actions(parties, case.state),
    }


def allowed_actions(parties: set[Party], state: str) -> list[str]:
    """The actions the user may take on the case now, in the lifecycle's order."""
    return [action for action, who in WHO_MAY.items() if parties & who and state in ALLOWED_FROM[action]]


def visible_clause(viewer: Viewer) -> ColumnElement[bool]:
    """The cases a list may show the viewer: by area, by reaching their unit, or their own reports.
    (A unit above a handler that was moved out of its area sees the case on its page, not here.)"""
    mine = Case.reporter_username == viewer.username
    if viewer.county_wide:
        return Case.id.is_not(None)
    if viewer.unit_id is None or viewer.path is None:
        return mine
    reached = select(CaseRecipient.case_id).where(CaseRecipient.org_unit_id == viewer.unit_id)
    return or_(
        mine,
        Case.area_path.like(f"{viewer.path}%"),
        Case.handler_unit_id == viewer.unit_id,
        Case.id.in_(reached),
    )


def scope_clause(scope: Scope) -> ColumnElement[bool]:
    """The cases counted for a unit (the statistics' rule): all, its area, or those that reached it."""
    if scope.kind == "all":
        return Case.id.is_not(None)
    if scope.kind == "area":
        return Case.area_path.like(f"{scope.path}%")
    return Case.id.in_(select(CaseRecipient.case_id).where(CaseRecipient.org_unit_id == scope.unit_id))


class CaseFilters(BaseModel):
    """The console's filters; each narrows the caller's own cases."""

    model_config = ConfigDict(extra="forbid")

    unit: int | None = Field(default=None, description="only cases counted for this unit's subtree")
    category: str | None = Field(default=None, max_length=32)
    urgency: Literal["urgent", "general"] | None = None
    state: list[CaseState] = Field(default_factory=list, max_length=12)
    open: bool | None = Field(default=None, description="true: not yet resolved; false: resolved or closed")
    overdue: bool | None = None
    mine: bool = Field(default=False, description="only reports the caller sent")
    q: str | None = Field(default=None, max_length=100, description="words in the text or transcript")
    page: int = Field(default=1, ge=1, le=10_000)
    page_size: int = Field(default=25, ge=1, le=MAX_PAGE_SIZE)


def parse_filters(value: object) -> CaseFilters:
    try:
        return CaseFilters.model_validate(value if isinstance(value, dict) else {})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "filters"
        raise Invalid(where, "筛选条件不正确", f"{where}: {first['msg']}") from None


def _filtered(query: Select, viewer: Viewer, filters: CaseFilters, scope: Scope | None) -> Select:
    query = query.where(visible_clause(viewer))
    if scope is not None:
        query = query.where(scope_clause(scope))
    if filters.mine:
        query = query.where(Case.reporter_username == viewer.username)
    if filters.category:
        query = query.where(Case.category == filters.category)
    if filters.urgency:
        query = query.where(Case.urgency == filters.urgency)
    if filters.state:
        query = query.where(Case.state.in_(filters.state))
    if filters.open is not None:
        query = query.where(Case.state.in_(OPEN) if filters.open else Case.state.not_in(OPEN))
    if filters.overdue is not None:
        query = query.where(Case.overdue_at.is_not(None) if filters.overdue else Case.overdue_at.is_(None))
    # LIKE's own wildcards are dropped from the words: they would match anything.
    for word in (filters.q or "").replace("%", " ").replace("_", " ").split()[:5]:
        pattern = f"%{word}%"
        query = query.where(
            or_(Case.text.like(pattern), Case.transcript.like(pattern), Case.summary.like(pattern))
        )
    return query


def list_cases(session: Session, viewer: Viewer, filters: CaseFilters, scope: Scope | None) -> dict:
    """A page of the viewer's cases, newest first, with the total that matched."""
    total = session.scalar(_filtered(select(func.count(Case.id)), viewer, filters, scope)) or 0
    rows = session.scalars(
        _filtered(select(Case), viewer, filters, scope)
        .order_by(Case.routed_at.desc(), Case.id)
        .offset((filters.page - 1) * filters.page_size)
        .limit(filters.page_size)
    )
    return {
        "items": [list_item(case) for case in rows],
        "total": total,
        "page": filters.page,
        "page_size": filters.page_size,
    }


def list_item(case: Case) -> dict:
    return {
        "report_id": case.report_id,
        "case_id": case.id,
        "state": case.state,
        "category": case.category,
        "urgency": case.urgency,
        "summary": case.summary,
        "text": case.text,
        "transcript": case.transcript,
        "transcription": case.transcription,
        "handler": case.handler,
        "township": case.township,
        "reporter_username": case.reporter_username,
        "household_id": case.household_id,
        "submitted_at": case.submitted_at.isoformat(),
        "routed_at": case.routed_at.isoformat(),
        "deadline_at": case.deadline_at.isoformat(),
        "overdue": case.overdue_at is not None,
        "escalations": case.escalations,
        "resolved_at": case.resolved_at.isoformat() if case.resolved_at else None,
        "has_audio": bool(case.routed_event.get("audio")),
    }
