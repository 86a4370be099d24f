"""What notify owns: one inbox item per unit a case reached, and what each was told about it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lianhu.db import UtcDateTime, make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata()


class InboxItem(Base):
    __tablename__ = "inbox_items"
    # A redelivered or replayed event must never give a unit a second copy of the same case.
    __table_args__ = (
        UniqueConstraint("case_id", "org_unit_id", name="uq_inbox_items_case_unit"),
        # Likewise one item per task and unit (a case item has no task_id, a task item no case_id).
        UniqueConstraint("task_id", "org_unit_id", name="uq_inbox_items_task_unit"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # "case" (a routed report) or "task" (a task sent down: category is the task's kind, summary
    # its title, deadline_at its due time, state open / answered / cancelled).
    kind: Mapped[str] = mapped_column(String(8), default="case", server_default="case")
    event_id: Mapped[str] = mapped_column(String(36))
    report_id: Mapped[str | None] = mapped_column(String(36), index=True)
    case_id: Mapped[str | None] = mapped_column(String(36), index=True)
    task_id: Mapped[str | None] = mapped_column(String(36))
    org_unit_id: Mapped[int] = mapped_column(Integer, index=True)
    org_unit_name: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[int | None] = mapped_column(Integer)
    person_name: Mapped[str | None] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    position: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(32))
    urgency: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    deadline_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The case's revision this item shows: a transcript routes a voice report again, and every
    # item of the case follows the newest revision.
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    has_audio: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    transcription: Mapped[str | None] = mapped_column(String(16))
    # The case's state as of its latest change (``seq`` of case_updated; 0 before any).
    state: Mapped[str | None] = mapped_column(String(20))
    seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the unit was last told (a reminder, an escalation, the resolution); the item is unread again.
    attention: Mapped[str | None] = mapped_column(String(16))
    # When it was last delivered or told something: the inbox lists the freshest first.
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class InboxNotice(Base):
    """One thing a unit was told about a case (a reminder, an escalation, a resolution): once per
    case, unit and key, whatever happens to the events carrying it."""

    __tablename__ = "inbox_notices"
    __table_args__ = (
        UniqueConstraint("case_id", "org_unit_id", "key", name="uq_inbox_notices_case_unit_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(36))
    org_unit_id: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    # As what the unit was told: the handler, a copy, a supervisor (the county), the reporter.
    role: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
