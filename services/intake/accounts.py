"""Accounts: who may sign in, and as which position in the registry."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lianhu.auth import Principal
from lianhu.config import KitSettings
from lianhu.db import make_engine, make_session_factory
from lianhu.events import utcnow
from services.intake.models import Account
from services.intake.passwords import DUMMY_HASH, hash_password, verify_password

DEMO_ACCOUNTS_FILE = "demo-accounts.json"


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


def authenticate(session: Session, username: str, password: str) -> Account | None:
    account = session.get(Account, username)
    if account is None:
        verify_password(password, DUMMY_HASH)
        return None
    if not verify_password(password, account.password_hash) or account.disabled:
        return None
    return account


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
