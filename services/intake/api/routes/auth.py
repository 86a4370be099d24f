"""Signing in: passwords for tokens, refresh tokens for new ones, signing out, changing a password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy.orm import Session

from lianhu.auth import issue_token
from lianhu.db import write_lock
from services.intake import accounts
from services.intake.api.deps import PrincipalDep, SettingsDep
from services.intake.api.errors import error_response
from services.intake.config import IntakeSettings
from services.intake.models import Account
from services.intake.passwords import WeakPassword, check_rules, hash_password, verify_password
from services.intake.schemas import TokenOut

router = APIRouter(tags=["auth"])

RefreshTokenBody = Annotated[str, Body(embed=True, min_length=1, max_length=128)]


def address_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@contextmanager
def write_transaction(request: Request) -> Iterator[Session]:
    """A write transaction on the gateway's database, taken in turn with the report writer. It
    commits on a normal exit, refusals included: failed sign-ins and revocations must stick."""
    sessions = request.app.state.sessions
    with write_lock(sessions.kw["bind"]), sessions.begin() as session:
        yield session


def _tokens(request: Request, settings: IntakeSettings, account: Account, refresh_token: str) -> TokenOut:
    ttl = timedelta(minutes=settings.token_ttl_minutes)
    return TokenOut(
        access_token=issue_token(accounts.principal_of(account), request.app.state.signing_key, ttl),
        refresh_token=refresh_token,
        expires_in=int(ttl.total_seconds()),
        username=account.username,
        role=account.role,
        org_unit=account.org_unit_id,
        org_unit_name=account.org_unit_name,
        township=account.township,
        language=account.language,
    )


def _unauthorized(detail: str, code: str = "unauthorized") -> JSONResponse:
    response = error_response(401, detail, code)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


@router.post("/v1/auth/token", response_model=TokenOut)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, settings: SettingsDep
) -> TokenOut | JSONResponse:
    """OAuth2 password flow: a short-lived access token and a refresh token. Repeated wrong
    passwords lock the account for a while (``429 account_locked``); too many attempts from one
    address or for one account are ``429 too_many_requests``; both say when to retry."""
    address = address_of(request)
    wait = request.app.state.rate_limits.retry_after(
        [("login_per_address", address), ("login_per_account", form.username)]
    )
    if wait is not None:
        return error_response(429, "too many sign-in attempts; wait and retry", retry_after=wait)
    policy = accounts.LockoutPolicy(settings.login_max_failures, timedelta(minutes=settings.lockout_minutes))
    with write_transaction(request) as session:
        outcome = accounts.authenticate(session, form.username, form.password, policy, address)
        if outcome.locked_until is not None:
            seconds = int((outcome.locked_until - accounts.utcnow()).total_seconds()) + 1
            return error_response(
                429, "too many wrong passwords: this account is locked for a while", "account_locked", seconds
            )
        account = outcome.account
        if account is None:
            return _unauthorized("wrong username or password")
        refresh = accounts.issue_refresh(session, account.username, timedelta(days=settings.refresh_ttl_days))
    return _tokens(request, settings, account, refresh)


@router.post("/v1/auth/refresh", response_model=TokenOut)
def refresh(
    refresh_token: RefreshTokenBody, request: Request, settings: SettingsDep
) -> TokenOut | JSONResponse:
    """A new access token and a new refresh token for a refresh token, which is then spent. A spent
    token presented again signs out every phone of that sign-in (it was copied)."""
    with write_transaction(request) as session:
        rotated = accounts.rotate_refresh(
            session, refresh_token, timedelta(days=settings.refresh_ttl_days), address_of(request)
        )
        if rotated is None:
            return _unauthorized("the refresh token is not valid; sign in again", "invalid_refresh_token")
        account, new = rotated
    return _tokens(request, settings, account, new)


@router.post("/v1/auth/logout", status_code=204, response_class=Response)
def logout(refresh_token: RefreshTokenBody, request: Request) -> Response:
    """Sign this phone out: its refresh token (and any it was exchanged for) stops working."""
    with write_transaction(request) as session:
        username = accounts.revoke(session, refresh_token)
        if username is not None:
            accounts.record(session, username, "logout", address=address_of(request))
    return Response(status_code=204)


@router.post("/v1/auth/password", status_code=204, response_class=Response)
def change_password(
    principal: PrincipalDep,
    request: Request,
    current_password: Annotated[str, Body(max_length=256)],
    new_password: Annotated[str, Body(max_length=256)],
) -> Response:
    """Change one's own password; every other sign-in of the account ends."""
    with write_transaction(request) as session:
        account = session.get(Account, principal.username)
        if account is None or not verify_password(current_password, account.password_hash):
            return _unauthorized("the current password is wrong")
        try:
            check_rules(new_password, account.username)
        except WeakPassword as weak:
            return error_response(422, weak.message_en, "weak_password", message_zh=weak.message_zh)
        account.password_hash = hash_password(new_password)
        account.password_changed_at = accounts.utcnow()
        accounts.revoke_all(session, account.username)
        accounts.record(session, account.username, "password_changed", actor=account.username)
    return Response(status_code=204)
