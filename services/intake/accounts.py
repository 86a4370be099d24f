"""Accounts: who may sign in, and as which position in the registry."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lianhu.auth import Principal
from lianhu.config import KitSettings
from lianhu.db import make_engine, make_session_factory
from lianhu.events import utcnow
from services.intake.models import Account, AuthEvent, RefreshToken
from services.intake.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password

DEMO_ACCOUNTS_FILE = "demo-accounts.json"
# What a username may be: the admin endpoint creates no other, and the demo seed none either.
USERNAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def principal_of(account: Account) -> Principal:
    return Principal(
        username=account.username,
        role=account.role,
        person_id=account.person_id,
        org_unit_id=account.org_unit_id,
        township=account.township,
        language=account.language,
    )


class AccountStates:
    """Whether an account may still act, re-read from the database at most every ``ttl`` seconds.

    A disabled account is refused within ``ttl`` seconds, without a database read on every request.
    """

    def __init__(self, read_sessions: sessionmaker, ttl: float = 5.0):
        self.read_sessions = read_sessions
        self.ttl = ttl
        self._known: dict[str, tuple[float, bool]] = {}

    def cached(self, username: str) -> bool | None:
        entry = self._known.get(username)
        if entry is None or time.monotonic() - entry[0] > self.ttl:
            return None
        return entry[1]

    def lookup(self, username: str) -> bool:
        with self.read_sessions() as session:
            account = session.get(Account, username)
        active = account is not None and not account.disabled
        self._known[username] = (time.monotonic(), active)
        return active


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    lock_for: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class SignIn:
    """The account when the password was right; ``locked_until`` when the account refuses any
    password for now (too many wrong ones in a row)."""

    account: Account | None = None
    locked_until: datetime | None = None


def authenticate(
    session: Session, username: str, password: str, policy: LockoutPolicy, address: str | None = None
) -> SignIn:
    """Check a password in the caller's write transaction, which should be committed whatever the
    outcome: a failure is counted, a success clears the count and upgrades an old hash, and every
    outcome goes to the sign-in log.
    """
    now = utcnow()
    if not USERNAME.fullmatch(username):
        # No account has such a name, and it must not reach the database or the log as it is
        # (a NUL byte, kilobytes of text): refused like a wrong password, in the same time.
        verify_password(password, DUMMY_HASH)
        return SignIn()
    account = session.get(Account, username)
    if account is None:
        verify_password(password, DUMMY_HASH)
        record(session, username, "login_failed", address=address, detail="unknown account")
        return SignIn()
    if account.locked_until is not None and account.locked_until > now:
        record(session, username, "login_refused_locked", address=address)
        return SignIn(locked_until=account.locked_until)
    if not verify_password(password, account.password_hash) or account.disabled:
        account.failed_logins += 1
        detail = "disabled" if account.disabled else f"failure {account.failed_logins}"
        record(session, username, "login_failed", address=address, detail=detail)
        if account.failed_logins >= policy.max_failures:
            account.locked_until = now + policy.lock_for
            account.failed_logins = 0
            record(
                session,
                username,
                "locked",
                address=address,
                detail=f"until {account.locked_until.isoformat()}",
            )
        return SignIn()
    account.failed_logins = 0
    account.locked_until = None
    if needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
    record(session, username, "login", address=address)
    return SignIn(account=account)


def record(
    session: Session,
    username: str,
    action: str,
    actor: str | None = None,
    address: str | None = None,
    detail: str | None = None,
) -> None:
    session.add(
        AuthEvent(at=utcnow(), username=username, action=action, actor=actor, address=address, detail=detail)
    )


# ------------------------------------------------------------------------------------ refresh tokens


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_refresh(session: Session, username: str, ttl: timedelta, family: str | None = None) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        RefreshToken(
            token_hash=_digest(token),
            family=family or str(uuid.uuid4()),
            username=username,
            issued_at=now,
            expires_at=now + ttl,
        )
    )
    return token


def rotate_refresh(
    session: Session, token: str, ttl: timedelta, address: str | None = None
) -> tuple[Account, str] | None:
    """The account and a new refresh token in place of ``token``; None when it is not usable. A
    token used twice was copied: its whole family is revoked, so commit whatever the outcome."""
    now = utcnow()
    stored = session.get(RefreshToken, _digest(token)) if isinstance(token, str) and token else None
    if stored is None:
        return None
    if stored.used_at is not None or stored.revoked_at is not None:
        if stored.revoked_at is None:
            revoke_family(session, stored.family)
            record(session, stored.username, "refresh_reused", address=address, detail="family revoked")
        return None
    account = session.get(Account, stored.username)
    if stored.expires_at <= now or account is None or account.disabled:
        return None
    stored.used_at = now
    return account, issue_refresh(session, account.username, ttl, stored.family)


def revoke_family(session: Session, family: str) -> None:
    now = utcnow()
    for row in session.scalars(
        select(RefreshToken).where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
    ):
        row.revoked_at = now


def revoke_all(session: Session, username: str) -> None:
    now = utcnow()
    for row in session.scalars(
        select(RefreshToken).where(RefreshToken.username == username, RefreshToken.revoked_at.is_(None))
    ):
        row.revoked_at = now


def revoke(session: Session, token: str) -> str | None:
    """Sign a phone out: the token's family is revoked. The username, or None for an unknown token."""
    stored = session.get(RefreshToken, _digest(token)) if isinstance(token, str) and token else None
    if stored is None:
        return None
    revoke_family(session, stored.family)
    return stored.username


def default_language(role: str) -> str:
    # Liaison workers are herders' neighbours and speak Tibetan; staff above them default to Mandarin.
    return "bo" if role == "liaison_worker" else "zh"


def load_accounts(sessions: sessionmaker, entries: list[dict]) -> int:
    """Add the accounts that do not exist yet; returns how many were added."""
    with sessions() as session:
        existing = set(session.scalars(select(Account.username)))
    new = [entry for entry in entries if entry["username"] not in existing]
    # scrypt is deliberately slow; hashing in threads keeps a demo seed to seconds.
    with ThreadPoolExecutor(max_workers=4) as pool:
        hashes = list(pool.map(lambda entry: hash_password(entry["password"]), new))
    now = utcnow()
    with sessions.begin() as session:
        session.add_all(
            Account(
                username=entry["username"],
                password_hash=password_hash,
                role=entry["role"],
                display_name=entry.get("name", ""),
                person_id=entry.get("person_id"),
                org_unit_id=entry.get("org_unit"),
                org_unit_name=entry.get("org_unit_name", ""),
                township=entry.get("township", ""),
                language=entry.get("language") or default_language(entry["role"]),
                created_at=now,
            )
            for entry, password_hash in zip(new, hashes, strict=True)
        )
    return len(new)


def seed_accounts(settings: KitSettings, demo: bool) -> str:
    """Load the demo accounts that the registry's demo seed wrote, if there are any."""
    path = Path(settings.var_dir) / DEMO_ACCOUNTS_FILE
    if not demo or not path.exists():
        return "no demo accounts to load"
    engine = make_engine(settings.database_url("intake"))
    try:
        added = load_accounts(make_session_factory(engine), json.loads(path.read_text()))
    finally:
        engine.dispose()
    return f"{added} demo accounts added"
