from __future__ import annotations

from fastapi import APIRouter

from services.intake.api.deps import PrincipalDep, ReadSessionsDep, RpcDep
from services.intake.api.errors import error_response
from services.intake.models import Account
from services.intake.schemas import ExplainIn

router = APIRouter(tags=["routing"])


@router.post("/v1/routing/explain")
def explain(body: ExplainIn, principal: PrincipalDep, sessions: ReadSessionsDep, rpc: RpcDep):
    """Dry run: what routing would make of this text from this reporter, and who would get it."""
    username = body.reporter or principal.username
    with sessions() as session:
        account = session.get(Account, username)
    if account is None:
        return error_response(404, f"no account {username}", "unknown_reporter")
    reporter = {
        "username": account.username,
        "person_id": account.person_id,
        "org_unit_id": account.org_unit_id,
        "role": account.role,
    }
    return rpc.call("routing", "explain", body.text, reporter)
