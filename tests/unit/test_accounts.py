"""Accounts on both engines: argon2id hashes (old scrypt ones upgraded), lockout, refresh tokens
that rotate and betray a copy, password rules, and a sign-in log that cannot be rewritten."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

import services.intake
from lianhu.db import make_engine, make_session_factory, migrate
from lianhu.events import utcnow
from services.intake import accounts
from services.intake.models import Account, AuthEvent, RefreshToken
from services.intake.passwords import WeakPassword, check_rules, hash_password, verify_password

POLICY = accounts.LockoutPolicy(max_failures=3, lock_for=timedelta(minutes=15))
DAY = timedelta(days=1)


@pytest.fixture
def sessions(database_url):
    migrate(Path(services.intake.__file__).parent / "migrations", database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    accounts.load_accounts(
        factory, [{"username": "lw", "password": "s3cret-pass-1", "role": "liaison_worker", "org_unit": 70}]
    )
    yield factory
    engine.dispose()


def sign_in(sessions, password: str, username: str = "lw") -> accounts.SignIn:
    with sessions.begin() as session:
        return accounts.authenticate(session, username, password, POLICY, "10.0.0.1")


def events(sessions) -> list[tuple[str, str | None]]:
    with sessions() as session:
        return [(row.action, row.detail) for row in session.scalars(select(AuthEvent).order_by(AuthEvent.id))]


def test_passwords_are_argon2id_and_old_scrypt_hashes_upgrade_at_sign_in(sessions):
    with sessions() as session:
        stored = session.get(Account, "lw").password_hash
    assert stored.startswith("$argon2id$") and "s3cret" not in stored
    salt = os.urandom(16)
    digest = hashlib.scrypt(b"old-pass-123", salt=salt, n=2**14, r=8, p=1, dklen=32)
    legacy = f"scrypt${2**14}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("old-pass-123", legacy) and not verify_password("old-pass-124", legacy)
    with sessions.begin() as session:
        session.get(Account, "lw").password_hash = legacy
    assert sign_in(sessions, "old-pass-123").account.username == "lw"
    with sessions() as session:
        assert session.get(Account, "lw").password_hash.startswith("$argon2id$")
    assert not verify_password("x" * 10_000, hash_password("x" * 10_000))  # over the length bound


def test_repeated_wrong_passwords_lock_the_account_even_for_the_right_one(sessions):
    for _ in range(POLICY.max_failures):
        assert sign_in(sessions, "wrong-password") == accounts.SignIn()
    locked = sign_in(sessions, "s3cret-pass-1")
    assert locked.account is None and locked.locked_until > utcnow()
    assert [action for action, _ in events(sessions)] == [
        "login_failed", "login_failed", "login_failed", "locked", "login_refused_locked",
    ]  # fmt: skip
    with sessions.begin() as session:  # the lock runs out
        session.execute(update(Account).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert sign_in(sessions, "s3cret-pass-1").account.username == "lw"
    for _ in range(POLICY.max_failures):  # the count started again
        assert sign_in(sessions, "wrong-password").locked_until is None
    assert sign_in(sessions, "s3cret-pass-1").locked_until is not None


def test_unknown_and_disabled_accounts_do_not_sign_in(sessions):
    assert sign_in(sessions, "s3cret-pass-1", username="nobody") == accounts.SignIn()
    for malformed in ("lw\x00", "x" * 65, "", "lw' OR '1'='1", "扎西"):
        assert sign_in(sessions, "s3cret-pass-1", username=malformed) == accounts.SignIn()
    with sessions.begin() as session:
        session.get(Account, "lw").disabled = True
    assert sign_in(sessions, "s3cret-pass-1") == accounts.SignIn()
    assert events(sessions)[-1] == ("login_failed", "disabled")


def test_refresh_tokens_rotate_and_a_reused_one_ends_the_whole_sign_in(sessions):
    with sessions.begin() as session:
        first = accounts.issue_refresh(session, "lw", DAY)
    with sessions.begin() as session:
        account, second = accounts.rotate_refresh(session, first, DAY)
    assert account.username == "lw" and second != first
    with sessions() as session:
        assert session.get(RefreshToken, hashlib.sha256(first.encode()).hexdigest()).used_at is not None
        assert first not in str(session.execute(text("SELECT * FROM refresh_tokens")).all())
    # The first token, stolen and replayed: refused, and the phone's current token dies with it.
    for token in (first, second):
        with sessions.begin() as session:
            assert accounts.rotate_refresh(session, token, DAY) is None
    assert ("refresh_reused", "family revoked") in events(sessions)
    for bad in ("", "x" * 40, None):
        with sessions.begin() as session:
            assert accounts.rotate_refresh(session, bad, DAY) is None


def test_expired_revoked_and_disabled_refresh_tokens_are_refused(sessions):
    with sessions.begin() as session:
        expired = accounts.issue_refresh(session, "lw", timedelta(seconds=-1))
        signed_out = accounts.issue_refresh(session, "lw", DAY)
        everywhere = accounts.issue_refresh(session, "lw", DAY)
    with sessions.begin() as session:
        assert accounts.revoke(session, signed_out) == "lw"
        assert accounts.revoke(session, "unknown") is None
    for token in (expired, signed_out):
        with sessions.begin() as session:
            assert accounts.rotate_refresh(session, token, DAY) is None
    with sessions.begin() as session:
        session.get(Account, "lw").disabled = True
    with sessions.begin() as session:
        assert accounts.rotate_refresh(session, everywhere, DAY) is None


@pytest.mark.parametrize(
    ("password", "refused"),
    [
        ("short-1", True),
        ("1234567890", True),
        ("aaaaaaaaaaaa", True),
        ("lw-is-my-name-1", True),
        ("x" * 129, True),
        ("牧场冬季转场2026", False),
        ("correct horse battery", False),
    ],
)
def test_password_rules(password, refused):
    if refused:
        with pytest.raises(WeakPassword) as weak:
            check_rules(password, "lw")
        assert weak.value.message_zh and weak.value.message_en
    else:
        check_rules(password, "lw")


def test_the_sign_in_log_is_append_only(sessions):
    sign_in(sessions, "wrong-password")
    for statement in ("UPDATE auth_events SET action = 'login'", "DELETE FROM auth_events"):
        with pytest.raises(DBAPIError), sessions.begin() as session:
            session.execute(text(statement))
    assert events(sessions) == [("login_failed", "failure 1")]
