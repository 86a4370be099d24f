"""Test philosophy: real parts, really used.

- ``tests/unit``: plain modules (classification, recipients, seed, outbox) against real SQLite and
  PostgreSQL databases made fresh per test; no broker.
- ``tests/integration``: each nameko service in a container against the real RabbitMQ.
- ``tests/e2e``: every service as its own process, as ``make run`` starts them, once on SQLite and
  once on PostgreSQL.

The broker and PostgreSQL are the machine's own (``.ci/run`` starts them if they are down); each test
gets its own virtual-host-free queue names or databases so runs never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from urllib.parse import quote

import psycopg2
import pytest

PG_ADMIN_URL = os.environ.get("LIANHU_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URI = os.environ.get("LIANHU_TEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")


def _pg_admin(statement: str) -> None:
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
    _pg_admin(f'CREATE DATABASE "{name}"')
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_pg_database(url: str) -> None:
    _pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


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


@pytest.fixture(scope="session")
def amqp_uri():
    """A RabbitMQ virtual host of this test session's own, so a running ``make run`` (or another
    session) never takes this session's messages; the broker's default vhost where rabbitmqctl is
    not available (a remote broker)."""
    if os.environ.get("LIANHU_TEST_AMQP_URI") or shutil.which("rabbitmqctl") is None:
        yield AMQP_URI
        return
    vhost = f"lianhu-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"{AMQP_URI.rstrip('/')}/{quote(vhost, safe='')}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
