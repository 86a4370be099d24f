"""Injected dependencies of the routes: settings, database sessions, RPC client, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import sessionmaker

from lianhu.auth import InvalidToken, Principal, verify_token
from lianhu.rpc_client import RpcClient
from services.intake.config import IntakeSettings
from services.intake.models import Account

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


def get_settings(request: Request) -> IntakeSettings:
    return request.app.state.settings


def get_sessions(request: Request) -> sessionmaker:
    return request.app.state.sessions


def get_rpc(request: Request) -> RpcClient:
    return request.app.state.rpc


def get_principal(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> Principal:
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    invalid = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "invalid or expired token",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )
    try:
        principal = verify_token(token, request.app.state.signing_key)
    except InvalidToken:
        raise invalid from None
    # A token outlives its account's state: one primary-key read makes disabling or deleting an
    # account take effect at once, not when its tokens expire.
    with request.app.state.sessions() as session:
        account = session.get(Account, principal.username)
    if account is None or account.disabled:
        raise invalid
    return principal


SettingsDep = Annotated[IntakeSettings, Depends(get_settings)]
SessionsDep = Annotated[sessionmaker, Depends(get_sessions)]
RpcDep = Annotated[RpcClient, Depends(get_rpc)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
