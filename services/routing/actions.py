"""Users' actions on cases: whether this user may take this action now, and taking it, once.

The service reads what it needs from the registry first (who is above the handler, the unit a case
is reassigned to), then :func:`take` does the rest in one transaction with the case row locked: it
checks again against the case as it is now, applies the action through :class:`Casework`, and
records the action's id, so a retried request gets its first outcome back instead of acting twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lianhu.events import CaseAction, Recipient
from services.routing import escalation, lifecycle
from services.routing.casework import Casework, entry_json
from services.routing.classify import Rules
from services.routing.clock import CaseClock
from services.routing.escalation import ASSIGNABLE_KINDS, REASSIGNED_REASON, ladder_above, within_reach
from services.routing.lifecycle import OPEN, Refused
from services.routing.models import Case, CaseEvent
from services.routing.recipients import recipient_of


class Invalid(Exception):
    """The request is malformed or names something the actor cannot reach (422)."""

    def __init__(self, field: str, message_zh: str, message_en: str):
        super().__init__(message_en)
        self.problem = {"field": field, "message_zh": message_zh, "message_en": message_en}


@dataclass(frozen=True)
class Actor:
    username: str
    role: str
    org_unit_id: int | None

    @classmethod
    def parse(cls, value: object) -> Actor | None:
        if not isinstance(value, dict):
            return None
        username, role, unit = value.get("username"), value.get("role"), value.get("org_unit_id")
        if not isinstance(username, str) or not username or not isinstance(role, str):
            return None
        if unit is not None and (not isinstance(unit, int) or isinstance(unit, bool)):
            return None
        return cls(username, role, unit)


def parse_action(value: object) -> CaseAction:
    try:
        return CaseAction.model_validate(value)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "action"
        raise Invalid(where, "请求内容不正确", f"{where}: {first['msg']}") from None


@dataclass(frozen=True)
class Assignment:
    """A unit a case may be handed to, with the rungs above it."""

    handler: Recipient
    ladder: list[Recipient]


@dataclass(frozen=True)
class Surroundings:
    """What the registry said about the case's units, read before the write transaction."""

    handler_unit_id: int
    above: frozenset[int]
    assignment: Assignment | None = None
    original_handler_unit_id: int | None = None
    original_above: frozenset[int] = field(default_factory=frozenset)
    # The case lies in the actor's part of the tree: an action not theirs is forbidden, not unknown.
    sees_area: bool = False


@dataclass
class Outcome:
    answer: dict
    events: list[str]


def assignment_for(actor: Actor, unit_id: int, context: dict, department: dict | None) -> Assignment:
    """The unit a case is reassigned to, from the registry's context of that unit; it must be a unit
    that handles cases and lie in the actor's part of the tree."""
    chain = context.get("chain") or []
    centre = context.get("governance_centre")
    centre_id = centre["unit"]["id"] if centre else None
    if (
        not chain
        or chain[0]["unit"]["id"] != unit_id
        or not within_reach(actor.org_unit_id, chain, centre_id)
    ):
        raise Invalid("unit_id", "辖区内没有该单位", f"no unit {unit_id} in your area")
    if chain[0]["unit"]["kind"] not in ASSIGNABLE_KINDS:
        raise Invalid("unit_id", "该单位不承办事项", "that unit does not handle cases")
    handler = recipient_of(chain[0], "handler", REASSIGNED_REASON)
    return Assignment(handler, ladder_above(handler, chain, department))


class RegistryReads(Protocol):
    """The registry's answers an action needs (RPC in the service, a stand-in in tests)."""

    def reporter_context(self, unit_id: int, household_id: int | None = None) -> dict: ...

    def department(self, code: str) -> dict | None: ...


def above_handler(registry: RegistryReads, handler_unit_id: int) -> frozenset[int]:
    context = registry.reporter_context(handler_unit_id)
    centre = context.get("governance_centre")
    return frozenset(
        escalation.units_above(context.get("chain") or [], centre["unit"]["id"] if centre else None)
    )


def surroundings(
    case: Case,
    original: Case | None,
    actor: Actor,
    request: CaseAction,
    registry: RegistryReads,
    rules: Rules,
    sees_area: bool = False,
) -> Surroundings:
    """What the registry says about the units around the case (and ``original``, for a merge);
    :func:`take` checks it all again against the case as it is then."""
    assignment = None
    if request.action == "reassign":
        code = rules.department_for(case.category)
        department = registry.department(code) if code else None
        try:
            assignment = assignment_for(
                actor, request.unit_id, registry.reporter_context(request.unit_id), department
            )
        except Invalid:
            assignment = None  # refused in take, once the actor's standing is known
    if original is None:
        return Surroundings(
            case.handler_unit_id,
            above_handler(registry, case.handler_unit_id),
            assignment,
            sees_area=sees_area,
        )
    return Surroundings(
        case.handler_unit_id,
        above_handler(registry, case.handler_unit_id),
        assignment,
        original.handler_unit_id,
        above_handler(registry, original.handler_unit_id),
        sees_area,
    )


def fingerprint(actor: Actor, request: CaseAction) -> str:
    asked = request.model_dump(exclude={"action_id"})
    return hashlib.sha256(json.dumps([actor.username, asked], sort_keys=True).encode()).hexdigest()


def _answer(case: Case, action: str, row: CaseEvent, replayed: bool) -> dict:
    return {
        "report_id": case.report_id,
        "case_id": case.id,
        "action": action,
        "state": row.detail["state"],
        "stage": row.detail["stage"],
        "entry": entry_json(row),
        "replayed": replayed,
    }


def find_replay(session: Session, case: Case, request: CaseAction, print_: str) -> dict | None:
    """The first outcome of this action_id on this case; the same id for another request is refused."""
    if request.action_id is None:
        return None
    row = session.scalar(
        select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.action_id == request.action_id)
    )
    if row is None:
        return None
    if row.fingerprint != print_:
        raise Invalid("action_id", "该请求编号已用于另一操作", "this action_id was used for another action")
    return _answer(case, request.action, row, replayed=True)


def _locked(session: Session, report_ids: list[str]) -> dict[str, Case]:
    # One statement, in id order: two merges of the same pair cannot lock in opposite orders.
    rows = session.scalars(
        select(Case).where(Case.report_id.in_(report_ids)).order_by(Case.id).with_for_update()
    )
    return {case.report_id: case for case in rows}


def take(
    sessions: sessionmaker,
    report_id: str,
    actor: Actor,
    request: CaseAction,
    around: Surroundings,
    clock: CaseClock,
    now: datetime,
) -> Outcome:
    print_ = fingerprint(actor, request)
    with sessions.begin() as session:
        locked = _locked(session, [report_id, *([request.into] if request.into else [])])
        case = locked.get(report_id)
        if case is None:
            raise Refused("not_found", "no such report in your area")
        replay = find_replay(session, case, request, print_)
        if replay is not None:
            return Outcome(replay, [])
        if case.handler_unit_id != around.handler_unit_id:
            raise Refused("conflict", "the case has just moved to another unit: read it again")
        involved = {row.org_unit_id for row in case.recipients}
        parties = escalation.parties(
            actor.org_unit_id,
            actor.username,
            handler_id=case.handler_unit_id,
            reporter_username=case.reporter_username,
            above=set(around.above),
            involved=involved,
        )
        lifecycle.check(request.action, parties, case.state, around.sees_area)
        work = Casework(session, clock, now)
        row = _apply(work, case, actor, request, around, locked)
        # The action's entry shows the state it left the case in (a return may end escalated).
        row.detail = {**row.detail, "state": case.state, "stage": case.stage}
        row.action_id, row.fingerprint = request.action_id, print_
        session.flush()
        return Outcome(_answer(case, request.action, row, replayed=False), work.published)


def _apply(
    work: Casework,
    case: Case,
    actor: Actor,
    request: CaseAction,
    around: Surroundings,
    locked: dict[str, Case],
) -> CaseEvent:
    action, note, who = request.action, request.note.strip(), actor.username
    if action in lifecycle.STEPS:
        return work.step(case, *lifecycle.STEPS[action], who, note)
    if action == "comment":
        return work.comment(case, who, actor.org_unit_id, note)
    if action == "resolve":
        return work.resolve(case, who, note)
    if action == "escalate" or (action == "return" and request.reason == "cannot_solve"):
        if not case.ladder:
            raise Refused("conflict", "the case is at the top of the ladder: reassign or resolve it")
        if action == "escalate":
            return work.escalate(case, who, note)
        return work.give_back(case, who, note, request.reason)
    if action == "return":
        if work.dispatcher_for(case) is None:
            raise Refused("conflict", "nobody is above this unit to dispatch the case again")
        return work.give_back(case, who, note, request.reason)
    if action == "reassign":
        assignment = around.assignment
        if assignment is None:
            raise Invalid("unit_id", "辖区内没有该单位", f"no unit {request.unit_id} in your area")
        if assignment.handler.org_unit.id == case.handler_unit_id:
            raise Refused("conflict", "that unit already handles the case")
        return work.reassign(case, who, note, assignment.handler, assignment.ladder)
    if action == "merge":
        return work.merge(case, _original(case, actor, request, around, locked), who, note)
    if action == "confirm":
        return work.confirm(case, who, note)
    if action == "reopen":
        return work.reopen(case, who, note)
    if action == "rate":
        if case.rating is not None:
            raise Refused("conflict", "the case has been rated already")
        return work.rate(case, who, note, request.rating)
    raise ValueError(f"unknown action {action!r}")


def _original(
    case: Case, actor: Actor, request: CaseAction, around: Surroundings, locked: dict[str, Case]
) -> Case:
    """The case a duplicate joins: one the actor can see, still open, not the duplicate itself."""
    original = locked.get(request.into)
    unit = actor.org_unit_id
    seen = original is not None and (
        unit == original.handler_unit_id
        or unit in {row.org_unit_id for row in original.recipients}
        or (unit in around.original_above and around.original_handler_unit_id == original.handler_unit_id)
    )
    if not seen or original.id == case.id:
        raise Invalid("into", "辖区内没有该事项", f"no other report {request.into} in your area")
    if original.state not in OPEN:
        raise Refused("conflict", f"the original is {original.state}: a duplicate joins an open case")
    return original
