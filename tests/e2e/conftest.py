from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from lianhu.config import SERVICE_NAMES
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.platform import Platform, free_port, platform_env
from tests.support.tcp_proxy import TcpProxy


def _through(proxy: TcpProxy, amqp_uri: str) -> str:
    parts = urlsplit(amqp_uri)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def platform(request, amqp_uri, tmp_path_factory):
    """The whole platform on one engine, seeded with the demo county.

    The gateway reaches RabbitMQ through a proxy (``platform.broker_link``) that a test can cut.
    """
    var_dir = tmp_path_factory.mktemp(f"platform-{request.param}")
    urls = {}
    if request.param == "postgresql":
        urls = {service: create_pg_database() for service in SERVICE_NAMES}
    parts = urlsplit(amqp_uri)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    port = free_port()
    platform = Platform(platform_env(var_dir, amqp_uri, urls, port), var_dir, f"http://127.0.0.1:{port}")
    platform.engine = request.param
    platform.broker_link = proxy
    try:
        platform.prepare_demo_county()
        for name in ("registry", "routing", "notify"):
            platform.start(name)
        platform.start("intake", env={"LIANHU_AMQP_URI": _through(proxy, amqp_uri)})
        platform.wait_ready()
        yield platform
    finally:
        platform.stop_all()
        proxy.close()
        for url in urls.values():
            drop_pg_database(url)


class Session:
    """One signed-in user of the gateway."""

    def __init__(self, platform: Platform, account: dict):
        self.account = account
        self.client = httpx.Client(base_url=platform.base_url, timeout=30)
        response = self.client.post(
            "/v1/auth/token", data={"username": account["username"], "password": account["password"]}
        )
        assert response.status_code == 200, response.text
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def wait_for(self, predicate, path: str, timeout: float = 30.0):
        """Poll ``path`` until ``predicate(json)`` holds; the pipeline is asynchronous."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.client.get(path)
            body = response.json()
            if response.status_code == 200 and predicate(body):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting on {path}; last: {body}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def sign_in(platform):
    sessions = []

    def _sign_in(predicate) -> Session:
        account = next(a for a in platform.accounts() if predicate(a))
        session = Session(platform, account)
        sessions.append(session)
        return session

    yield _sign_in
    for session in sessions:
        session.client.close()
