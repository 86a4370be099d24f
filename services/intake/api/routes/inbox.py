from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.intake.api.deps import PrincipalDep, RpcDep

router = APIRouter(tags=["inbox"])


@router.get("/v1/inbox")
def list_inbox(
    principal: PrincipalDep,
    rpc: RpcDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    unread: bool = False,
) -> dict:
    """What reached the caller's unit, newest first: as ``handler`` to act, or as ``copy``."""
    if principal.org_unit_id is None:
        return {"items": [], "total": 0}
    return rpc.call(
        "notify", "list_inbox", principal.org_unit_id, limit=limit, offset=offset, unread_only=unread
    )
