"""Tasks down, on both engines: the registry's reach (who is under the targets, within the sender's
area), routing's task domain (send, answer, cancel, who sees what, the roll-up, overdue at read
time, retries acting once) and notify's task items, without services.

    county 1 ── centre 2, department 5
             ├─ township 10 ── village 20 ── liaison 30, liaison 31
             │              └─ village 21 ── liaison 32
             └─ township 11 ── village 22 ── liaison 33
                            └─ village 23 (no liaison worker)
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

import services.notify
import services.registry
import services.routing
from lianhu.db import make_engine, make_session_factory, migrate
from lianhu.events import TaskAnswered, TaskAssigned, TaskCancelled
from services.notify import inbox
from services.registry import liaisons
from services.registry.jurisdiction import Refused as RegistryRefused
from services.registry.models import OrgUnit, Person, Position
from services.registry.schemas import Actor as RegistryActor
from services.routing import tasks
from services.routing.actions import Actor, Invalid
from services.routing.lifecycle import Refused
from services.routing.models import outbox

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
ZONE = timezone(timedelta(hours=8))

TREE = {  # id: (parent, kind, level, name)
    1: (None, "county", 1, "甘德县"),
    2: (1, "governance_centre", 1, "综治中心"),
    5: (1, "department", 2, "应急管理局"),
    10: (1, "township", 2, "江千乡"),
    11: (1, "township", 2, "岗龙乡"),
    20: (10, "village", 3, "一村"),
    21: (10, "village", 3, "二村"),
    22: (11, "village", 3, "三村"),
    23: (11, "village", 3, "四村"),
    30: (20, "liaison", 4, "联户30"),
    31: (20, "liaison", 4, "联户31"),
    32: (21, "liaison", 4, "联户32"),
    33: (22, "liaison", 4, "联户33"),
}

COUNTY = Actor("county", "county_command", 1)
CENTRE = Actor("centre-1", "governance_centre", 2)
DEPARTMENT = Actor("dept-emergency", "department", 5)
TOWNSHIP = Actor("township-10", "township_command", 10)
OTHER_TOWNSHIP = Actor("township-11", "township_command", 11)
GRID = Actor("grid-20", "village_grid", 20)
LW = {unit: Actor(f"lw-{unit}", "liaison_worker", unit) for unit in (30, 31, 32, 33)}


def _path(unit_id: int) -> str:
    ids = []
    while unit_id is not None:
        ids.append(unit_id)
        unit_id = TREE[unit_id][0]
    return "/" + "".join(f"{i}/" for i in reversed(ids))


class World:
    """Routing's task domain over a real database, asking a real registry (same database) for reach."""

    def __init__(self, sessions):
        self.sessions = sessions
        self.now = T0

    def reach(self, who: Actor, targets: list) -> dict:
        """What the registry's ``liaison_units_under`` RPC answers."""
        actor = RegistryActor(username=who.username, role=who.role, org_unit_id=who.org_unit_id)
        with self.sessions() as session:
            try:
                return liaisons.liaison_units_under(session, actor, targets)
            except liaisons.UnknownTarget as unknown:
                return {"refused": unknown.code, "detail": unknown.detail, "unit_id": unknown.unit_id}
            except RegistryRefused as refused:
                return {"refused": refused.code, "detail": refused.detail}

    def _write(self, work) -> dict:
        try:
            outcome = work()
        except Refused as refused:
            return {"refused": refused.code, "detail": refused.detail}
        except Invalid as invalid:
            return {"errors": [invalid.problem]}
        return {"result": outcome.answer, "replayed": outcome.replayed, "events": outcome.events}

    def send(self, who: Actor, key: str | None = None, **order) -> dict:
        """What routing's ``create_task`` RPC answers, without the service."""

        def work():
            tasks.check_sender(who)
            request, request_key = tasks.parse_order(order), tasks.parse_key(key or str(uuid.uuid4()))
            print_ = tasks.fingerprint(who.username, request)
            with self.sessions() as session:
                replay = tasks.find_sent(session, who.username, request_key, print_)
            if replay is not None:
                return replay
            due = tasks.due_time(request.due_at, self.now, ZONE)
            reach = tasks.reach_of(self.reach(who, request.targets))
            return tasks.create(self.sessions, who, request, reach, request_key, print_, due, self.now)

        return self._write(work)

    def answer(self, task_id: str, who: Actor, key: str | None = None, **reply) -> dict:
        return self._write(
            lambda: tasks.answer(
                self.sessions,
                task_id,
                who,
                tasks.parse_reply(reply),
                tasks.parse_key(key or str(uuid.uuid4())),
                self.now,
            )
        )

    def cancel(self, task_id: str, who: Actor, note: str = "") -> dict:
        return self._write(lambda: tasks.cancel(self.sessions, task_id, who, note, self.now))

    def get(self, task_id: str, who: Actor, at: datetime | None = None) -> dict | None:
        with self.sessions() as session:
            return tasks.get_task(session, task_id, who, at or self.now)

    def list(self, who: Actor, role: str, state: str | None = None, at: datetime | None = None) -> dict:
        with self.sessions() as session:
            return tasks.list_tasks(session, who, role, state, 1, 20, at or self.now)

    def events(self) -> list[dict]:
        with self.sessions() as session:
            rows = session.execute(select(outbox.c.routing_key, outbox.c.body).order_by(outbox.c.created_at))
            return [{"type": key, **json.loads(body)} for key, body in rows]


@pytest.fixture
def world(database_url):
    for service in (services.registry, services.routing, services.notify):
        migrate(Path(service.__file__).parent / "migrations", database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        for unit_id, (parent, kind, level, name) in TREE.items():
            session.add(
                OrgUnit(id=unit_id, parent_id=parent, kind=kind, level=level, name=name, path=_path(unit_id))
            )
            session.flush()
        for unit_id in (30, 31, 32, 33):
            session.add(Person(id=unit_id * 10, name=f"worker-{unit_id}", phone=None))
            session.flush()
            session.add(
                Position(
                    person_id=unit_id * 10,
                    org_unit_id=unit_id,
                    role="liaison_worker",
                    title="联户长",
                    is_head=True,
                )
            )
    yield World(sessions)
    engine.dispose()


HEADCOUNT = {"title": "统计返乡人员", "kind": "headcount", "answer": "number"}
OUTREACH = {
    "title": "宣传草原生态补奖政策",
    "body": "入户宣讲并回复情况",
    "kind": "outreach",
    "answer": "text",
}


def sent(world: World, who: Actor = TOWNSHIP, targets=(10,), **order) -> dict:
    answer = world.send(who, targets=list(targets), **{**HEADCOUNT, **order})
    assert "result" in answer, answer
    return answer["result"]


def test_a_township_headcount_reaches_every_liaison_worker_and_sums_up(world):
    task = sent(world, due_at=(T0 + timedelta(days=2)).isoformat())
    assert task["recipients"] == 3
    assert task["targets"] == [{"id": 10, "name": "江千乡", "name_bo": None, "kind": "township", "level": 2}]
    assert task["sender"]["org_unit"]["id"] == 10 and task["sender"]["username"] == "township-10"
    assert task["due_at"] == (T0 + timedelta(days=2)).isoformat()

    # notify is told once, in the outbox, with each recipient unit and its worker.
    [assigned] = [event for event in world.events() if event["type"] == "task_assigned"]
    assert sorted(r["org_unit"]["id"] for r in assigned["recipients"]) == [30, 31, 32]
    assert {r["person"]["name"] for r in assigned["recipients"]} == {"worker-30", "worker-31", "worker-32"}

    assert world.answer(task["id"], LW[30], number=5)["result"]["number"] == 5
    answered = world.answer(task["id"], LW[31], number=7)["result"]
    assert (answered["unit"]["id"], answered["late"], answered["replaced"]) == (31, False, False)

    seen = world.get(task["id"], TOWNSHIP)
    assert (seen["view"], seen["scope"], seen["status"]) == ("sender", "all", "open")
    rollup = seen["rollup"]
    assert (rollup["recipients"], rollup["answered"], rollup["overdue"], rollup["sum"]) == (3, 2, 0, 12)
    [target] = rollup["by_target"]
    assert target["unit"]["id"] == 10 and target["sum"] == 12
    assert [
        (row["unit"]["id"], row["recipients"], row["answered"], row["sum"]) for row in target["beneath"]
    ] == [
        (20, 2, 2, 12),
        (21, 1, 0, 0),
    ]
    assert {entry["unit"]["id"]: entry["answered"] for entry in seen["answers"]} == {
        30: True,
        31: True,
        32: False,
    }

    [mine] = world.list(LW[30], "received")["items"]
    assert (mine["id"], mine["status"], mine["my_answer"]["number"]) == (task["id"], "done", 5)
    assert world.list(LW[32], "received")["items"][0]["my_answer"] is None
    [mine] = world.list(TOWNSHIP, "sent")["items"]
    assert mine["progress"] == {"recipients": 3, "answered": 2, "overdue": 0}
    assert world.list(LW[33], "received")["total"] == 0


def test_a_county_target_rolls_up_by_township_and_village(world):
    task = sent(world, COUNTY, targets=(1,))
    assert task["recipients"] == 4
    world.answer(task["id"], LW[33], number=3)
    [target] = world.get(task["id"], COUNTY)["rollup"]["by_target"]
    rows = {row["unit"]["id"]: (row["recipients"], row["answered"], row["sum"]) for row in target["beneath"]}
    assert rows == {10: (3, 0, 0), 11: (1, 1, 3), 20: (2, 0, 0), 21: (1, 0, 0), 22: (1, 1, 3)}
    # A liaison unit as a target reaches that worker; overlapping targets reach her once.
    assert sent(world, COUNTY, targets=(30, 20, 30))["recipients"] == 2


@pytest.mark.parametrize(
    ("who", "targets", "code", "unit"),
    [
        (TOWNSHIP, [22], "target_not_in_area", 22),  # another township's village
        (TOWNSHIP, [10, 11], "target_not_in_area", 11),
        (TOWNSHIP, [999], "target_not_in_area", 999),  # unknown looks the same as elsewhere
        (COUNTY, [23], "no_recipients", 23),  # nobody to answer
    ],
)
def test_targets_must_lie_in_the_senders_area(world, who, targets, code, unit):
    answer = world.send(who, targets=targets, **HEADCOUNT)
    [problem] = answer["errors"]
    assert (problem["field"], problem["code"], problem["unit_id"]) == ("targets", code, unit)
    assert str(unit) in problem["message_en"]
    assert world.events() == []


def test_who_may_send(world):
    # Departments serve every township: they may send county-wide.
    assert sent(world, DEPARTMENT, targets=(22,))["recipients"] == 1
    assert sent(world, CENTRE, targets=(11,))["recipients"] == 1
    for who in (GRID, LW[30]):
        assert world.send(who, targets=[30], **HEADCOUNT)["refused"] == "forbidden"


def test_who_sees_a_task(world):
    task = sent(world, targets=(10,))
    world.answer(task["id"], LW[30], number=4)
    for who in (OTHER_TOWNSHIP, LW[33], DEPARTMENT, Actor("x", "village_grid", 22)):
        assert world.get(task["id"], who) is None
    assert world.get("no-such-task", TOWNSHIP) is None
    for who in (COUNTY, CENTRE):
        seen = world.get(task["id"], who)
        assert (seen["view"], seen["scope"], seen["rollup"]["recipients"]) == ("above", "all", 3)
    # A village above some recipients sees its own part.
    seen = world.get(task["id"], GRID)
    assert (seen["view"], seen["scope"]) == ("above", "subtree")
    assert (seen["rollup"]["recipients"], seen["rollup"]["sum"]) == (2, 4)
    assert {entry["unit"]["id"] for entry in seen["answers"]} == {30, 31}
    # A recipient sees the task and her own answers only.
    seen = world.get(task["id"], LW[30])
    assert seen["view"] == "recipient" and "rollup" not in seen and "answers" not in seen
    assert [entry["number"] for entry in seen["history"]] == [4]


def test_a_second_answer_replaces_the_first_and_a_key_answers_once(world):
    task = sent(world, targets=(20,))
    first = world.answer(task["id"], LW[30], key="k1", number=5)
    again = world.answer(task["id"], LW[30], key="k1", number=5)
    assert again["replayed"] and again["result"]["id"] == first["result"]["id"] and again["events"] == []
    reused = world.answer(task["id"], LW[30], key="k1", number=6)
    assert reused["errors"][0]["code"] == "idempotency_key_reused"
    second = world.answer(task["id"], LW[30], key="k2", number=6)["result"]
    assert second["replaced"] is True
    assert world.get(task["id"], TOWNSHIP)["rollup"]["sum"] == 6
    assert [entry["number"] for entry in world.get(task["id"], LW[30])["history"]] == [5, 6]
    assert len([event for event in world.events() if event["type"] == "task_answered"]) == 2


def test_an_answer_must_fit_the_task(world):
    count = sent(world, targets=(20,))
    words = sent(world, targets=(20,), **OUTREACH)
    assert world.answer(count["id"], LW[30], text="五个人")["errors"][0]["code"] == "number_required"
    assert world.answer(words["id"], LW[30], number=3)["errors"][0]["code"] == "text_expected"
    assert world.answer(words["id"], LW[30], text="  ")["errors"][0]["code"] == "answer_required"
    assert world.answer(words["id"], LW[30], number=True)["errors"][0]["field"].startswith("number")
    voice = {"sha256": "a" * 64, "media_type": "audio/wav", "size_bytes": 100, "duration_seconds": 1.5}
    spoken = world.answer(words["id"], LW[30], audio=voice)["result"]
    assert spoken["audio"]["url"] == f"/v1/tasks/{words['id']}/answers/{spoken['id']}/audio"
    with world.sessions() as session:
        assert tasks.audio_of(session, words["id"], spoken["id"], TOWNSHIP, T0)["sha256"] == "a" * 64
        assert tasks.audio_of(session, words["id"], spoken["id"], OTHER_TOWNSHIP, T0) is None
    # Only recipients answer; the sender is not one.
    assert world.answer(count["id"], LW[32], number=1)["refused"] == "not_found"
    assert world.answer(count["id"], TOWNSHIP, number=1)["refused"] == "not_found"


def test_cancelling(world):
    task = sent(world, targets=(20,))
    assert world.cancel(task["id"], GRID)["refused"] == "forbidden"  # sees it, did not send it
    assert world.cancel(task["id"], OTHER_TOWNSHIP)["refused"] == "not_found"
    cancelled = world.cancel(task["id"], TOWNSHIP, note="重复下发")
    assert (cancelled["result"]["state"], cancelled["result"]["status"], cancelled["replayed"]) == (
        "cancelled",
        "cancelled",
        False,
    )
    assert world.cancel(task["id"], TOWNSHIP)["replayed"] is True
    assert world.answer(task["id"], LW[30], number=1)["refused"] == "conflict"
    assert [event["type"] for event in world.events()].count("task_cancelled") == 1
    assert world.list(TOWNSHIP, "sent", "cancelled")["total"] == 1
    assert world.list(LW[30], "received", "cancelled")["total"] == 1
    assert world.list(LW[30], "received", "open")["total"] == 0


def test_overdue_is_read_off_the_clock(world):
    task = sent(world, targets=(20,), due_at=(T0 + timedelta(hours=1)).isoformat())
    world.answer(task["id"], LW[30], number=2)
    later = T0 + timedelta(hours=2)
    rollup = world.get(task["id"], TOWNSHIP, later)["rollup"]
    assert (rollup["answered"], rollup["overdue"]) == (1, 1)
    assert world.list(TOWNSHIP, "sent", "overdue", later)["total"] == 1
    assert world.list(TOWNSHIP, "sent", "open", later)["total"] == 0
    assert world.list(TOWNSHIP, "sent", "open")["total"] == 1  # before the due time
    assert world.list(LW[31], "received", "overdue", later)["total"] == 1
    assert world.list(LW[30], "received", "done", later)["total"] == 1

    world.now = later
    late = world.answer(task["id"], LW[31], number=1)["result"]
    assert late["late"] is True
    assert world.list(TOWNSHIP, "sent", "done", later)["total"] == 1
    assert world.get(task["id"], TOWNSHIP, later)["rollup"]["overdue"] == 0


def test_sending_again_with_a_key_sends_once(world):
    first = world.send(TOWNSHIP, key="send-1", targets=[20], **HEADCOUNT)
    again = world.send(TOWNSHIP, key="send-1", targets=[20], **HEADCOUNT)
    assert again["replayed"] and again["result"] == first["result"]
    other = world.send(TOWNSHIP, key="send-1", targets=[21], **HEADCOUNT)
    assert other["errors"][0]["code"] == "idempotency_key_reused"
    # The same key of another account is its own.
    assert not world.send(COUNTY, key="send-1", targets=[20], **HEADCOUNT)["replayed"]
    assert [event["type"] for event in world.events()] == ["task_assigned", "task_assigned"]


def test_due_time(world):
    task = sent(world, targets=(20,))
    assert task["due_at"] == (T0 + timedelta(days=7)).isoformat()
    # A time without a zone is the county's (UTC+8).
    task = sent(world, targets=(20,), due_at="2026-12-01T18:00:00")
    assert datetime.fromisoformat(task["due_at"]) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    for due, code in (
        ((T0 - timedelta(minutes=1)).isoformat(), "due_in_past"),
        ("2028-01-01T00:00:00Z", "due_too_far"),
    ):
        assert world.send(TOWNSHIP, targets=[20], due_at=due, **HEADCOUNT)["errors"][0]["code"] == code
    for bad in ({"title": " "}, {"kind": "party"}, {"answer": "photo"}, {"targets": []}, {"extra": 1}):
        assert world.send(TOWNSHIP, **{**HEADCOUNT, "targets": [20], **bad})["errors"]


def test_notify_puts_a_task_into_each_recipients_inbox_once(world):
    task = sent(world, targets=(20,))
    events = {event["type"]: event for event in world.events()}
    assigned = TaskAssigned.model_validate(events["task_assigned"])
    with world.sessions.begin() as session:
        assert inbox.deliver_task(session, assigned) == 2
        assert inbox.deliver_task(session, assigned) == 0  # redelivered: nothing new
    with world.sessions() as session:
        [item] = inbox.list_inbox(session, 30, 50, 0, False)["items"]
    assert (item["kind"], item["task_id"], item["title"], item["task_kind"], item["state"]) == (
        "task",
        task["id"],
        "统计返乡人员",
        "headcount",
        "open",
    )
    assert item["person"]["name"] == "worker-30" and item["deadline_at"] == task["due_at"]

    world.answer(task["id"], LW[30], number=3)
    answered = TaskAnswered.model_validate(
        next(event for event in world.events() if event["type"] == "task_answered")
    )
    with world.sessions.begin() as session:
        assert inbox.apply_task_answered(session, answered)
    world.cancel(task["id"], TOWNSHIP, note="已改为线下统计")
    cancelled = TaskCancelled.model_validate(
        next(event for event in world.events() if event["type"] == "task_cancelled")
    )
    with world.sessions.begin() as session:
        assert inbox.apply_task_cancelled(session, cancelled)
    with world.sessions() as session:
        states = {
            unit: inbox.list_inbox(session, unit, 50, 0, False)["items"][0]["state"] for unit in (30, 31)
        }
    assert states == {30: "cancelled", 31: "cancelled"}
    # An answer for a task notify has not delivered yet waits (NotYet) rather than vanishing.
    early = TaskAnswered(task_id="not-yet", org_unit_id=30, answered_at=T0)
    with world.sessions.begin() as session:
        assert not inbox.apply_task_answered(session, early)


def test_odd_ids_and_control_characters_never_reach_the_database(world):
    task = sent(world, targets=(20,), title="统计\x00人数", body="入户\x07核实")
    assert (task["title"], task["body"]) == ("统计人数", "入户核实")
    for odd in ("x\x00y", "../", "", 5, None, "A" * 36):
        assert world.get(odd, TOWNSHIP) is None
        assert world.answer(odd, LW[30], number=1)["refused"] == "not_found"
        assert world.cancel(odd, TOWNSHIP)["refused"] == "not_found"
    assert world.cancel(task["id"], TOWNSHIP, note="\ud800")["errors"][0]["field"] == "note"
    assert world.answer(task["id"], LW[30], number=1, text="备注\x00")["result"]["text"] == "备注"
