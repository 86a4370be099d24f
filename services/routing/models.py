"""What routing owns: cases and their recipients."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from lianhu.db import UtcDateTime, make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata()


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # One case per report: a redelivered report_submitted finds its case instead of making another.
    report_id: Mapped[str] = mapped_column(String(36), unique=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    urgency: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(16))
    rules_version: Mapped[str] = mapped_column(String(40))
    explanation: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    reporter_username: Mapped[str] = mapped_column(String(64), index=True)
    household_id: Mapped[int | None] = mapped_column(Integer)
    handler_unit_id: Mapped[int] = mapped_column(Integer, index=True)
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    routed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    deadline_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # The report_routed event exactly as first emitted: a redelivery re-emits it unchanged, so
    # consumers see the same event id and dedupe.
    routed_event: Mapped[dict] = mapped_column(JSON)
    # A voice report: pending until the speech service answers, then done (with the transcript) or
    # failed (the recording stays the report).
    transcription: Mapped[str | None] = mapped_column(String(16))
    # The report's own words, re-read with its transcript when that arrives.
    text: Mapped[str | None] = mapped_column(Text)
    transcript: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    recipients: Mapped[list[CaseRecipient]] = relationship(
        back_populates="case", order_by="CaseRecipient.id", cascade="all, delete-orphan"
    )


class CaseRecipient(Base):
    __tablename__ = "case_recipients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    org_unit_id: Mapped[int] = mapped_column(Integer, index=True)
    role: Mapped[str] = mapped_column(String(16))
    position: Mapped[str] = mapped_column(String(32))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime)
    detail: Mapped[dict] = mapped_column(JSON)

    case: Mapped[Case] = relationship(back_populates="recipients")


class CaseEvent(Base):
    """The case's timeline: what happened to it, when, by whom (a person or a service), and why."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON)
