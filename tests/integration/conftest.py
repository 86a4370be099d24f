from __future__ import annotations

import eventlet.patcher
import pytest

from lianhu.config import kit_settings


def pytest_configure(config):
    if not eventlet.patcher.is_monkey_patched("socket"):
        raise pytest.UsageError(
            "nameko integration tests need eventlet's monkey patch: "
            "run `pytest -p tests.support.green tests/integration` (make test does)"
        )


@pytest.fixture
def lianhu_env(amqp_uri, monkeypatch, tmp_path):
    """Point the kit's settings at this session's broker vhost and fresh databases under tmp_path."""
    monkeypatch.setenv("LIANHU_AMQP_URI", amqp_uri)
    monkeypatch.setenv("LIANHU_VAR_DIR", str(tmp_path))
    kit_settings.cache_clear()
    yield {"AMQP_URI": amqp_uri}
    kit_settings.cache_clear()
