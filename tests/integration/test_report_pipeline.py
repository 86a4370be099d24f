"""routing and notify as nameko services on the real broker, fed by the real outbox publisher.

The registry runs too (seeded SQLite), so routing's RPC reads are real. Each test runs on this
session's own RabbitMQ virtual host.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kombu import Connection

from lianhu.bus import ConfirmedPublisher
from lianhu.config import kit_settings
from lianhu.db import make_engine, make_session_factory, migrate
from lianhu.events import AudioRef, Reporter, ReportSubmitted, ReportTranscribed, TranscriptionFailed, utcnow
from lianhu.topology import SUBSCRIPTIONS, declare, subscription
from services.notify.service import NotifyService
from services.registry.seed import seed_demo
from services.registry.service import RegistryService
from services.routing.service import RoutingService

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def seeded_registry_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    url = f"sqlite:///{root / 'registry.db'}"
    migrate(ROOT / "services/registry/migrations", url)
    engine = make_engine(url)
    seed_demo(make_session_factory(engine), root)
    engine.dispose()
    return url, json.loads((root / "demo-accounts.json").read_text())


@pytest.fixture
def queue_type(request) -> str:
    return getattr(request, "param", "quorum")


@pytest.fixture
def platform(lianhu_env, seeded_registry_file, monkeypatch, tmp_path, runner_factory, queue_type):
    registry_url, accounts = seeded_registry_file
    urls = {"registry": registry_url}
    for service in ("routing", "notify"):
        urls[service] = f"sqlite:///{tmp_path / service}.db"
        migrate(ROOT / f"services/{service}/migrations", urls[service])
    for service, url in urls.items():
        monkeypatch.setenv(f"LIANHU_{service.upper()}_DATABASE_URL", url)
    monkeypatch.setenv("LIANHU_DELIVERY_LIMIT", "2")
    monkeypatch.setenv("LIANHU_QUEUE_TYPE", queue_type)
    kit_settings.cache_clear()
    delete_queues()
    declare(kit_settings())
    runner = runner_factory(lianhu_env, RegistryService, RoutingService, NotifyService)
    runner.start()
    publisher = ConfirmedPublisher(kit_settings())
    yield {"urls": urls, "accounts": accounts, "publish": publisher, "runner": runner}
    publisher.close()


def delete_queues() -> None:
    """A clean slate per test, also when the queue type changes between tests."""
    with Connection(kit_settings().amqp_uri) as connection:
        channel = connection.default_channel
        for sub in SUBSCRIPTIONS:
            channel.queue_delete(sub.queue)
            channel.queue_delete(sub.dead_letter_queue)


def queue_depth(name: str) -> int:
    with Connection(kit_settings().amqp_uri) as connection:
        return connection.default_channel.queue_declare(name, passive=True).message_count


def submitted(account: dict, text: str) -> ReportSubmitted:
    return ReportSubmitted(
        report_id=f"r-{time.monotonic_ns()}",
        text=text,
        reporter=Reporter(
            username=account["username"],
            person_id=account["person_id"],
            org_unit_id=account["org_unit"],
            role=account["role"],
        ),
        submitted_at=utcnow(),
    )


def send(platform, event_or_body, event_id: str = "x") -> None:
    body = event_or_body.to_wire() if hasattr(event_or_body, "to_wire") else event_or_body
    platform["publish"].publish("intake.events", "report_submitted", json.dumps(body).encode(), event_id)


def rows(url: str, sql: str, **params) -> list[tuple]:
    from tests.support.platform import query

    return query(url, sql, **params)


def wait_until(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def test_report_becomes_a_case_and_one_inbox_item_per_recipient(platform):
    worker = next(a for a in platform["accounts"] if a["role"] == "liaison_worker")
    event = submitted(worker, "家里老人昏迷不醒，情况紧急")
    send(platform, event, event.event_id)
    urls = platform["urls"]

    def delivered():
        found = rows(
            urls["notify"], "SELECT role, position FROM inbox_items WHERE report_id = :r", r=event.report_id
        )
        return found if len(found) >= 4 else None

    items = wait_until(delivered)
    assert sorted(items, key=lambda item: item[1]) == [
        ("copy", "department"),
        ("copy", "governance_centre"),
        ("copy", "township_command"),
        ("handler", "village_grid"),
    ]
    case = rows(
        urls["routing"], "SELECT category, urgency, state FROM cases WHERE report_id = :r", r=event.report_id
    )
    assert case == [("illness", "urgent", "routed")]


def test_redelivered_report_makes_no_second_case_and_no_second_item(platform):
    worker = next(a for a in platform["accounts"] if a["role"] == "liaison_worker")
    event = submitted(worker, "请问低保怎么申请")
    for _ in range(3):
        send(platform, event, event.event_id)
    urls = platform["urls"]
    wait_until(
        lambda: rows(urls["notify"], "SELECT 1 FROM inbox_items WHERE report_id = :r", r=event.report_id)
    )
    # Let the duplicates drain through both services before counting.
    wait_until(lambda: queue_depth(subscription("routing", ReportSubmitted).queue) == 0)
    time.sleep(1.0)
    assert rows(urls["routing"], "SELECT count(*) FROM cases WHERE report_id = :r", r=event.report_id) == [
        (1,)
    ]
    assert rows(
        urls["notify"], "SELECT count(*) FROM inbox_items WHERE report_id = :r", r=event.report_id
    ) == [(2,)]


def test_malformed_event_goes_straight_to_the_dead_letter_queue(platform):
    send(platform, {"report_id": "broken", "reporter": "not an object"})
    dead = subscription("routing", ReportSubmitted).dead_letter_queue
    wait_until(lambda: queue_depth(dead) == 1)
    assert rows(platform["urls"]["routing"], "SELECT count(*) FROM cases") == [(0,)]


def test_an_outage_delays_a_report_but_never_parks_it(platform, container_factory, lianhu_env, monkeypatch):
    monkeypatch.setenv("LIANHU_RPC_TIMEOUT_SECONDS", "1")
    kit_settings.cache_clear()
    worker = next(a for a in platform["accounts"] if a["role"] == "liaison_worker")
    next(c for c in platform["runner"].containers if c.service_name == "registry").stop()
    event = submitted(worker, "路断了")
    send(platform, event, event.event_id)
    urls = platform["urls"]
    # Well past the delivery limit of 2: routing keeps retrying while the registry is away.
    time.sleep(6)
    assert rows(urls["routing"], "SELECT count(*) FROM cases") == [(0,)]
    assert queue_depth(subscription("routing", ReportSubmitted).dead_letter_queue) == 0
    container_factory(RegistryService, lianhu_env).start()
    wait_until(
        lambda: rows(urls["notify"], "SELECT 1 FROM inbox_items WHERE report_id = :r", r=event.report_id),
        timeout=60,
    )
    assert rows(urls["routing"], "SELECT count(*) FROM cases WHERE report_id = :r", r=event.report_id) == [
        (1,)
    ]


@pytest.mark.parametrize("queue_type", ["quorum", "classic"], indirect=True)
def test_a_failing_handler_is_dead_lettered_then_redriven_after_the_fix(platform, capsys):
    from lianhu import cli, deadletters
    from services.routing import cases

    worker = next(a for a in platform["accounts"] if a["role"] == "liaison_worker")

    def broken_record_case(*_args):
        raise ValueError("a bug in routing")

    event = submitted(worker, "草场边界有纠纷")
    sub = subscription("routing", ReportSubmitted)
    with pytest.MonkeyPatch.context() as bug:
        bug.setattr(cases, "record_case", broken_record_case)
        send(platform, event, event.event_id)
        wait_until(lambda: queue_depth(sub.dead_letter_queue) == 1, timeout=30)
        assert queue_depth(sub.queue) == 0
        assert rows(platform["urls"]["routing"], "SELECT count(*) FROM cases") == [(0,)]
    # The operator sees it parked, deploys the fix and sends it back, with the command line.
    assert deadletters.counts(kit_settings())[sub.dead_letter_queue] == 1
    capsys.readouterr()
    assert cli.main(["status"]) == 1
    shown = capsys.readouterr()
    assert f"{sub.queue}\t0\t" in shown.out and f"{sub.dead_letter_queue} holds 1" in shown.err
    assert cli.main(["redrive", sub.queue]) == 0
    assert "1 dead letters sent back" in capsys.readouterr().out
    wait_until(
        lambda: rows(
            platform["urls"]["notify"], "SELECT 1 FROM inbox_items WHERE report_id = :r", r=event.report_id
        )
    )
    assert queue_depth(sub.dead_letter_queue) == 0
    # Delivered exactly once: one case, one item per recipient, even after another redrive.
    assert cli.main(["redrive", "all"]) == 0
    [(case_id, recipients)] = rows(
        platform["urls"]["routing"],
        "SELECT c.id, count(r.id) FROM cases c JOIN case_recipients r ON r.case_id = c.id"
        " WHERE c.report_id = :r GROUP BY c.id",
        r=event.report_id,
    )
    items = rows(
        platform["urls"]["notify"], "SELECT org_unit_id FROM inbox_items WHERE case_id = :c", c=case_id
    )
    assert len(items) == len(set(items)) == recipients


def test_a_voice_report_is_delivered_at_once_then_rerouted_by_its_transcript(platform):
    worker = next(a for a in platform["accounts"] if a["role"] == "liaison_worker")
    urls = platform["urls"]
    event = submitted(worker, "").model_copy(
        update={
            "audio": AudioRef(sha256="b" * 64, media_type="audio/amr", size_bytes=3287, duration_seconds=5.0)
        }
    )
    # The transcript may outrun the report's routing: it waits (retried) until the case exists.
    transcript = ReportTranscribed(
        report_id=event.report_id,
        text="家里 老人 昏迷 不醒 情况 紧急",
        language="zh",
        engine="vosk",
        model="test",
        audio_seconds=5.0,
        decode_seconds=0.7,
    )
    platform["publish"].publish(
        "speech.events", "report_transcribed", json.dumps(transcript.to_wire()).encode(), transcript.event_id
    )
    time.sleep(0.3)
    send(platform, event, event.event_id)

    def items():
        found = rows(
            urls["notify"],
            "SELECT position, category, urgency, revision, has_audio, transcription FROM inbox_items "
            "WHERE report_id = :r",
            r=event.report_id,
        )
        return found if len(found) == 4 and all(row[3] == 2 for row in found) else None

    delivered = wait_until(items, timeout=40)
    assert {row[0] for row in delivered} == {
        "village_grid",
        "governance_centre",
        "township_command",
        "department",
    }
    assert {row[1:] for row in delivered} == {("illness", "urgent", 2, True, "done")}
    case = rows(
        urls["routing"],
        "SELECT transcription, transcript, revision FROM cases WHERE report_id = :r",
        r=event.report_id,
    )
    assert case == [("done", transcript.text, 2)]
    # The same transcript again (a redelivery) changes nothing and adds no item.
    platform["publish"].publish(
        "speech.events", "report_transcribed", json.dumps(transcript.to_wire()).encode(), transcript.event_id
    )
    time.sleep(1)
    assert (
        len(rows(urls["notify"], "SELECT id FROM inbox_items WHERE report_id = :r", r=event.report_id)) == 4
    )
    assert rows(urls["routing"], "SELECT revision FROM cases WHERE report_id = :r", r=event.report_id) == [
        (2,)
    ]


def test_a_failed_transcription_leaves_the_case_with_its_recording(platform):
    worker = next(a for a in platform["accounts"] if a["role"] == "liaison_worker")
    urls = platform["urls"]
    event = submitted(worker, "").model_copy(
        update={
            "audio": AudioRef(sha256="c" * 64, media_type="audio/ogg", size_bytes=100, duration_seconds=1.0)
        }
    )
    send(platform, event, event.event_id)
    wait_until(lambda: rows(urls["routing"], "SELECT id FROM cases WHERE report_id = :r", r=event.report_id))
    failed = TranscriptionFailed(
        report_id=event.report_id, language="bo", reason="no_model", detail="no bo model"
    )
    platform["publish"].publish(
        "speech.events", "transcription_failed", json.dumps(failed.to_wire()).encode(), failed.event_id
    )
    assert wait_until(
        lambda: rows(
            urls["routing"],
            "SELECT transcription FROM cases WHERE report_id = :r AND transcription = 'failed'",
            r=event.report_id,
        )
    )
