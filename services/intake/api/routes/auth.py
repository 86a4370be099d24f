from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from lianhu.auth import issue_token
from services.intake.accounts import authenticate, principal_of
from services.intake.api.deps import ReadSessionsDep, SettingsDep
from services.intake.schemas import TokenOut

router = APIRouter(tags=["auth"])


@router.post("/v1/auth/token", response_model=TokenOut)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    sessions: ReadSessionsDep,
    settings: SettingsDep,
) -> TokenOut:
    """OAuth2 password flow: exchange a username and password for a bearer token."""
    with sessions() as session:
        account = authenticate(session, form.username, form.password)
    if account is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "wrong username or password", headers={"WWW-Authenticate": "Bearer"}
        )
    ttl = timedelta(minutes=settings.token_ttl_minutes)
    return TokenOut(
        access_token=issue_token(principal_of(account), request.app.state.signing_key, ttl),
        expires_in=int(ttl.total_seconds()),
        username=account.username,
        role=account.role,
        org_unit=account.org_unit_id,
        org_unit_name=account.org_unit_name,
        township=account.township,
        language=account.language,
    )
