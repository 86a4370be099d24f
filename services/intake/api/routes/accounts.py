"""Accounts, kept by county staff: create one for a person's position, disable it, reset its password.

Only the county command and the governance centre manage accounts. An account is bound to a person
and position that the registry knows; its role and unit are the position's, never what a form says.
Every change goes to the append-only sign-in log with who made it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, or_, select

from lianhu.auth import Principal
from services.intake import accounts
from services.intake.api.deps import PrincipalDep, ReadSessionsDep, RpcDep
from services.intake.api.errors import error_response
from services.intake.api.routes.auth import address_of, write_transaction
from services.intake.models import Account
from services.intake.passwords import WeakPassword, check_rules, hash_password
from services.intake.schemas import UnicodeStr

router = APIRouter(tags=["accounts"])

ACCOUNT_ADMINS = frozenset({"county_command", "governance_centre"})
Username = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    password: UnicodeStr = Field(max_length=256)
    person_id: int = Field(ge=1, le=2**31 - 1)
    org_unit_id: int = Field(ge=1, le=2**31 - 1)
    language: Literal["bo", "zh"] | None = None


class AccountChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: bool | None = None
    language: Literal["bo", "zh"] | None = None


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: UnicodeStr = Field(max_length=256)


def account_json(account: Account) -> dict:
    return {
        "username": account.username,
        "display_name": account.display_name,
        "role": account.role,
        "person_id": account.person_id,
        "org_unit_id": account.org_unit_id,
        "org_unit_name": account.org_unit_name,
        "township": account.township,
        "language": account.language,
        "disabled": account.disabled,
        "locked": account.locked_until is not None and account.locked_until > accounts.utcnow(),
        "created_at": account.created_at.isoformat(),
        "password_changed_at": account.password_changed_at.isoformat()
        if account.password_changed_at
        else None,
    }


def _refused(principal: Principal) -> JSONResponse | None:
    if principal.role not in ACCOUNT_ADMINS:
        return error_response(403, "only the county command and the governance centre manage accounts")
    return None


def _weak(weak: WeakPassword) -> JSONResponse:
    return error_response(422, weak.message_en, "weak_password", message_zh=weak.message_zh)


@router.get("/v1/accounts")
def list_accounts(
    principal: PrincipalDep,
    sessions: ReadSessionsDep,
    q: Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00-\x1f]*$")] = None,
    role: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]*$")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    """Accounts by username or name, newest first: ``{"items", "total", "page"}``."""
    refused = _refused(principal)
    if refused is not None:
        return refused
    where = []
    if q:
        pattern = f"%{q}%"
        where.append(or_(Account.username.like(pattern), Account.display_name.like(pattern)))
    if role:
        where.append(Account.role == role)
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(Account).where(*where)) or 0
        rows = session.scalars(
            select(Account)
            .where(*where)
            .order_by(Account.created_at.desc(), Account.username)
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
        return JSONResponse({"items": [account_json(row) for row in rows], "total": total, "page": page})


@router.post("/v1/accounts", status_code=201)
def create_account(body: AccountIn, principal: PrincipalDep, request: Request, rpc: RpcDep) -> JSONResponse:
    """An account for a person's position in the registry; ``409`` when the username is taken."""
    refused = _refused(principal)
    if refused is not None:
        return refused
    try:
        check_rules(body.password, body.username)
    except WeakPassword as weak:
        return _weak(weak)
    position = rpc.call("registry", "position_of", body.person_id, body.org_unit_id)
    if position is None:
        return error_response(422, "that person holds no position at that unit", "unknown_position")
    with write_transaction(request) as session:
        if session.get(Account, body.username) is not None:
            return error_response(409, f"the username {body.username} is taken", "conflict")
        account = Account(
            username=body.username,
            password_hash=hash_password(body.password),
            role=position["role"],
            display_name=position["person"]["name"],
            person_id=body.person_id,
            org_unit_id=body.org_unit_id,
            org_unit_name=position["unit"]["name"],
            township=position["township"],
            language=body.language or accounts.default_language(position["role"]),
            created_at=accounts.utcnow(),
            password_changed_at=accounts.utcnow(),
        )
        session.add(account)
        accounts.record(session, account.username, "account_created", principal.username, address_of(request))
        return JSONResponse(
            account_json(account), status_code=201, headers={"Location": f"/v1/accounts/{account.username}"}
        )


def _change(request: Request, principal: Principal, username: str, apply) -> JSONResponse:
    refused = _refused(principal)
    if refused is not None:
        return refused
    with write_transaction(request) as session:
        account = session.get(Account, username)
        if account is None:
            return error_response(404, f"no account {username}")
        problem = apply(session, account)
        return problem or JSONResponse(account_json(account))


@router.patch("/v1/accounts/{username}")
def change_account(
    username: Username, body: AccountChange, principal: PrincipalDep, request: Request
) -> JSONResponse:
    """Disable (every sign-in ends within seconds) or enable an account, or set its language."""

    def apply(session, account: Account) -> None:
        if body.disabled is not None and body.disabled != account.disabled:
            if account.username == principal.username and body.disabled:
                return error_response(409, "an administrator cannot disable their own account", "conflict")
            account.disabled = body.disabled
            if body.disabled:
                accounts.revoke_all(session, account.username)
            action = "account_disabled" if body.disabled else "account_enabled"
            accounts.record(session, account.username, action, principal.username, address_of(request))
        if body.language is not None:
            account.language = body.language
        return None

    return _change(request, principal, username, apply)


@router.post("/v1/accounts/{username}/password")
def reset_password(
    username: Username, body: PasswordReset, principal: PrincipalDep, request: Request
) -> JSONResponse:
    """Set a new password (given to its owner in person): unlocks the account, ends its sign-ins."""

    def apply(session, account: Account) -> JSONResponse | None:
        try:
            check_rules(body.password, account.username)
        except WeakPassword as weak:
            return _weak(weak)
        account.password_hash = hash_password(body.password)
        account.password_changed_at = accounts.utcnow()
        account.failed_logins = 0
        account.locked_until = None
        accounts.revoke_all(session, account.username)
        accounts.record(session, account.username, "password_reset", principal.username, address_of(request))
        return None

    return _change(request, principal, username, apply)
