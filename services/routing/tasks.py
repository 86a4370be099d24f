"""Tasks down (下发任务): the county, its departments and the townships send a task (policy outreach, a
damage survey, a headcount) to every liaison worker under some units, with a due time; each worker
answers; completion rolls up per unit.

Who may send: the county command and the governance centre (the whole county), a department (the
whole county too: it serves every township) and a township command (its own townships' villages).
The registry checks that each target lies in the sender's area and names the liaison units beneath
(:class:`Reach`); the task keeps them with their paths, so counting, overdue and "who is above this
recipient" never ask the registry again.

Who sees a task: the sender's unit and the county command and centre (everything), a unit above
some recipients (the part of the task in its subtree), a recipient (the task and her own answers).
Anyone else is told it does not exist. Overdue is read off the clock when asked: a task past its due
time counts each unanswered recipient as overdue; no timer fires for it.

Every write is one transaction with its event in routing's outbox (``task_assigned`` and so on, for
notify), and every write carries a key: the same key again returns the first outcome.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lianhu.bus import enqueue
from lianhu.events import (
    TaskAnswered,
    TaskAssigned,
    TaskCancelled,
    TaskOrder,
    TaskRecipientRef,
    TaskReply,
    UnitRef,
    task_text,
)
from services.routing.actions import Actor, Invalid
from services.routing.escalation import path_ids
from services.routing.lifecycle import Refused
from services.routing.models import Task, TaskAnswer, TaskRecipient, outbox

SENDER_ROLES = frozenset({"county_command", "governance_centre", "department", "township_command"})
# They see every task in the county, as the centre sees every case.
COUNTY_READERS = frozenset({"county_command", "governance_centre"})
DEFAULT_DUE = timedelta(days=7)
LONGEST_DUE = timedelta(days=366)
STATUSES = ("open", "done", "overdue", "cancelled")
ROLES = ("sent", "received")
MAX_PAGE_SIZE = 100
KEY_MAX = 255
CANCEL_NOTE_MAX = 2000
EVENT_NAMESPACE = uuid.UUID("0b6f5a52-3c1e-4f0e-8d7a-5e2b9c4a7d31")


@dataclass
class Outcome:
    answer: dict
    events: list[str]
    replayed: bool = False


def valid_task_id(value: object) -> bool:
    """Task ids are UUIDs: anything else is unknown, and never reaches the database (PostgreSQL
    refuses a NUL in a string instead of answering "no row")."""
    return isinstance(value, str) and len(value) == 36 and all(c in "0123456789abcdef-" for c in value)


def _invalid(field: str, zh: str, en: str, code: str = "invalid_request", **extra) -> Invalid:
    error = Invalid(field, zh, en)
    error.problem.update(code=code, **extra)
    return error


def _parsed(model: type[BaseModel], value: object) -> BaseModel:
    try:
        return model.model_validate(value)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise _invalid(where, "请求内容不正确", f"{where}: {first['msg']}") from None


def parse_order(value: object) -> TaskOrder:
    return _parsed(TaskOrder, value)


def parse_reply(value: object) -> TaskReply:
    return _parsed(TaskReply, value)


def parse_key(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= KEY_MAX:
        raise _invalid(
            "Idempotency-Key", "请求编号无效", f"a request key of 1 to {KEY_MAX} characters is needed"
        )
    return value


def check_sender(actor: Actor) -> None:
    if actor.role not in SENDER_ROLES or actor.org_unit_id is None:
        raise Refused(
            "forbidden", "tasks are sent by the county command, the centre, departments and township commands"
        )


def fingerprint(username: str, request: BaseModel) -> str:
    asked = request.model_dump(mode="json")
    return hashlib.sha256(json.dumps([username, asked], sort_keys=True).encode()).hexdigest()


def due_time(asked: datetime | None, now: datetime, zone: timezone) -> datetime:
    """When the task is due: as asked (a time without a zone is the county's), else in 7 days."""
    if asked is None:
        return now + DEFAULT_DUE
    due = asked if asked.tzinfo is not None else asked.replace(tzinfo=zone)
    if due <= now:
        raise _invalid("due_at", "截止时间必须在将来", "due_at must lie in the future", "due_in_past")
    if due - now > LONGEST_DUE:
        raise _invalid("due_at", "截止时间不能超过一年", "due_at must lie within a year", "due_too_far")
    return due


# ------------------------------------------------------------------------------ who it reaches


@dataclass(frozen=True)
class Reach:
    """The registry's answer to "who is under these units", for one sender."""

    sender_unit: dict | None
    targets: list[dict]  # {"unit": UnitRef, "path"}
    liaisons: list[dict]  # {"unit": UnitRef, "head": PersonRef | None, "path"}
    units: list[dict]  # UnitRef of every township and village on the liaisons' paths


def reach_of(answer: dict) -> Reach:
    """The registry's ``liaison_units_under`` answer, or why the task cannot go: a target outside
    the sender's area (or unknown: the same to the sender) or without a liaison worker beneath."""
    if not isinstance(answer, dict):
        raise Refused("not_found", "the registry gave no answer")
    if "refused" in answer:
        if answer["refused"] == "not_found" and "unit_id" in answer:
            unit = answer["unit_id"]
            raise _invalid(
                "targets",
                f"单位 {unit} 不在您的辖区内",
                f"unit {unit} is not in your area",
                "target_not_in_area",
                unit_id=unit,
            )
        raise Refused(answer["refused"], answer.get("detail", answer["refused"]))
    reach = Reach(answer["sender_unit"], answer["targets"], answer["liaisons"], answer["units"])
    for target in reach.targets:
        if not any(entry["path"].startswith(target["path"]) for entry in reach.liaisons):
            unit = target["unit"]
            raise _invalid(
                "targets",
                f"{unit['name']} 下没有联户员",
                f"no liaison worker under {unit['name']} ({unit['id']})",
                "no_recipients",
                unit_id=unit["id"],
            )
    return reach


# ------------------------------------------------------------------------------------ shapes


def _number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def status_of(task: Task, answered: int, total: int, now: datetime) -> str:
    if task.state == "cancelled":
        return "cancelled"
    if answered >= total:
        return "done"
    return "overdue" if task.due_at <= now else "open"


def task_json(task: Task) -> dict:
    return {
        "id": task.id,
        "title": task.title,
        "body": task.body,
        "kind": task.kind,
        "answer": task.answer,
        "targets": [target["unit"] for target in task.targets],
        "recipients": task.recipient_count,
        "due_at": task.due_at.isoformat(),
        "created_at": task.created_at.isoformat(),
        "sender": task.sender,
        "state": task.state,
        "cancelled_at": task.cancelled_at.isoformat() if task.cancelled_at else None,
        "cancel_note": task.cancel_note,
    }


def answer_json(task: Task, row: TaskAnswer, unit: dict) -> dict:
    audio = row.audio
    return {
        "id": row.id,
        "task_id": task.id,
        "unit": unit["org_unit"],
        "person": unit.get("person"),
        "answered_by": row.username,
        "answered_at": row.answered_at.isoformat(),
        "late": row.answered_at > task.due_at,
        "text": row.text,
        "number": _number(row.number),
        "audio": None
        if audio is None
        else {
            "url": f"/v1/tasks/{task.id}/answers/{row.id}/audio",
            "media_type": audio["media_type"],
            "bytes": audio["size_bytes"],
            "seconds": audio.get("duration_seconds"),
            "sha256": audio["sha256"],
        },
    }


# ------------------------------------------------------------------------------------- writes


def event_id_of(task_id: str, what: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{task_id}:{what}"))


def _sent_replay(session: Session, username: str, key: str, print_: str) -> dict | None:
    task = session.scalar(select(Task).where(Task.sender_username == username, Task.request_key == key))
    if task is None:
        return None
    if task.fingerprint != print_:
        raise _invalid(
            "Idempotency-Key",
            "该请求编号已用于另一任务",
            "this Idempotency-Key was used for another task",
            "idempotency_key_reused",
        )
    return task_json(task)


def find_sent(session: Session, username: str, key: str, print_: str) -> Outcome | None:
    """The task this key sent before, to answer a retry with; the key for another task is refused."""
    replay = _sent_replay(session, username, key, print_)
    return None if replay is None else Outcome(replay, [], replayed=True)


def create(
    sessions: sessionmaker,
    actor: Actor,
    order: TaskOrder,
    reach: Reach,
    key: str,
    print_: str,
    due: datetime,
    now: datetime,
) -> Outcome:
    """Record the task, its recipients and its ``task_assigned`` event, once per key."""
    try:
        with sessions.begin() as session:
            replay = find_sent(session, actor.username, key, print_)
            if replay is not None:
                return replay
            return _create(session, actor, order, reach, key, print_, due, now)
    except IntegrityError:
        # The same key sent twice at once: the other request stored it first.
        with sessions() as session:
            replay = find_sent(session, actor.username, key, print_)
        if replay is None:
            raise
        return replay


def _create(
    session: Session,
    actor: Actor,
    order: TaskOrder,
    reach: Reach,
    key: str,
    print_: str,
    due: datetime,
    now: datetime,
) -> Outcome:
    task = Task(
        id=str(uuid.uuid4()),
        title=order.title.strip(),
        body=order.body.strip(),
        kind=order.kind,
        answer=order.answer,
        state="open",
        sender_username=actor.username,
        sender_role=actor.role,
        sender_unit_id=actor.org_unit_id,
        sender={"username": actor.username, "role": actor.role, "org_unit": reach.sender_unit},
        targets=reach.targets,
        units=reach.units,
        recipient_count=len(reach.liaisons),
        due_at=due,
        created_at=now,
        request_key=key,
        fingerprint=print_,
    )
    session.add(task)
    session.flush()
    refs = []
    for entry in reach.liaisons:
        ref = TaskRecipientRef(org_unit=entry["unit"], person=entry["head"])
        refs.append(ref)
        session.add(
            TaskRecipient(
                task_id=task.id,
                org_unit_id=ref.org_unit.id,
                area_path=entry["path"],
                unit=ref.model_dump(mode="json"),
            )
        )
    event = TaskAssigned(
        event_id=event_id_of(task.id, "assigned"),
        occurred_at=now,
        task_id=task.id,
        title=task.title,
        kind=task.kind,
        answer=task.answer,
        due_at=due,
        sender_unit=UnitRef.model_validate(reach.sender_unit) if reach.sender_unit else None,
        recipients=refs,
    )
    enqueue(session, outbox, event)
    return Outcome(task_json(task), [event.event_id])


def _check_reply(task: Task, reply: TaskReply) -> None:
    if task.answer == "number":
        if reply.number is None:
            raise _invalid(
                "number", "此任务需要填写数字", "this task is answered with a number", "number_required"
            )
        return
    if reply.number is not None:
        raise _invalid(
            "number", "此任务需要文字或语音回复", "this task is answered in words", "text_expected"
        )
    if not (reply.text and reply.text.strip()) and reply.audio is None:
        raise _invalid("text", "请填写回复或录音", "an answer needs text or a recording", "answer_required")


def _answer_replay(
    session: Session, task: Task, unit: TaskRecipient, key: str, print_: str
) -> Outcome | None:
    row = session.scalar(
        select(TaskAnswer).where(
            TaskAnswer.task_id == task.id,
            TaskAnswer.org_unit_id == unit.org_unit_id,
            TaskAnswer.request_key == key,
        )
    )
    if row is None:
        return None
    if row.fingerprint != print_:
        raise _invalid(
            "Idempotency-Key",
            "该请求编号已用于另一回复",
            "this Idempotency-Key was used for another answer",
            "idempotency_key_reused",
        )
    return Outcome({**answer_json(task, row, unit.unit), "replaced": False}, [], replayed=True)


def answer(
    sessions: sessionmaker,
    task_id: str,
    actor: Actor,
    reply: TaskReply,
    key: str,
    now: datetime,
) -> Outcome:
    """A recipient's answer: it replaces her last one (both stay in the history), once per key."""
    print_ = fingerprint(actor.username, reply)
    try:
        with sessions.begin() as session:
            return _answer(session, task_id, actor, reply, key, print_, now)
    except IntegrityError:
        with sessions.begin() as session:
            return _answer(session, task_id, actor, reply, key, print_, now)


def _recipient_of(session: Session, task_id: object, actor: Actor, lock: bool = False):
    if not valid_task_id(task_id) or actor.org_unit_id is None:
        return None, None
    query = select(Task).where(Task.id == task_id)
    task = session.scalar(query.with_for_update() if lock else query)
    if task is None:
        return None, None
    unit = session.scalar(
        select(TaskRecipient).where(
            TaskRecipient.task_id == task.id, TaskRecipient.org_unit_id == actor.org_unit_id
        )
    )
    return task, unit


def _answer(
    session: Session, task_id: str, actor: Actor, reply: TaskReply, key: str, print_: str, now: datetime
) -> Outcome:
    task, unit = _recipient_of(session, task_id, actor, lock=True)
    if unit is None:
        raise Refused("not_found", "no such task for you")
    replay = _answer_replay(session, task, unit, key, print_)
    if replay is not None:
        return replay
    if task.state == "cancelled":
        raise Refused("conflict", "the task was cancelled: it takes no more answers")
    _check_reply(task, reply)
    row = TaskAnswer(
        task_id=task.id,
        org_unit_id=unit.org_unit_id,
        username=actor.username,
        text=reply.text.strip() if reply.text and reply.text.strip() else None,
        number=float(reply.number) if reply.number is not None else None,
        audio=reply.audio.model_dump(mode="json") if reply.audio else None,
        answered_at=now,
        request_key=key,
        fingerprint=print_,
    )
    session.add(row)
    session.flush()
    replaced = unit.answer_id is not None
    unit.answered_at, unit.answer_id, unit.number = now, row.id, row.number
    event = TaskAnswered(
        event_id=event_id_of(task.id, f"answer:{row.id}"),
        occurred_at=now,
        task_id=task.id,
        org_unit_id=unit.org_unit_id,
        answered_at=now,
    )
    enqueue(session, outbox, event)
    return Outcome({**answer_json(task, row, unit.unit), "replaced": replaced}, [event.event_id])


def cancel(sessions: sessionmaker, task_id: object, actor: Actor, note: str, now: datetime) -> Outcome:
    """The sender's unit withdraws the task; cancelling it again answers the same."""
    try:
        note = (task_text(note) or "").strip()
    except ValueError as error:
        raise _invalid("note", "备注无效", str(error)) from None
    with sessions.begin() as session:
        query = select(Task).where(Task.id == task_id).with_for_update()
        task = session.scalar(query) if valid_task_id(task_id) else None
        if task is None or not _may_see(session, task, actor):
            raise Refused("not_found", "no such task in your area")
        if actor.org_unit_id != task.sender_unit_id:
            raise Refused("forbidden", "only the unit that sent a task may cancel it")
        if task.state == "cancelled":
            return Outcome(_with_progress(session, task, now), [], replayed=True)
        task.state, task.cancelled_at, task.cancel_note = "cancelled", now, note or None
        event = TaskCancelled(
            event_id=event_id_of(task.id, "cancelled"), occurred_at=now, task_id=task.id, note=note
        )
        enqueue(session, outbox, event)
        return Outcome(_with_progress(session, task, now), [event.event_id])


# -------------------------------------------------------------------------------------- reads


def _counts(session: Session, task_ids: list[str]) -> dict[str, tuple[int, int]]:
    if not task_ids:
        return {}
    rows = session.execute(
        select(TaskRecipient.task_id, func.count(), func.count(TaskRecipient.answered_at))
        .where(TaskRecipient.task_id.in_(task_ids))
        .group_by(TaskRecipient.task_id)
    )
    return {task_id: (total, answered) for task_id, total, answered in rows}


def _progress(task: Task, total: int, answered: int, now: datetime) -> dict:
    status = status_of(task, answered, total, now)
    overdue = total - answered if task.state == "open" and task.due_at <= now else 0
    return {"status": status, "progress": {"recipients": total, "answered": answered, "overdue": overdue}}


def _with_progress(session: Session, task: Task, now: datetime) -> dict:
    total, answered = _counts(session, [task.id]).get(task.id, (0, 0))
    return {**task_json(task), **_progress(task, total, answered, now)}


def _status_filter_sent(status: str | None, total, answered, now: datetime) -> list:
    if status is None:
        return []
    if status == "cancelled":
        return [Task.state == "cancelled"]
    is_open = Task.state == "open"
    if status == "done":
        return [is_open, answered >= total]
    if status == "overdue":
        return [is_open, answered < total, Task.due_at <= now]
    return [is_open, answered < total, Task.due_at > now]


def _status_filter_received(status: str | None, now: datetime) -> list:
    if status is None:
        return []
    if status == "cancelled":
        return [Task.state == "cancelled"]
    is_open = Task.state == "open"
    if status == "done":
        return [is_open, TaskRecipient.answered_at.is_not(None)]
    unanswered = TaskRecipient.answered_at.is_(None)
    if status == "overdue":
        return [is_open, unanswered, Task.due_at <= now]
    return [is_open, unanswered, Task.due_at > now]


def check_listing(role: object, status: object, page: object, page_size: object) -> None:
    if role not in ROLES:
        raise _invalid("role", "role 只能是 sent 或 received", "role must be sent or received")
    if status is not None and status not in STATUSES:
        raise _invalid("state", "状态无效", f"state must be one of {', '.join(STATUSES)}")
    for name, value, top in (("page", page, 100_000), ("page_size", page_size, MAX_PAGE_SIZE)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise _invalid(name, "页码无效", f"{name} must be an integer from 1 to {top}")


def list_tasks(
    session: Session, actor: Actor, role: str, status: str | None, page: int, page_size: int, now: datetime
) -> dict:
    """What the actor's unit sent (with completion counts) or received (with its own answer)."""
    check_listing(role, status, page, page_size)
    empty = {"items": [], "total": 0, "page": page, "page_size": page_size}
    if actor.org_unit_id is None:
        return empty
    if role == "sent":
        counts = (
            select(
                TaskRecipient.task_id.label("task_id"),
                func.count().label("total"),
                func.count(TaskRecipient.answered_at).label("answered"),
            )
            .group_by(TaskRecipient.task_id)
            .subquery()
        )
        where = [
            Task.sender_unit_id == actor.org_unit_id,
            *_status_filter_sent(status, counts.c.total, counts.c.answered, now),
        ]
        base = select(Task, counts.c.total, counts.c.answered).join(counts, counts.c.task_id == Task.id)
        total = session.scalar(select(func.count()).select_from(base.where(*where).subquery()))
        rows = session.execute(
            base.where(*where)
            .order_by(Task.created_at.desc(), Task.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        ).all()
        items = [{**task_json(task), **_progress(task, n, a, now)} for task, n, a in rows]
        return {**empty, "items": items, "total": total}
    where = [TaskRecipient.org_unit_id == actor.org_unit_id, *_status_filter_received(status, now)]
    base = select(Task, TaskRecipient).join(TaskRecipient, TaskRecipient.task_id == Task.id).where(*where)
    total = session.scalar(select(func.count()).select_from(base.subquery()))
    rows = session.execute(
        base.order_by(Task.created_at.desc(), Task.id.desc()).limit(page_size).offset((page - 1) * page_size)
    ).all()
    answers = _answers_by_id(session, [unit.answer_id for _, unit in rows if unit.answer_id])
    items = [_received_json(task, unit, answers.get(unit.answer_id), now) for task, unit in rows]
    return {**empty, "items": items, "total": total}


def _answers_by_id(session: Session, ids: Iterable[int]) -> dict[int, TaskAnswer]:
    ids = list(ids)
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(TaskAnswer).where(TaskAnswer.id.in_(ids)))}


def _received_json(task: Task, unit: TaskRecipient, latest: TaskAnswer | None, now: datetime) -> dict:
    answered = 1 if unit.answered_at is not None else 0
    return {
        **task_json(task),
        "status": status_of(task, answered, 1, now),
        "unit": unit.unit["org_unit"],
        "my_answer": answer_json(task, latest, unit.unit) if latest else None,
    }


def _units_above(session: Session, task: Task, unit_id: int) -> bool:
    """Whether ``unit_id`` lies above some recipient of the task (on its path, not itself)."""
    return (
        session.scalar(
            select(TaskRecipient.id)
            .where(
                TaskRecipient.task_id == task.id,
                TaskRecipient.area_path.like(f"%/{unit_id}/%"),
                TaskRecipient.org_unit_id != unit_id,
            )
            .limit(1)
        )
        is not None
    )


def _may_see(session: Session, task: Task, actor: Actor) -> bool:
    unit = actor.org_unit_id
    if actor.role in COUNTY_READERS or (unit is not None and unit == task.sender_unit_id):
        return True
    if unit is None:
        return False
    if _units_above(session, task, unit):
        return True
    return (
        session.scalar(
            select(TaskRecipient.id).where(
                TaskRecipient.task_id == task.id, TaskRecipient.org_unit_id == unit
            )
        )
        is not None
    )


def get_task(session: Session, task_id: object, actor: Actor, now: datetime) -> dict | None:
    """The task as the actor may see it, or None: the sender's unit and the county see it whole
    with its roll-up; a unit above some recipients sees its own subtree's part; a recipient sees the
    task with her own answers."""
    if not valid_task_id(task_id):
        return None
    task = session.get(Task, task_id)
    if task is None:
        return None
    unit = actor.org_unit_id
    whole = actor.role in COUNTY_READERS or (unit is not None and unit == task.sender_unit_id)
    if whole or (unit is not None and _units_above(session, task, unit)):
        rows = list(
            session.scalars(
                select(TaskRecipient)
                .where(TaskRecipient.task_id == task.id)
                .order_by(TaskRecipient.area_path)
            )
        )
        if not whole:
            rows = [row for row in rows if unit in path_ids(row.area_path) and row.org_unit_id != unit]
        answers = _answers_by_id(session, [row.answer_id for row in rows if row.answer_id])
        answered = sum(1 for row in rows if row.answered_at is not None)
        return {
            **task_json(task),
            **_progress(task, len(rows), answered, now),
            "view": "sender" if unit == task.sender_unit_id else "above",
            "scope": "all" if whole else "subtree",
            "rollup": rollup(task, rows, now),
            "answers": [_recipient_json(task, row, answers.get(row.answer_id), now) for row in rows],
        }
    if unit is None:
        return None
    mine = session.scalar(
        select(TaskRecipient).where(TaskRecipient.task_id == task.id, TaskRecipient.org_unit_id == unit)
    )
    if mine is None:
        return None
    history = session.scalars(
        select(TaskAnswer)
        .where(TaskAnswer.task_id == task.id, TaskAnswer.org_unit_id == unit)
        .order_by(TaskAnswer.id)
    ).all()
    latest = next((row for row in history if row.id == mine.answer_id), None)
    return {
        **_received_json(task, mine, latest, now),
        "view": "recipient",
        "history": [answer_json(task, row, mine.unit) for row in history],
    }


def _recipient_json(task: Task, row: TaskRecipient, latest: TaskAnswer | None, now: datetime) -> dict:
    overdue = row.answered_at is None and task.state == "open" and task.due_at <= now
    return {
        "unit": row.unit["org_unit"],
        "person": row.unit.get("person"),
        "answered": row.answered_at is not None,
        "overdue": overdue,
        "answer": answer_json(task, latest, row.unit) if latest else None,
    }


def _tally(task: Task, rows: list[TaskRecipient], now: datetime) -> dict:
    answered = sum(1 for row in rows if row.answered_at is not None)
    past_due = task.state == "open" and task.due_at <= now
    total = None
    if task.answer == "number":
        total = _number(sum(row.number for row in rows if row.number is not None))
    return {
        "recipients": len(rows),
        "answered": answered,
        "overdue": len(rows) - answered if past_due else 0,
        "sum": total,
    }


def rollup(task: Task, rows: list[TaskRecipient], now: datetime) -> dict:
    """Completion for the whole (the rows given), per target unit, and per township and village
    beneath each target; ``sum`` adds the numbers of a number task (a headcount), else null."""
    names = {unit["id"]: unit for unit in task.units}
    by_target = []
    for target in task.targets:
        target_id = target["unit"]["id"]
        inside = [row for row in rows if row.area_path.startswith(target["path"])]
        if not inside and rows:
            continue  # outside the reader's subtree
        beneath: dict[int, list[TaskRecipient]] = {}
        for row in inside:
            ids = path_ids(row.area_path)
            below = ids[ids.index(target_id) + 1 :] if target_id in ids else []
            for unit_id in below:
                if unit_id in names:
                    beneath.setdefault(unit_id, []).append(row)
        parts = sorted(
            beneath.items(), key=lambda item: (names[item[0]]["level"], names[item[0]]["name"], item[0])
        )
        by_target.append(
            {
                "unit": target["unit"],
                **_tally(task, inside, now),
                "beneath": [{"unit": names[unit_id], **_tally(task, part, now)} for unit_id, part in parts],
            }
        )
    return {**_tally(task, rows, now), "by_target": by_target}


def audio_of(
    session: Session, task_id: object, answer_id: object, actor: Actor, now: datetime
) -> dict | None:
    """The recording of one answer (an AudioRef) for whoever may see that answer, else None."""
    if not isinstance(answer_id, int) or isinstance(answer_id, bool):
        return None
    seen = get_task(session, task_id, actor, now)
    if seen is None:
        return None
    answers = [entry["answer"] for entry in seen.get("answers", []) if entry["answer"]]
    answers += seen.get("history", [])
    if not any(entry["id"] == answer_id and entry["audio"] for entry in answers):
        return None
    row = session.get(TaskAnswer, answer_id)
    return row.audio if row is not None else None
