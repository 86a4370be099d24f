"""What routing owns: cases, their recipients, their timeline, their clock and their outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from lianhu.bus import outbox_table
from lianhu.db import UtcDateTime, make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata()


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        # The poller's scan: only cases with a timer still to fire are in it.
        Index(
            "ix_cases_next_due_at",
            "next_due_at",
            postgresql_where=text("next_due_at IS NOT NULL"),
            sqlite_where=text("next_due_at IS NOT NULL"),
        ),
        # text_pattern_ops: PostgreSQL serves `area_path LIKE '/1/5/%'` from it under any collation.
        Index("ix_cases_area_path", "area_path", postgresql_ops={"area_path": "text_pattern_ops"}),
    )

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

    # Each handler's turn is a stage with its own deadline and timers: routing, every escalation,
    # reassignment, re-routing and reopening starts the next one.
    stage: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Counts the case's published changes (case_updated): consumers keep the highest.
    seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The current handler (a Recipient) and the rungs still above it, nearest first, fixed when the
    # handler got the case: the clock escalates without asking the registry, so a registry outage
    # never stops it.
    handler: Mapped[dict] = mapped_column(JSON)
    ladder: Mapped[list] = mapped_column(JSON)
    # The county command and the governance centre: told when a case at the top is overdue.
    overseers: Mapped[list] = mapped_column(JSON)
    # The reporter's own unit (a liaison worker's unit has an inbox): resolutions reach it.
    reporter_unit: Mapped[dict | None] = mapped_column(JSON)
    # The materialised org path of the unit the matter is in ("/1/5/23/40/"): statistics by subtree.
    area_path: Mapped[str | None] = mapped_column(String(255))
    # The name of that unit's township (乡镇), None for a matter of the county as a whole: the list
    # shows it and the metrics count by it without asking the registry.
    township: Mapped[str | None] = mapped_column(String(64))
    stage_started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The first deadline it missed; a case resolved without one was resolved on time.
    overdue_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    escalations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    rating_note: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # A duplicate joined to its original (并单): the original's report id.
    merged_into: Mapped[str | None] = mapped_column(String(36), index=True)

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
    # A retried action (same action_id) finds the entry it made instead of acting twice.
    __table_args__ = (UniqueConstraint("case_id", "action_id", name="uq_case_events_case_action"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON)
    action_id: Mapped[str | None] = mapped_column(String(255))
    # What was asked, hashed: the same action_id with another request is refused, not replayed.
    fingerprint: Mapped[str | None] = mapped_column(String(64))


class CaseTimer(Base):
    """One point on a case's clock: a reminder, the deadline, an overdue reminder, the auto-close.

    Rows are written when a stage starts and fired by the poller. The unique (case, stage, kind)
    means a point exists once, and firing is a compare-and-set on ``done_at``: two pollers cannot
    both fire it.
    """

    __tablename__ = "case_timers"
    __table_args__ = (UniqueConstraint("case_id", "stage", "kind", name="uq_case_timers_case_stage_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    stage: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # fired, skipped (no longer applies), cancelled (the case moved on first)
    outcome: Mapped[str | None] = mapped_column(String(16))


# --- tasks down (下发任务) -------------------------------------------------------------------------


class Task(Base):
    """A task sent down to every liaison unit under some target units, with a due time.

    Its recipients are resolved from the registry once, when it is sent, and kept: completion and
    overdue counts never depend on the registry (or on later changes to the tree).
    """

    __tablename__ = "tasks"
    # A retried send (the same key from the same account) finds its task instead of sending twice.
    __table_args__ = (UniqueConstraint("sender_username", "request_key", name="uq_tasks_sender_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    answer: Mapped[str] = mapped_column(String(8))
    # open or cancelled; done and overdue are read off the recipients at read time.
    state: Mapped[str] = mapped_column(String(16))
    sender_username: Mapped[str] = mapped_column(String(64))
    sender_role: Mapped[str] = mapped_column(String(32))
    sender_unit_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # {"username", "role", "org_unit"}, as shown.
    sender: Mapped[dict] = mapped_column(JSON)
    # [{"unit": UnitRef, "path"}] as asked, and the townships and villages beneath them (UnitRefs).
    targets: Mapped[list] = mapped_column(JSON)
    units: Mapped[list] = mapped_column(JSON)
    recipient_count: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancel_note: Mapped[str | None] = mapped_column(Text)
    request_key: Mapped[str] = mapped_column(String(255))
    # What was asked, hashed: the same key with another request is refused, not replayed.
    fingerprint: Mapped[str] = mapped_column(String(64))


class TaskRecipient(Base):
    """One liaison unit a task reached, with its latest answer."""

    __tablename__ = "task_recipients"
    __table_args__ = (UniqueConstraint("task_id", "org_unit_id", name="uq_task_recipients_task_unit"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"))
    org_unit_id: Mapped[int] = mapped_column(Integer, index=True)
    # The registry's materialised path ("/1/10/20/30/"): who is above the recipient, read locally.
    area_path: Mapped[str] = mapped_column(String(255))
    # {"org_unit": UnitRef, "person": PersonRef | None}
    unit: Mapped[dict] = mapped_column(JSON)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    answer_id: Mapped[int | None] = mapped_column(Integer)
    # The latest answer's number, summed by the roll-up.
    number: Mapped[float | None] = mapped_column(Float)


class TaskAnswer(Base):
    """Every answer a recipient gave, oldest first: a new one replaces the last, both are kept."""

    __tablename__ = "task_answers"
    __table_args__ = (
        UniqueConstraint("task_id", "org_unit_id", "request_key", name="uq_task_answers_task_unit_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    org_unit_id: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text)
    number: Mapped[float | None] = mapped_column(Float)
    audio: Mapped[dict | None] = mapped_column(JSON)
    answered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    request_key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))


# case_updated events, written with the change that causes them and published after the commit.
outbox = outbox_table(Base.metadata)
