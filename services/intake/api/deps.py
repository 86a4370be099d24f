"""Injected dependencies of the routes: settings, database sessions, RPC client, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import sessionmaker

from lianhu.auth import InvalidToken, Principal, verify_token
from lianhu.rpc_client import RpcClient
from services.intake.config import IntakeSettings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


# The dependencies are coroutines: a sync one would cost a threadpool round trip per request.
async def get_settings(request: Request) -> IntakeSettings:
    return request.app.state.settings


async def get_read_sessions(request: Request) -> sessionmaker:
    return request.app.state.read_sessions


async def get_rpc(request: Request) -> RpcClient:
    return request.app.state.rpc


async def get_principal(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> Principal:
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
    # A token outlives its account's state: disabling or deleting an account takes effect within
    # a few seconds, not when its tokens expire.
    states = request.app.state.account_states
    active = states.cached(principal.username)
    if active is None:
        active = await run_in_threadpool(states.lookup, principal.username)
    if not active:
        raise invalid
    return principal


SettingsDep = Annotated[IntakeSettings, Depends(get_settings)]
ReadSessionsDep = Annotated[sessionmaker, Depends(get_read_sessions)]
RpcDep = Annotated[RpcClient, Depends(get_rpc)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
