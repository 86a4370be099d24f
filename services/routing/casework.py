"""Changes to cases, each inside the caller's transaction: the new state, the timeline entry, the
stage with its fresh deadline and timers, and the ``case_updated`` event naming whom to tell.

The actions users take and the clock's own moves (reminders, escalation, closing) both go through
:class:`Casework`, so a case changes the same way whoever moves it. Every change ends in
:meth:`Casework.settle`: the case's next due time is brought up to date and its event goes into the
outbox, committed with the change and published after the commit.

Notice keys name what a unit is told about (``s3:escalated``, ``s2:remind:48``): notify keeps one
per case, unit and key, so nobody hears the same thing twice even if an event is published twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from lianhu.bus import enqueue
from lianhu.events import CaseUpdated, Notice, Recipient, UnitRef
from services.routing.clock import AUTOCLOSE, DUE, OVERDUE_PREFIX, REMIND_PREFIX, CaseClock
from services.routing.escalation import REASSIGNED_REASON, REROUTED_REASON
from services.routing.models import Case, CaseEvent, CaseRecipient, CaseTimer, outbox

# case_updated event ids are derived from the case and its change count: a re-published change is
# the same event.
EVENT_NAMESPACE = uuid.UUID("5d0c3f7e-6b1a-4c55-9a43-1f3e2c7b9a10")
CLOCK_ACTOR = "routing"


def event_id_of(case_id: str, seq: int) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{case_id}:{seq}"))


def entry_json(row: CaseEvent) -> dict:
    """One timeline entry as the API shows it: when, what, who, and the details (note, state, ...)."""
    return {"at": row.at.isoformat(), "kind": row.kind, "actor": row.actor, **row.detail}


def recipient(case_json: dict) -> Recipient:
    return Recipient.model_validate(case_json)


def tell(to: dict | Recipient, key: str, kind: str, role: str, note: str = "") -> Notice:
    to = to if isinstance(to, Recipient) else recipient(to)
    return Notice(
        key=key, kind=kind, role=role, position=to.position, org_unit=to.org_unit, person=to.person, note=note
    )


def tell_reporter(case: Case, key: str, kind: str, note: str = "") -> list[Notice]:
    """The reporter hears through their own unit's inbox (a liaison worker has one)."""
    if case.reporter_unit is None:
        return []
    unit = UnitRef.model_validate(case.reporter_unit)
    return [Notice(key=key, kind=kind, role="reporter", position="reporter", org_unit=unit, note=note)]


def pending_timers(
    session: Session, case_ids: Iterable[str], due_by: datetime | None = None
) -> list[CaseTimer]:
    query = select(CaseTimer).where(CaseTimer.case_id.in_(list(case_ids)), CaseTimer.done_at.is_(None))
    if due_by is not None:
        query = query.where(CaseTimer.due_at <= due_by)
    return list(session.scalars(query.order_by(CaseTimer.due_at, CaseTimer.id)))


@dataclass
class Casework:
    session: Session
    clock: CaseClock
    now: datetime
    # Ids of the events this unit of work put into the outbox, to publish once it commits.
    published: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------------------ building blocks

    def entry(self, case: Case, kind: str, actor: str, note: str = "", **detail) -> CaseEvent:
        row = CaseEvent(
            case_id=case.id,
            at=self.now,
            kind=kind,
            actor=actor,
            detail={"note": note, "state": case.state, "stage": case.stage, **detail},
        )
        self.session.add(row)
        return row

    def settle(
        self, case: Case, change: str, actor: str, note: str = "", notices: Iterable[Notice] = ()
    ) -> None:
        """Finish a change: the next due time from the timers left, and the event to publish."""
        self.refresh_next_due(case)
        case.seq += 1
        event = CaseUpdated(
            event_id=event_id_of(case.id, case.seq),
            occurred_at=self.now,
            case_id=case.id,
            report_id=case.report_id,
            seq=case.seq,
            change=change,
            actor=actor,
            note=note,
            state=case.state,
            stage=case.stage,
            category=case.category,
            urgency=case.urgency,
            summary=case.summary,
            deadline_at=case.deadline_at,
            handler=recipient(case.handler),
            notices=list(notices),
            township=case.township,
            overdue=case.overdue_at is not None,
        )
        enqueue(self.session, outbox, event)
        self.published.append(event.event_id)

    def refresh_next_due(self, case: Case) -> None:
        self.session.flush()
        case.next_due_at = self.session.scalar(
            select(func.min(CaseTimer.due_at)).where(
                CaseTimer.case_id == case.id, CaseTimer.done_at.is_(None)
            )
        )

    def add_timer(self, case: Case, kind: str, due: datetime) -> None:
        self.session.add(CaseTimer(case_id=case.id, stage=case.stage, kind=kind, due_at=due))

    def schedule_stage(self, case: Case) -> None:
        for kind, due in self.clock.stage_timers(case.urgency, case.stage_started_at, case.deadline_at):
            self.add_timer(case, kind, due)

    def cancel_timers(self, case: Case) -> None:
        self.session.execute(
            update(CaseTimer)
            .where(CaseTimer.case_id == case.id, CaseTimer.done_at.is_(None))
            .values(done_at=self.now, outcome="cancelled")
        )

    def reschedule_stage(self, case: Case) -> None:
        """The stage's timers for a deadline that moved: points already fired stay fired (a handler is
        reminded once per point), the others move or go."""
        wanted = dict(self.clock.stage_timers(case.urgency, case.stage_started_at, case.deadline_at))
        existing = self.session.scalars(
            select(CaseTimer).where(CaseTimer.case_id == case.id, CaseTimer.stage == case.stage)
        ).all()
        for timer in existing:
            if timer.done_at is not None:
                wanted.pop(timer.kind, None)
            elif timer.kind in wanted:
                timer.due_at = wanted.pop(timer.kind)
            else:
                timer.done_at, timer.outcome = self.now, "cancelled"
        for kind, due in wanted.items():
            self.add_timer(case, kind, due)

    def begin_stage(self, case: Case, handler: Recipient, ladder: list[Recipient]) -> dict:
        """Hand the case to ``handler`` with a fresh deadline and timers; returns the previous handler."""
        previous = case.handler
        self.cancel_timers(case)
        case.stage += 1
        case.stage_started_at = self.now
        case.deadline_at = self.clock.deadline(case.category, case.urgency, self.now)
        case.handler = handler.model_dump(mode="json")
        case.handler_unit_id = handler.org_unit.id
        case.ladder = [rung.model_dump(mode="json") for rung in ladder]
        rows = {row.org_unit_id: row for row in case.recipients}
        for row in rows.values():
            if row.role == "handler" and row.org_unit_id != handler.org_unit.id:
                row.role, row.detail = "copy", {**row.detail, "role": "copy"}
        row = rows.get(handler.org_unit.id)
        if row is None:
            case.recipients.append(
                CaseRecipient(
                    org_unit_id=handler.org_unit.id,
                    role="handler",
                    position=handler.position,
                    added_at=self.now,
                    detail=case.handler,
                )
            )
        else:
            row.role, row.detail = "handler", case.handler
        self.schedule_stage(case)
        return previous

    def _stage_key(self, case: Case, kind: str) -> str:
        return f"s{case.stage}:{kind}"

    # ---------------------------------------------------------------------------------- transitions

    def step(self, case: Case, state: str, kind: str, actor: str, note: str = "") -> CaseEvent:
        """A move that tells nobody in particular: acknowledged, started (every inbox shows the state)."""
        case.state = state
        row = self.entry(case, kind, actor, note)
        self.settle(case, kind, actor, note)
        return row

    def comment(self, case: Case, actor: str, actor_unit: int | None, note: str) -> CaseEvent:
        row = self.entry(case, "comment", actor, note)
        key = f"{case.seq + 1}:comment"
        notices = (
            []
            if actor_unit == case.handler_unit_id
            else [tell(case.handler, key, "comment", "handler", note)]
        )
        if actor != case.reporter_username:
            notices += tell_reporter(case, key, "comment", note)
        self.settle(case, "comment", actor, note, notices)
        return row

    def resolve(self, case: Case, actor: str, note: str) -> CaseEvent:
        case.state, case.resolved_at = "resolved", self.now
        self.cancel_timers(case)
        self.add_timer(case, AUTOCLOSE, self.clock.confirm_by(self.now))
        row = self.entry(case, "resolved", actor, note)
        self.settle(
            case,
            "resolved",
            actor,
            note,
            tell_reporter(case, self._stage_key(case, "resolved"), "resolved", note),
        )
        # 并单: every reporter of a duplicate hears the same result through their own case.
        for duplicate in self.session.scalars(
            select(Case).where(Case.merged_into == case.report_id).with_for_update()
        ):
            duplicate.resolved_at = self.now
            self.entry(duplicate, "resolved", actor, note, via=case.report_id)
            key = f"resolved:{case.id}:s{case.stage}"
            self.settle(duplicate, "resolved", actor, note, tell_reporter(duplicate, key, "resolved", note))
        return row

    def escalate(self, case: Case, actor: str, note: str, overdue: bool = False) -> CaseEvent:
        """One rung up the ladder with a fresh deadline; the county's turn also tells the centre."""
        rung, *rest = [recipient(item) for item in case.ladder]
        previous = self.begin_stage(case, rung, rest)
        case.state = "escalated"
        case.escalations += 1
        row = self.entry(
            case,
            "escalated",
            actor,
            note,
            overdue=overdue,
            from_unit=previous["org_unit"],
            to_unit=case.handler["org_unit"],
        )
        key = self._stage_key(case, "escalated")
        notices = [
            tell(rung, key, "escalated", "handler", note),
            tell(previous, key, "escalated", "copy", note),
        ]
        if rung.org_unit.kind == "county":
            notices += [
                tell(o, key, "escalated", "copy", note)
                for o in case.overseers
                if o["org_unit"]["kind"] == "governance_centre"
            ]
        self.settle(case, "escalated", actor, note, notices)
        return row

    def give_back(self, case: Case, actor: str, note: str, reason: str) -> CaseEvent:
        """退单: the handler returns the case. "Cannot solve at this level" climbs the ladder; "not
        ours" goes to the governance centre (or, from the centre, the county command) to dispatch again."""
        case.state = "returned"
        row = self.entry(case, "returned", actor, note, reason=reason, from_unit=case.handler["org_unit"])
        if reason == "cannot_solve":
            self.escalate(case, CLOCK_ACTOR, note)
            return row
        dispatcher = self.dispatcher_for(case)
        handler = recipient(dispatcher).model_copy(update={"role": "handler", "reason": REROUTED_REASON})
        ladder = [recipient(rung) for rung in case.ladder if rung["org_unit"]["kind"] == "department"]
        previous = self.begin_stage(case, handler, ladder)
        self.entry(
            case,
            "rerouted",
            CLOCK_ACTOR,
            note,
            from_unit=previous["org_unit"],
            to_unit=case.handler["org_unit"],
        )
        key = self._stage_key(case, "assigned")
        self.settle(case, "rerouted", actor, note, [tell(handler, key, "assigned", "handler", note)])
        return row

    def dispatcher_for(self, case: Case) -> dict | None:
        """Who dispatches a case returned as "not ours" again: the governance centre, or the county
        command when the centre itself returns it; None when there is neither."""
        kinds = (
            ("county",)
            if case.handler["org_unit"]["kind"] == "governance_centre"
            else ("governance_centre", "county")
        )
        for kind in kinds:
            for overseer in case.overseers:
                if (
                    overseer["org_unit"]["kind"] == kind
                    and overseer["org_unit"]["id"] != case.handler_unit_id
                ):
                    return overseer
        return None

    def reassign(
        self, case: Case, actor: str, note: str, handler: Recipient, ladder: list[Recipient]
    ) -> CaseEvent:
        handler = handler.model_copy(update={"role": "handler", "reason": REASSIGNED_REASON})
        previous = self.begin_stage(case, handler, ladder)
        case.state = "reassigned"
        row = self.entry(
            case, "reassigned", actor, note, from_unit=previous["org_unit"], to_unit=case.handler["org_unit"]
        )
        key = self._stage_key(case, "reassigned")
        notices = [
            tell(handler, key, "reassigned", "handler", note),
            tell(previous, key, "reassigned", "copy", note),
        ]
        self.settle(case, "reassigned", actor, note, notices)
        return row

    def merge(self, duplicate: Case, original: Case, actor: str, note: str) -> CaseEvent:
        duplicate.state, duplicate.merged_into = "merged", original.report_id
        self.cancel_timers(duplicate)
        row = self.entry(duplicate, "merged", actor, note, into=original.report_id)
        key = self._stage_key(duplicate, "merged")
        notices = [tell(duplicate.handler, key, "merged", "handler", note)]
        notices += tell_reporter(duplicate, key, "merged", note)
        self.settle(duplicate, "merged", actor, note, notices)
        self.entry(original, "merged", actor, note, duplicate=duplicate.report_id)
        joined = [tell(original.handler, f"merged:{duplicate.id}", "merged", "handler", note)]
        self.settle(original, "merged", actor, note, joined)
        return row

    def confirm(self, case: Case, actor: str, note: str) -> CaseEvent:
        return self.close(case, "confirmed", actor, note)

    def close(self, case: Case, kind: str, actor: str, note: str) -> CaseEvent:
        """``confirmed`` by the reporter, or ``closed`` by the clock when the window passed."""
        case.state, case.closed_at = "closed", self.now
        self.cancel_timers(case)
        row = self.entry(case, kind, actor, note)
        self.settle(
            case,
            kind,
            actor,
            note,
            [tell(case.handler, self._stage_key(case, "closed"), kind, "handler", note)],
        )
        return row

    def reopen(self, case: Case, actor: str, note: str) -> CaseEvent:
        handler = recipient(case.handler)
        self.begin_stage(case, handler, [recipient(rung) for rung in case.ladder])
        case.state, case.resolved_at = "reopened", None
        row = self.entry(case, "reopened", actor, note)
        self.settle(
            case,
            "reopened",
            actor,
            note,
            [tell(handler, self._stage_key(case, "reopened"), "reopened", "handler", note)],
        )
        return row

    def rate(self, case: Case, actor: str, note: str, rating: int) -> CaseEvent:
        case.rating, case.rating_note, case.rated_at = rating, note or None, self.now
        row = self.entry(case, "rated", actor, note, rating=rating)
        self.settle(case, "rated", actor, note, [tell(case.handler, "rated", "rated", "handler", note)])
        return row

    # ----------------------------------------------------------------------------- the clock's moves

    def remind(self, case: Case, timer: CaseTimer) -> None:
        hours = timer.kind.removeprefix(REMIND_PREFIX)
        note = f"距办理期限还有 {hours} 小时 / {hours} h to the deadline"
        self.entry(
            case, "reminder", CLOCK_ACTOR, note, timer=timer.kind, deadline_at=case.deadline_at.isoformat()
        )
        notice = tell(case.handler, self._stage_key(case, timer.kind), "reminder", "handler", note)
        self.settle(case, "reminder", CLOCK_ACTOR, note, [notice])

    def deadline_passed(self, case: Case, timer: CaseTimer) -> None:
        """Unresolved at the deadline: up one rung, or (at the top) overdue reminders from now on."""
        case.overdue_at = case.overdue_at or self.now
        note = "逾期未办结 / not resolved by the deadline"
        if case.ladder:
            self.escalate(case, CLOCK_ACTOR, note, overdue=True)
        else:
            self.overdue(case, timer, note)

    def overdue(self, case: Case, timer: CaseTimer, note: str = "") -> None:
        """催办 at the top of the ladder: the handler and the county hear it, and again later."""
        note = note or "仍未办结 / still not resolved"
        count = 1 if timer.kind == DUE else int(timer.kind.removeprefix(OVERDUE_PREFIX)) + 1
        self.add_timer(case, *self.clock.overdue_reminder(case.deadline_at, count))
        self.entry(case, "overdue", CLOCK_ACTOR, note, timer=timer.kind)
        key = self._stage_key(case, timer.kind)
        notices = [tell(case.handler, key, "overdue", "handler", note)]
        notices += [
            tell(o, key, "overdue", "supervisor", note)
            for o in case.overseers
            if o["org_unit"]["id"] != case.handler_unit_id
        ]
        self.settle(case, "overdue", CLOCK_ACTOR, note, notices)

    def autoclose(self, case: Case) -> None:
        self.close(case, "closed", CLOCK_ACTOR, "确认期已过，自动办结 / the confirmation window passed")
