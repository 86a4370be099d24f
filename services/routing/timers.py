"""The durable clock's poller: find the cases with a timer due and fire each timer exactly once.

Due times live in the database (``case_timers``, and each case's earliest in ``cases.next_due_at``),
so a restart loses nothing: a poller that starts late fires, in order, whatever fell due meanwhile.

Claiming: on PostgreSQL a pass locks its due cases ``FOR UPDATE SKIP LOCKED``, so several routing
processes share the work without ever taking the same case, and an action on a case waits for the
pass holding it (both lock the case row, nothing else, so they cannot deadlock). SQLite has one
writer: a pass holds the database. Beyond the lock, firing is a compare-and-set of the timer's
``done_at`` from NULL, and (case, stage, kind) is unique: a second firing is impossible, not just
unlikely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from services.routing.casework import Casework, pending_timers
from services.routing.clock import AUTOCLOSE, DUE, OVERDUE_PREFIX, REMIND_PREFIX, CaseClock
from services.routing.lifecycle import OPEN
from services.routing.models import Case, CaseTimer

# Cases per transaction: short enough that an action never waits long for a pass holding its case.
BATCH = 200


@dataclass
class Pass:
    cases: int = 0
    fired: int = 0
    skipped: int = 0
    events: list[str] = field(default_factory=list)


def due_cases(now: datetime, limit: int, lock: bool) -> Select:
    """The poller's scan: the ids of the cases with a timer due, earliest first, served by the
    partial index on ``next_due_at``; locked and skipping cases another poller holds on PostgreSQL."""
    query = select(Case.id).where(Case.next_due_at <= now).order_by(Case.next_due_at).limit(limit)
    return query.with_for_update(skip_locked=True) if lock else query


def applies(case: Case, timer: CaseTimer) -> bool:
    """A timer of an earlier stage, or one the case's state has made moot, is skipped."""
    if timer.stage != case.stage:
        return False
    if timer.kind == AUTOCLOSE:
        return case.state == "resolved"
    return case.state in OPEN


def claim(session: Session, timer: CaseTimer, now: datetime, outcome: str) -> bool:
    done = session.execute(
        update(CaseTimer)
        .where(CaseTimer.id == timer.id, CaseTimer.done_at.is_(None))
        .values(done_at=now, outcome=outcome)
    )
    return done.rowcount == 1


def fire(work: Casework, case: Case, timer: CaseTimer) -> None:
    if timer.kind.startswith(REMIND_PREFIX):
        work.remind(case, timer)
    elif timer.kind == DUE:
        work.deadline_passed(case, timer)
    elif timer.kind.startswith(OVERDUE_PREFIX):
        work.overdue(case, timer)
    elif timer.kind == AUTOCLOSE:
        work.autoclose(case)
    else:
        raise ValueError(f"unknown timer kind {timer.kind!r}")


def fire_due(sessions: sessionmaker, clock: CaseClock, now: datetime, limit: int = BATCH) -> Pass:
    """One pass: up to ``limit`` due cases, every timer of theirs due by ``now``, in one transaction."""
    result = Pass()
    with sessions.begin() as session:
        lock = session.bind.dialect.name == "postgresql"
        claimed = session.scalars(due_cases(now, limit, lock)).all()
        if not claimed:
            return result
        cases = session.scalars(
            select(Case)
            .where(Case.id.in_(claimed))
            .options(selectinload(Case.recipients))
            .order_by(Case.next_due_at)
        ).all()
        work = Casework(session, clock, now)
        timers: dict[str, list[CaseTimer]] = {}
        for timer in pending_timers(session, [case.id for case in cases], due_by=now):
            timers.setdefault(timer.case_id, []).append(timer)
        for case in cases:
            due = timers.get(case.id, [])
            # After an outage a reminder is moot once its stage's deadline has passed too.
            deadline_passed = any(t.kind == DUE and t.stage == case.stage for t in due)
            published = len(work.published)
            for timer in due:
                moot = deadline_passed and timer.kind.startswith(REMIND_PREFIX)
                if not applies(case, timer) or moot:
                    result.skipped += claim(session, timer, now, "skipped")
                elif claim(session, timer, now, "fired"):
                    result.fired += 1
                    fire(work, case, timer)
            if len(work.published) == published:  # nothing fired: settle did not move next_due_at
                work.refresh_next_due(case)
        result.cases = len(cases)
        result.events = work.published
    return result
