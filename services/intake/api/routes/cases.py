"""Cases after routing: the actions users take on them, and the figures over a unit's subtree.

Routing decides who may do what, where the case is (it asks the registry about the org tree): the
gateway passes the caller along and maps the answers as it maps the registry's.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse
from sqlalchemy import select

from lianhu.events import CaseAction, CaseState
from services.intake.api.deps import PrincipalDep, ReadSessionsDep, RpcDep
from services.intake.api.registry_answers import actor_of, refusal
from services.intake.models import Report

router = APIRouter(tags=["cases"])

ActionKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Any unique string per action (or `action_id` in the body): a retry returns the "
        "first outcome instead of acting twice.",
    ),
]
Moment = Annotated[
    str | None,
    Query(max_length=40, description="ISO 8601 date (a whole day in the county) or date-time"),
]


@router.post("/v1/reports/{report_id}/actions")
def act_on_report(
    report_id: Annotated[str, Path(max_length=64)],
    body: CaseAction,
    principal: PrincipalDep,
    rpc: RpcDep,
    idempotency_key: ActionKeyHeader = None,
) -> JSONResponse:
    """Act on a report's case: ``acknowledge``, ``start``, ``comment``, ``resolve`` and ``return``
    (the handler's unit), ``reassign`` (``unit_id``), ``escalate`` and ``merge`` (``into``: the
    original report) (the levels above the handler), ``confirm``, ``reopen`` and ``rate``
    (``rating`` 1-5) (the reporter). ``note`` says why and is on the timeline. ``404`` for a case
    outside the caller's reach, ``403`` for an action not theirs, ``409`` when the case's state
    does not allow it."""
    # A key per request even without the client's: the RPC client may resend the call once after a
    # lost connection, and the resend must find the first outcome.
    action_id = body.action_id or idempotency_key or str(uuid.uuid4())
    request = {**body.model_dump(mode="json"), "action_id": action_id}
    answer = rpc.call("routing", "act", report_id, actor_of(principal), request)
    failed = refusal(answer)
    if failed is not None:
        return failed
    return JSONResponse(answer, headers={"Idempotent-Replayed": "true"} if answer["replayed"] else None)


@router.get("/v1/stats/summary")
def stats_summary(
    principal: PrincipalDep,
    rpc: RpcDep,
    unit: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Default: the caller's unit")] = None,
    from_: Annotated[Moment, Query(alias="from")] = None,
    to: Moment = None,
) -> JSONResponse:
    """Exact figures for the cases of a unit's subtree submitted in [from, to): ``collected``,
    ``resolved``, ``resolved_on_time``, ``overdue``, ``escalated``, ``satisfaction_avg``,
    ``by_category`` and ``by_unit`` (each child unit)."""
    answer = rpc.call("routing", "case_stats", actor_of(principal), unit, from_, to)
    return refusal(answer) or JSONResponse(answer)


@router.get("/v1/cases")
def list_cases(
    principal: PrincipalDep,
    rpc: RpcDep,
    sessions: ReadSessionsDep,
    unit: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Only the cases counted for this unit's subtree")
    ] = None,
    category: Annotated[str | None, Query(max_length=32)] = None,
    urgency: Annotated[Literal["urgent", "general"] | None, Query()] = None,
    state: Annotated[list[CaseState] | None, Query(max_length=12, description="Any of these states")] = None,
    open_: Annotated[bool | None, Query(alias="open", description="true: not yet resolved")] = None,
    overdue: bool | None = None,
    mine: Annotated[bool, Query(description="Only the reports the caller sent")] = False,
    q: Annotated[str | None, Query(max_length=100, description="Words in the text or transcript")] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 25,
) -> JSONResponse:
    """The cases the caller may see (their part of the tree, what reached their unit, what they
    sent), newest first: ``{"items", "total", "page", "page_size"}``. Each item carries its state,
    category, urgency, handler, township, deadline, ``overdue`` and the report's ``location``."""
    filters = {
        "unit": unit,
        "category": category,
        "urgency": urgency,
        "state": state or [],
        "open": open_,
        "overdue": overdue,
        "mine": mine,
        "q": q,
        "page": page,
        "page_size": page_size,
    }
    answer = rpc.call("routing", "list_cases", actor_of(principal), filters)
    failed = refusal(answer)
    if failed is not None:
        return failed
    ids = [item["report_id"] for item in answer["items"]]
    with sessions() as session:
        places = {
            row.id: {"lat": row.lat, "lon": row.lon}
            for row in session.execute(
                select(Report.id, Report.lat, Report.lon).where(Report.id.in_(ids), Report.lat.is_not(None))
            )
        }
    for item in answer["items"]:
        item["location"] = places.get(item["report_id"])
    return JSONResponse(answer)
