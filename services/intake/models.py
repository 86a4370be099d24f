"""What the gateway owns: accounts, submitted reports, idempotency keys and its outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lianhu.bus import outbox_table
from lianhu.db import UtcDateTime, make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata()


class Account(Base):
    __tablename__ = "accounts"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    display_name: Mapped[str] = mapped_column(String(100), default="")
    person_id: Mapped[int | None] = mapped_column(Integer)
    org_unit_id: Mapped[int | None] = mapped_column(Integer)
    org_unit_name: Mapped[str] = mapped_column(String(100), default="")
    township: Mapped[str] = mapped_column(String(50), default="")
    # The language of the account's voice reports when the phone says "auto": bo or zh.
    language: Mapped[str] = mapped_column(String(8), default="zh", server_default="zh")
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Lockout: failed sign-ins in a row, and until when the account refuses to sign in.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    password_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Report(Base):
    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reporter_username: Mapped[str] = mapped_column(ForeignKey("accounts.username"), index=True)
    text: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(8))
    household_id: Mapped[int | None] = mapped_column(Integer)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # A voice report's recording, in the blob store under its SHA-256.
    audio_sha256: Mapped[str | None] = mapped_column(String(64))
    audio_type: Mapped[str | None] = mapped_column(String(32))
    audio_bytes: Mapped[int | None] = mapped_column(Integer)
    audio_seconds: Mapped[float | None] = mapped_column(Float)


class IdempotencyKey(Base):
    """A client's key and the response it got; written in the same transaction as its report, so a
    key never exists without the report it stands for."""

    __tablename__ = "idempotency_keys"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class RefreshToken(Base):
    """A long-lived sign-in a phone keeps, stored only as its SHA-256.

    Each use replaces it with a new one in the same ``family``; presenting a used or revoked token
    again means it was copied, and the whole family is revoked (the phone signs in again).
    """

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family: Mapped[str] = mapped_column(String(36), index=True)
    # A deleted account's sign-ins go with it.
    username: Mapped[str] = mapped_column(ForeignKey("accounts.username", ondelete="CASCADE"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuthEvent(Base):
    """Append-only (database triggers refuse UPDATE and DELETE): sign-ins, lockouts, account changes.

    Never a password or a token: who, what, from where, about whom, why.
    """

    __tablename__ = "auth_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


outbox = outbox_table(Base.metadata)
