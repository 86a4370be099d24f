from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from lianhu.rpc_client import RemoteError, RpcUnavailable
from services.intake.api.deps import PrincipalDep, ReadSessionsDep, RpcDep
from services.intake.api.errors import error_response
from services.intake.models import Report
from services.intake.schemas import ReportIn
from services.intake.submissions import KeyConflict, Overloaded, report_body

router = APIRouter(tags=["reports"])

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Any unique string per report; a retry with the same key never makes a second report.",
    ),
]


def household_known(rpc, household_id: int) -> bool:
    """Whether the registry knows the household; if it cannot answer now, routing checks it later."""
    try:
        return rpc.call("registry", "get_household", household_id) is not None
    except (RpcUnavailable, RemoteError):
        # A failing registry (e.g. its database is down) cannot verify either: accept the report.
        return True


@router.post("/v1/reports", status_code=201)
async def create_report(
    report: ReportIn,
    request: Request,
    principal: PrincipalDep,
    rpc: RpcDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Accept a report. ``201`` only once it is stored with its event: nothing accepted is lost."""
    if report.household_id is not None and not await run_in_threadpool(
        household_known, rpc, report.household_id
    ):
        return error_response(
            422, f"household {report.household_id} is not in the registry", "unknown_household"
        )
    try:
        future = request.app.state.writer.submit(principal, report, idempotency_key)
    except KeyConflict as conflict:
        return error_response(conflict.status_code, conflict.detail, conflict.code)
    except Overloaded:
        return error_response(503, "too many reports are waiting to be stored; retry shortly", "overloaded")
    try:
        outcome = await asyncio.wrap_future(future)
    except KeyConflict as conflict:
        return error_response(conflict.status_code, conflict.detail, conflict.code)
    headers = {"Location": f"/v1/reports/{outcome.body['id']}"}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


@router.get("/v1/reports/{report_id}")
def get_report(
    report_id: Annotated[str, Path(max_length=64)],
    principal: PrincipalDep,
    sessions: ReadSessionsDep,
    rpc: RpcDep,
) -> JSONResponse:
    """The report with its case once routed: category, urgency, evidence, handler, recipients."""
    with sessions() as session:
        report = session.get(Report, report_id)
    if report is None:
        return error_response(404, f"no report {report_id}")
    body = report_body(report)
    try:
        case = rpc.call("routing", "get_case", report_id)
    except RpcUnavailable:
        body["case_lookup"] = "unavailable"
        return JSONResponse(body)
    if case is not None:
        body.update(
            status=case["state"],
            category=case["category"],
            urgency=case["urgency"],
            matched=case["matched"],
            case=case,
        )
    return JSONResponse(body)
