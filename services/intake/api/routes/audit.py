"""The audit trails, for the county staff who answer for them: who changed or saw what, and when.

``source=registry`` is the registry's trail (every change, every clear read of an ID number or a
scan, with its reason); ``source=accounts`` is the gateway's own (sign-ins, lockouts, account
changes). Both are append-only in their databases; neither holds a value it guards.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from services.intake.api.deps import PrincipalDep, ReadSessionsDep, RpcDep
from services.intake.api.errors import error_response
from services.intake.api.registry_answers import actor_of, refusal
from services.intake.api.routes.accounts import ACCOUNT_ADMINS
from services.intake.models import AuthEvent

router = APIRouter(tags=["audit"])

# No control characters: PostgreSQL refuses a NUL in a query, and none belongs in a name.
Text = Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00-\x1f]*$")]


@router.get("/v1/audit")
def audit_trail(
    principal: PrincipalDep,
    rpc: RpcDep,
    sessions: ReadSessionsDep,
    source: Literal["registry", "accounts"] = "registry",
    actor: Text = None,
    action: Text = None,
    entity: Text = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    """A page of a trail, newest first: ``{"items", "total", "page"}``."""
    if principal.role not in ACCOUNT_ADMINS:
        return error_response(403, "only the county command and the governance centre read the audit trails")
    if source == "registry":
        filters = {"actor": actor, "action": action, "entity": entity, "since": since, "until": until}
        answer = rpc.call(
            "registry",
            "audit_entries",
            actor_of(principal),
            {
                key: value.isoformat() if isinstance(value, datetime) else value
                for key, value in filters.items()
            },
            page,
            page_size,
        )
        return refusal(answer) or JSONResponse(answer)
    where = []
    if actor:
        where.append(AuthEvent.actor == actor)
    if action:
        where.append(AuthEvent.action == action)
    if entity:
        where.append(AuthEvent.username == entity)
    if since:
        where.append(AuthEvent.at >= since)
    if until:
        where.append(AuthEvent.at < until)
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(AuthEvent).where(*where)) or 0
        rows = session.scalars(
            select(AuthEvent)
            .where(*where)
            .order_by(AuthEvent.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
        items = [
            {
                "at": row.at.isoformat(),
                "account": row.username,
                "action": row.action,
                "actor": row.actor,
                "address": row.address,
                "detail": row.detail,
            }
            for row in rows
        ]
    return JSONResponse({"items": items, "total": total, "page": page})
