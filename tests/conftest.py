"""Test philosophy: real parts, really used.

- ``tests/unit``: plain modules (classification, recipients, seed, outbox) against real SQLite and
  PostgreSQL databases made fresh per test; no services (the RPC client's tests bring a stand-in).
- ``tests/integration``: each nameko service in a container against the real RabbitMQ.
- ``tests/e2e``: every service as its own process, as ``make run`` starts them, once on SQLite and
  once on PostgreSQL.

The broker and PostgreSQL are the machine's own (``.ci/run`` starts them if they are down); each test
gets its own virtual-host-free queue names or databases so runs never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
import warnings
from urllib.parse import quote

import psycopg2
import pytest

PG_ADMIN_URL = os.environ.get("LIANHU_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URI = os.environ.get("LIANHU_TEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")


def pg_admin(statement: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE refuse to run inside one)."""
    connection = psycopg2.connect(PG_ADMIN_URL)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def create_pg_database() -> str:
    name = f"lianhu_t_{uuid.uuid4().hex[:12]}"
    pg_admin(f'CREATE DATABASE "{name}"')
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_pg_database(url: str) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _delete_vhost(vhost: str) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


def make_test_vhost() -> str | None:
    """A fresh virtual host open to ``guest``, or ``None`` (with a warning) where rabbitmqctl may
    not make one, e.g. when not run as root: the tests then share the default vhost."""
    vhost = f"lianhu-test-{uuid.uuid4().hex[:8]}"
    try:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    except (OSError, subprocess.SubprocessError) as error:
        _delete_vhost(vhost)
        detail = getattr(error, "stderr", None) or error
        warnings.warn(
            f"rabbitmqctl could not make a test vhost ({detail!r}); using the broker's default vhost",
            stacklevel=2,
        )
        return None
    return vhost


@pytest.fixture(scope="session")
def amqp_uri():
    """A RabbitMQ virtual host of this test session's own, so a running ``make run`` (or another
    session) never takes this session's messages; the broker's default vhost where rabbitmqctl is
    not available (a remote broker) or may not make one."""
    vhost = None
    if not os.environ.get("LIANHU_TEST_AMQP_URI") and shutil.which("rabbitmqctl") is not None:
        vhost = make_test_vhost()
    if vhost is None:
        yield AMQP_URI
        return
    try:
        yield f"{AMQP_URI.rstrip('/')}/{quote(vhost, safe='')}"
    finally:
        _delete_vhost(vhost)
