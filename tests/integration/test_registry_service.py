"""The registry nameko service in a real container on the real RabbitMQ, over a seeded SQLite file.

Run with eventlet patched (``python -m pytest -p tests.support.green tests/integration``); the
``lianhu_env`` fixture puts the container on this session's own virtual host.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from lianhu.config import kit_settings
from lianhu.db import make_engine, make_session_factory, migrate
from services.registry.seed import seed_demo
from services.registry.service import RegistryService

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"
RPC_TIMEOUT = 10  # nameko 2 RPC waits for ever by default; a hung service must fail the test


@pytest.fixture(scope="module")
def seeded_registry(tmp_path_factory):
    """One seeded SQLite registry for the module: the service only reads it."""
    root = tmp_path_factory.mktemp("registry")
    url = f"sqlite:///{root / 'registry.db'}"
    migrate(MIGRATIONS, url)
    engine = make_engine(url)
    result = seed_demo(make_session_factory(engine), root / "var")
    engine.dispose()
    return url, result


@pytest.fixture
def registry(lianhu_env, seeded_registry, container_factory, monkeypatch):
    """The service in a container over the seeded file; yields an RPC proxy to it."""
    monkeypatch.setenv("LIANHU_REGISTRY_DATABASE_URL", seeded_registry[0])
    kit_settings.cache_clear()
    container = container_factory(RegistryService, lianhu_env)
    container.start()
    with ServiceRpcProxy(RegistryService.name, lianhu_env, timeout=RPC_TIMEOUT) as proxy:
        yield proxy


def test_rpc_answers_from_the_seeded_registry(registry, seeded_registry):
    _, seeded = seeded_registry
    summary = registry.summary()
    assert summary["townships"] == 7 and summary["households"] == seeded["households"]
    jiangqian = next(t for t in summary["by_township"] if t["name"] == "江千乡")
    assert (
        jiangqian["villages"],
        jiangqian["liaison_units"],
        jiangqian["households"],
        jiangqian["members"],
    ) == (
        4,
        242,
        1136,
        4292,
    )

    centre = registry.governance_centre()
    assert centre["unit"]["name"] == "甘德县综治中心" and centre["head"]["name"]

    health = registry.department("health")
    assert health["unit"]["name"] == "卫生健康局"
    assert registry.department("nope") is None

    household = registry.get_household(1)
    assert household["id"] == 1 and household["members"] >= 1
    chain = registry.chain_above(household["liaison_unit_id"])
    assert [link["unit"]["kind"] for link in chain] == ["liaison", "village", "township", "county"]
    assert registry.handler_of(chain[1]["unit"]["id"]) == chain[1]

    context = registry.reporter_context(chain[0]["unit"]["id"], household_id=1)
    assert context["household_found"] is True and context["chain"] == chain
    assert context["governance_centre"] == centre
    # Positional household id, as a caller without kwargs would send it.
    assert registry.reporter_context(chain[0]["unit"]["id"], 1) == context
    alone = registry.reporter_context(chain[1]["unit"]["id"])
    assert alone["household"] is None and alone["chain"] == chain[1:]


def test_bad_arguments_answer_empty(registry):
    # A gateway relaying phone input may send ids as strings, floats, nulls or worse.
    for bad in ("1", 1.5, None, True, [1], {"id": 1}, -3, 2**40):
        assert registry.chain_above(bad) == [], bad
        assert registry.handler_of(bad) is None, bad
        assert registry.get_household(bad) is None, bad
        context = registry.reporter_context(bad, bad)
        assert context["unit"] is None and context["chain"] == [] and context["household_found"] is False
        # The report still gets its parallel copy to the governance centre.
        assert context["governance_centre"]["unit"]["kind"] == "governance_centre"
        if not isinstance(bad, str):
            assert registry.department(bad) is None, bad
    # Still up and well after all of them.
    assert registry.governance_centre() is not None


def test_unknown_ids_answer_empty(registry):
    assert registry.chain_above(999_999) == []
    assert registry.handler_of(999_999) is None
    assert registry.get_household(999_999) is None
    context = registry.reporter_context(999_999, household_id=999_999)
    assert context == {**context, "unit": None, "household": None, "household_found": False, "chain": []}
