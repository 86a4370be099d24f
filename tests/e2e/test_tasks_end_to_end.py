"""Tasks down, through the running platform on both engines: a township sends a headcount to one of
its villages, every liaison worker there gets it (received list and inbox), answers with a number,
and the township's roll-up sums the answers; senders, targets and readers outside their area are
refused; a retried send or answer acts once; a spoken answer is heard; a cancelled task takes no
more answers.

Outcomes only: the inbox is polled with a deadline, never timed.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import Session

pytestmark = pytest.mark.e2e

JIANGQIAN = "江千乡"
RECORDING = Path(__file__).parents[1] / "fixtures" / "audio" / "ko-words.wav"


@pytest.fixture(scope="module")
def county(platform, sign_in):
    """Jiangqian's command, one of its villages with the liaison units beneath, and outsiders."""
    accounts = platform.accounts()
    township = next(a for a in accounts if a["role"] == "township_command" and a["township"] == JIANGQIAN)
    village = sorted(
        a["org_unit"] for a in accounts if a["role"] == "village_grid" and a["township"] == JIANGQIAN
    )[0]
    elsewhere = next(
        a for a in accounts if a["role"] == "village_grid" and a["township"] not in (JIANGQIAN, "")
    )
    liaison_units = sorted(
        row[0]
        for row in platform.query(
            "registry", "SELECT id FROM org_units WHERE parent_id = :v AND kind = 'liaison'", v=village
        )
    )

    def worker(unit: int) -> Session:
        return sign_in(lambda a: a["role"] == "liaison_worker" and a["org_unit"] == unit)

    return {
        "command": sign_in(lambda a: a["username"] == township["username"]),
        "village": village,
        "liaison_units": liaison_units,
        "worker": worker,
        "elsewhere_village": elsewhere["org_unit"],
        "elsewhere_command": sign_in(
            lambda a: a["role"] == "township_command" and a["township"] == elsewhere["township"]
        ),
        "elsewhere_worker": sign_in(
            lambda a: a["role"] == "liaison_worker" and a["township"] == elsewhere["township"]
        ),
    }


def send(session: Session, key: str | None = None, **order):
    headers = {"Idempotency-Key": key} if key else {}
    return session.client.post("/v1/tasks", json=order, headers=headers)


def received(session: Session, task_id: str) -> dict:
    body = session.wait_for(
        lambda b: any(item["id"] == task_id for item in b["items"]), "/v1/tasks?role=received&page_size=100"
    )
    return next(item for item in body["items"] if item["id"] == task_id)


def inbox_item(session: Session, task_id: str, predicate=lambda item: True) -> dict:
    body = session.wait_for(
        lambda b: any(i.get("task_id") == task_id and predicate(i) for i in b["items"]), "/v1/inbox?limit=200"
    )
    return next(i for i in body["items"] if i.get("task_id") == task_id)


def test_a_headcount_reaches_every_worker_and_sums_up(platform, county):
    command = county["command"]
    order = {
        "title": "统计各户在家人数",
        "body": "请于本周内入户核实",
        "kind": "headcount",
        "answer": "number",
        "targets": [county["village"]],
    }
    key = str(uuid.uuid4())
    response = send(command, key, **order)
    assert response.status_code == 201, response.text
    task = response.json()
    recipients = len(county["liaison_units"])
    assert task["recipients"] == recipients > 3
    assert response.headers["Location"] == f"/v1/tasks/{task['id']}"
    assert task["sender"]["org_unit"]["name"] == JIANGQIAN and task["due_at"] and task["created_at"]

    # The same key again: the same task, once; the key for another task: refused.
    again = send(command, key, **order)
    assert (again.status_code, again.json()["id"], again.headers.get("Idempotent-Replayed")) == (
        201,
        task["id"],
        "true",
    )
    reused = send(command, key, **{**order, "title": "另一个任务"})
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")

    # Every recipient unit gets one inbox item (read straight from notify's database).
    def delivered() -> int:
        sql = "SELECT count(*) FROM inbox_items WHERE task_id = :t"
        return platform.query("notify", sql, t=task["id"])[0][0]

    command.wait_for(lambda _: delivered() == recipients, f"/v1/tasks/{task['id']}")

    answers = {}
    for n, unit in enumerate(county["liaison_units"][:3], start=3):
        worker = county["worker"](unit)
        mine = received(worker, task["id"])
        assert (mine["status"], mine["my_answer"], mine["unit"]["id"]) == ("open", None, unit)
        item = inbox_item(worker, task["id"])
        assert (item["kind"], item["title"], item["task_kind"], item["state"]) == (
            "task",
            "统计各户在家人数",
            "headcount",
            "open",
        )
        assert worker.client.post(f"/v1/tasks/{task['id']}/answers", json={"text": "五"}).json()["code"] == (
            "number_required"
        )
        answered = worker.client.post(
            f"/v1/tasks/{task['id']}/answers", json={"number": n}, headers={"Idempotency-Key": f"a-{unit}"}
        )
        assert answered.status_code == 201, answered.text
        assert (answered.json()["task_id"], answered.json()["unit"]["id"]) == (task["id"], unit)
        replay = worker.client.post(
            f"/v1/tasks/{task['id']}/answers", json={"number": n}, headers={"Idempotency-Key": f"a-{unit}"}
        )
        assert (
            replay.json()["id"] == answered.json()["id"] and replay.headers["Idempotent-Replayed"] == "true"
        )
        answers[unit] = n
        inbox_item(worker, task["id"], lambda i: i["state"] == "answered")
        assert received(worker, task["id"])["my_answer"]["number"] == n

    # The last one corrects her figure: it replaces the first, both kept.
    last = county["liaison_units"][2]
    corrected = county["worker"](last).client.post(f"/v1/tasks/{task['id']}/answers", json={"number": 10})
    assert corrected.status_code == 201 and corrected.json()["replaced"] is True
    answers[last] = 10
    history = county["worker"](last).client.get(f"/v1/tasks/{task['id']}").json()["history"]
    assert [entry["number"] for entry in history] == [5, 10]

    seen = command.client.get(f"/v1/tasks/{task['id']}").json()
    rollup = seen["rollup"]
    assert (rollup["recipients"], rollup["answered"], rollup["overdue"], rollup["sum"]) == (
        recipients,
        3,
        0,
        sum(answers.values()),
    )
    [target] = rollup["by_target"]
    assert target["unit"]["id"] == county["village"] and target["sum"] == sum(answers.values())
    assert {e["unit"]["id"]: e["answer"]["number"] for e in seen["answers"] if e["answer"]} == answers

    sent = command.client.get("/v1/tasks", params={"role": "sent", "state": "open"}).json()
    mine = next(item for item in sent["items"] if item["id"] == task["id"])
    assert mine["progress"] == {"recipients": recipients, "answered": 3, "overdue": 0}
    assert command.client.get("/v1/tasks", params={"role": "sent", "state": "done"}).json()["total"] == 0


def test_outside_the_area_nothing_is_sent_or_seen(county):
    command = county["command"]
    order = {"title": "宣传政策", "kind": "outreach", "answer": "text"}
    for target in (county["elsewhere_village"], 2_000_000_000):
        refused = send(command, **order, targets=[target])
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "target_not_in_area" and str(target) in refused.json()["detail"]
    worker = county["worker"](county["liaison_units"][0])
    assert send(worker, **order, targets=[county["liaison_units"][0]]).status_code == 403
    assert send(command, **{**order, "kind": "party"}, targets=[county["village"]]).status_code == 422

    task = send(command, **order, targets=[county["liaison_units"][0]]).json()
    for outsider in (
        county["elsewhere_command"],
        county["elsewhere_worker"],
        county["worker"](county["liaison_units"][1]),
    ):
        assert outsider.client.get(f"/v1/tasks/{task['id']}").status_code == 404
        answer = outsider.client.post(f"/v1/tasks/{task['id']}/answers", json={"text": "收到"})
        assert answer.status_code == 404
        assert outsider.client.post(f"/v1/tasks/{task['id']}/cancel").status_code == 404
    # A recipient sees it, but only the sender's unit may cancel it.
    assert worker.client.get(f"/v1/tasks/{task['id']}").json()["view"] == "recipient"
    assert worker.client.post(f"/v1/tasks/{task['id']}/cancel").status_code == 403
    assert command.client.get("/v1/tasks/no-such-task").status_code == 404


def test_a_spoken_answer_is_heard_and_a_cancelled_task_takes_no_more(county):
    command = county["command"]
    unit = county["liaison_units"][-1]
    task = send(
        command,
        title="草场受灾情况调查",
        kind="survey",
        answer="text",
        targets=[unit],
        due_at="2099-01-01T00:00:00Z",
    )
    assert task.status_code == 422  # more than a year ahead
    task = send(command, title="草场受灾情况调查", kind="survey", answer="text", targets=[unit]).json()
    worker = county["worker"](unit)
    recording = RECORDING.read_bytes()
    spoken = worker.client.post(
        f"/v1/tasks/{task['id']}/answers",
        files={"audio": ("answer.wav", recording, "audio/wav")},
        data={"text": "草场受灾约三十亩"},
    )
    assert spoken.status_code == 201, spoken.text
    audio = spoken.json()["audio"]
    assert audio["media_type"] == "audio/wav" and audio["bytes"] == len(recording) and audio["seconds"] > 0
    heard = command.client.get(audio["url"])
    assert heard.status_code == 200 and heard.content == recording
    assert county["elsewhere_command"].client.get(audio["url"]).status_code == 404
    bad = worker.client.post(
        f"/v1/tasks/{task['id']}/answers", files={"audio": ("x.wav", b"not a recording", "audio/wav")}
    )
    assert bad.status_code == 415

    cancelled = command.client.post(f"/v1/tasks/{task['id']}/cancel", json={"note": "改为电话统计"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert command.client.post(f"/v1/tasks/{task['id']}/cancel").status_code == 200
    late = worker.client.post(f"/v1/tasks/{task['id']}/answers", json={"text": "补充"})
    assert late.status_code == 409
    assert inbox_item(worker, task["id"], lambda i: i["state"] == "cancelled")["attention"] == "cancelled"
    listed = worker.client.get("/v1/tasks", params={"role": "received", "state": "cancelled"}).json()
    assert task["id"] in [item["id"] for item in listed["items"]]
