"""The org units of the caller's area, for a frontend's unit filters and task targets."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from services.intake.api.deps import PrincipalDep, RpcDep
from services.intake.api.registry_answers import actor_of, refusal

router = APIRouter(tags=["registry"])

UnitKind = Literal["county", "governance_centre", "department", "township", "village", "liaison"]


@router.get("/v1/units")
def list_units(
    principal: PrincipalDep,
    rpc: RpcDep,
    kind: Annotated[list[UnitKind] | None, Query(max_length=6, description="Only these kinds")] = None,
    parent: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this unit's children")] = None,
) -> JSONResponse:
    """``{"items":[{"id","parent_id","kind","level","name","name_bo"}]}`` in tree order: the caller's
    own unit and everything under it (the whole county for the county command, the governance centre
    and departments)."""
    answer = rpc.call("registry", "units_in_area", actor_of(principal), kind, parent)
    return refusal(answer) or JSONResponse({"items": answer})
