"""Access tokens: signed claims about who is calling, checked by whoever serves the request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import jwt

from lianhu.events import utcnow

# One fixed algorithm: a token must never choose how it is verified ("alg" confusion).
ALGORITHM = "HS256"
ISSUER = "lianhu"


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    person_id: int | None
    org_unit_id: int | None
    township: str = ""
    language: str = "zh"  # of the account's voice reports when the phone says "auto"


def issue_token(principal: Principal, key: str, ttl: timedelta) -> str:
    now = utcnow()
    claims = {
        "sub": principal.username,
        "role": principal.role,
        "pid": principal.person_id,
        "unit": principal.org_unit_id,
        "township": principal.township,
        "lang": principal.language,
        "iss": ISSUER,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_token(token: str, key: str) -> Principal:
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "sub", "role"]}
        )
    except jwt.PyJWTError as error:
        raise InvalidToken(str(error)) from error
    return Principal(
        username=claims["sub"],
        role=claims["role"],
        person_id=claims.get("pid"),
        org_unit_id=claims.get("unit"),
        township=claims.get("township", ""),
        language=claims.get("lang", "zh"),
    )
