"""routing's clock and actions as nameko services on the real broker, days compressed to seconds
(``LIANHU_TIME_SCALE``): a case nobody answers climbs the ladder and each level hears it once; an
action over RPC reaches the reporter's inbox."""

from __future__ import annotations

import json

import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from lianhu.bus import ConfirmedPublisher
from lianhu.config import kit_settings
from lianhu.db import migrate
from lianhu.topology import declare
from services.notify.service import NotifyService
from services.registry.service import RegistryService
from services.routing.config import routing_settings
from services.routing.service import RoutingService
from tests.integration.test_report_pipeline import (  # noqa: F401 - the module fixture
    ROOT,
    delete_queues,
    rows,
    seeded_registry_file,
    send,
    submitted,
    wait_until,
)


@pytest.fixture
def services(lianhu_env, seeded_registry_file, monkeypatch, tmp_path, runner_factory):  # noqa: F811
    registry_url, accounts = seeded_registry_file
    urls = {"registry": registry_url}
    for service in ("routing", "notify"):
        urls[service] = f"sqlite:///{tmp_path / service}.db"
        migrate(ROOT / f"services/{service}/migrations", urls[service])
    for service, url in urls.items():
        monkeypatch.setenv(f"LIANHU_{service.upper()}_DATABASE_URL", url)
    # A day is 0.864 s, a week 6 s.
    monkeypatch.setenv("LIANHU_TIME_SCALE", "0.00001")
    monkeypatch.setenv("LIANHU_CLOCK_TICK_SECONDS", "0.1")
    kit_settings.cache_clear()
    routing_settings.cache_clear()
    delete_queues()
    declare(kit_settings())
    runner = runner_factory(lianhu_env, RegistryService, RoutingService, NotifyService)
    runner.start()
    publisher = ConfirmedPublisher(kit_settings())
    yield {"urls": urls, "accounts": accounts, "publish": publisher, "config": lianhu_env}
    publisher.close()
    routing_settings.cache_clear()


def account(services, role: str, unit: int | None = None) -> dict:
    return next(
        a for a in services["accounts"] if a["role"] == role and (unit is None or a["org_unit"] == unit)
    )


def route(services, text: str) -> tuple[dict, str]:
    worker = next(a for a in services["accounts"] if a["role"] == "liaison_worker")
    event = submitted(worker, text)
    send(services, event, event.event_id)
    wait_until(
        lambda: rows(
            services["urls"]["routing"], "SELECT id FROM cases WHERE report_id = :r", r=event.report_id
        )
    )
    return worker, event.report_id


def notices(services, report_id: str) -> list[tuple]:
    """(kind, unit, role) of every notice notify kept for the report, in order."""
    return rows(
        services["urls"]["notify"],
        "SELECT kind, org_unit_id, role FROM inbox_notices WHERE case_id ="
        " (SELECT case_id FROM inbox_items WHERE report_id = :r LIMIT 1) ORDER BY id",
        r=report_id,
    )


def test_an_unanswered_urgent_case_climbs_to_the_department_each_level_told_once(services):
    _, report_id = route(services, "牧民家里的老人突然昏迷不醒，需要马上送医院")
    routing = services["urls"]["routing"]

    def at_the_top():
        found = rows(routing, "SELECT escalations FROM cases WHERE report_id = :r", r=report_id)
        return found and found[0][0] == 3

    wait_until(at_the_top, timeout=60)
    levels = rows(
        routing,
        "SELECT e.detail FROM case_events e JOIN cases c ON c.id = e.case_id"
        " WHERE c.report_id = :r AND e.kind = 'escalated' ORDER BY e.id",
        r=report_id,
    )
    rungs = [json.loads(detail)["to_unit"] for (detail,) in levels]
    assert [unit["kind"] for unit in rungs] == ["township", "county", "department"]

    def escalations_told():
        told = [(unit, role) for kind, unit, role in notices(services, report_id) if kind == "escalated"]
        return told if {(unit["id"], "handler") for unit in rungs} <= set(told) else None

    told = wait_until(escalations_told)
    # Each level was told once that it must act now, each handler once that it moved up from it.
    assert [unit for unit, role in told if role == "handler"] == [unit["id"] for unit in rungs]
    assert len(told) == len(set(told))


def test_a_resolution_over_rpc_reaches_the_reporters_inbox(services):
    worker, report_id = route(services, "请问今年的草原补助什么时候发放？")
    handler_unit = rows(
        services["urls"]["routing"], "SELECT handler_unit_id FROM cases WHERE report_id = :r", r=report_id
    )[0][0]
    grid = account(services, "village_grid", handler_unit)
    actor = {"username": grid["username"], "role": grid["role"], "org_unit_id": grid["org_unit"]}
    with ServiceRpcProxy("routing", services["config"]) as routing:
        answer = routing.act(
            report_id, actor, {"action": "resolve", "note": "已告知发放时间", "action_id": "a-1"}
        )
        assert answer["state"] == "resolved", answer
        assert routing.act(
            report_id, actor, {"action": "resolve", "note": "已告知发放时间", "action_id": "a-1"}
        )["replayed"]
        stranger = {"username": "x", "role": "village_grid", "org_unit_id": 999999}
        assert routing.act(report_id, stranger, {"action": "comment", "note": "?"})["refused"] == "not_found"
    wait_until(
        lambda: rows(
            services["urls"]["notify"],
            "SELECT note FROM inbox_notices WHERE org_unit_id = :u AND kind = 'resolved'",
            u=worker["org_unit"],
        )
    )
