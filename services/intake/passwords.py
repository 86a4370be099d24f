"""Passwords: argon2id hashes, the rules a new password must meet, and the old scrypt hashes upgraded.

argon2-cffi keeps its parameters in each hash, so they can be raised later; ``needs_rehash`` tells
the login path to store a stronger hash the next time the password is known. Hashes made by the
first release (scrypt, ``scrypt$n$r$p$salt$digest``) still verify and are replaced at next login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

LEGACY_SCHEME = "scrypt"
MIN_LENGTH = 10
MAX_LENGTH = 128  # a bound on hashing work: a megabyte "password" must not cost a megabyte of KDF
# The passwords every guessing list starts with; a real deployment adds its own (or a breach list).
COMMON = frozenset(
    {
        "1234567890",
        "12345678910",
        "0123456789",
        "1111111111",
        "password123",
        "qwertyuiop",
        "abcdefghij",
        "a123456789",
        "123456789a",
        "woaini1314",
        "iloveyou12",
        "1qaz2wsx3edc",
        "qwerty1234",
    }
)

_hasher = PasswordHasher()


class WeakPassword(ValueError):
    """Why a password is refused, in Chinese and English."""

    def __init__(self, message_zh: str, message_en: str):
        super().__init__(message_en)
        self.message_zh = message_zh
        self.message_en = message_en


def check_rules(password: str, username: str) -> None:
    """Raise WeakPassword unless ``password`` is fit to be set for ``username``."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"密码至少{MIN_LENGTH}位", f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"密码最多{MAX_LENGTH}位", f"a password has at most {MAX_LENGTH} characters")
    lowered = password.lower()
    if lowered in COMMON or len(set(password)) < 4:
        raise WeakPassword("密码过于常见或简单", "this password is too common or too simple")
    if username and username.lower() in lowered:
        raise WeakPassword("密码不能包含用户名", "a password must not contain the username")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, stored: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    if stored.startswith(LEGACY_SCHEME + "$"):
        return _verify_scrypt(password, stored)
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return stored.startswith(LEGACY_SCHEME + "$") or _hasher.check_needs_rehash(stored)


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# Compared against when the username is unknown, so a wrong name costs as long as a wrong password.
DUMMY_HASH = hash_password(os.urandom(8).hex())
