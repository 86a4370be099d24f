"""The gateway's HTTP behaviour on a migrated SQLite database: bad input and failing dependencies
get clear JSON errors, never a 500, and a token is only as good as its account."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import Future
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.exc import DataError, IntegrityError

import services.intake
from lianhu.config import kit_settings
from lianhu.db import make_engine, make_session_factory, migrate
from lianhu.rpc_client import RemoteError, RpcClient
from services.intake.accounts import load_accounts
from services.intake.app import create_app
from services.intake.config import intake_settings
from services.intake.models import Account

MAX_BODY = 4096
ACCOUNTS = [
    {
        "username": name,
        "password": "s3cret-pass",
        "role": "liaison_worker",
        "person_id": 7,
        "org_unit": 70,
        "org_unit_name": "联户",
        "township": "江千乡",
    }
    for name in ("jq-lw", "jq-lw-2")
]


class StubRpc:
    """Stands in for the services: answers from ``answers``, or raises what is given there."""

    def __init__(self, **answers):
        self.answers = answers

    def call(self, service: str, method: str, *args, **kwargs):
        answer = self.answers.get(f"{service}.{method}")
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        pass


class Gateway:
    def __init__(self, app, sessions, client):
        self.app = app
        self.sessions = sessions
        self.client = client

    def token(self, username: str = "jq-lw") -> dict:
        response = self.client.post("/v1/auth/token", data={"username": username, "password": "s3cret-pass"})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def gateway(tmp_path, monkeypatch, amqp_uri):
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    for name, value in {
        "LIANHU_INTAKE_DATABASE_URL": url,
        "LIANHU_VAR_DIR": str(tmp_path),
        "LIANHU_SECRET_KEY": "unit-test-signing-key-" + "k" * 32,
        "LIANHU_AMQP_URI": amqp_uri,
        "LIANHU_MAX_BODY_BYTES": str(MAX_BODY),
        # Every request re-reads the account, so disabling one shows at once in these tests.
        "LIANHU_ACCOUNT_RECHECK_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    intake_settings.cache_clear()
    kit_settings.cache_clear()
    migrate(Path(services.intake.__file__).parent / "migrations", url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    load_accounts(sessions, ACCOUNTS)
    app = create_app()
    app.state.rpc = StubRpc(**{"notify.list_inbox": {"items": [], "total": 0}})
    # Entered, so the lifespan runs: the report writer and the outbox relay are up as in production.
    # 500s come back as responses, so a test can assert there are none.
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Gateway(app, sessions, client)
    app.state.rpc.close()
    engine.dispose()
    intake_settings.cache_clear()
    kit_settings.cache_clear()


def post_json(gateway: Gateway, path: str, raw: bytes, headers: dict):
    return gateway.client.post(path, content=raw, headers={**headers, "Content-Type": "application/json"})


# Strings that are not Unicode


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/reports", rb'{"text": "\udc80x"}'),
        ("/v1/reports", rb'{"text": "ok \ud800 then"}'),
        ("/v1/reports", b'{"text": "\xed\xb2\x80"}'),  # a surrogate sent as raw UTF-8 bytes
        ("/v1/routing/explain", rb'{"text": "x", "reporter": "\ud800"}'),
        ("/v1/routing/explain", rb'{"text": "\udfff"}'),
        ("/v1/reports", rb'{"text": "x", "\ud800": 1}'),  # in an unknown key's name
    ],
)
def test_lone_surrogates_are_refused_with_422(gateway, path, raw):
    response = post_json(gateway, path, raw, gateway.token())
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"


# Numbers the database cannot hold


def test_household_id_beyond_32_bits_is_422(gateway):
    headers = gateway.token()
    for household_id in (2**31, 2**70):
        response = gateway.client.post(
            "/v1/reports", json={"text": "ok", "household_id": household_id}, headers=headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_request"
    gateway.app.state.rpc = StubRpc(**{"registry.get_household": {"id": 2**31 - 1}})
    largest = gateway.client.post(
        "/v1/reports", json={"text": "ok", "household_id": 2**31 - 1}, headers=headers
    )
    assert largest.status_code == 201, largest.text


# A service that answers with an error


def test_a_failing_service_is_503_service_error_with_retry_after(gateway):
    gateway.app.state.rpc = StubRpc(
        **{"notify.list_inbox": RemoteError("OperationalError", "disk I/O error")}
    )
    response = gateway.client.get("/v1/inbox", headers=gateway.token())
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "service_error"
    assert "disk I/O" not in response.json()["detail"], "a service's internals stay inside"
    assert int(response.headers["Retry-After"]) > 0


def test_a_failing_registry_does_not_block_a_report(gateway):
    gateway.app.state.rpc = StubRpc(**{"registry.get_household": RemoteError("OperationalError", "locked")})
    response = gateway.client.post(
        "/v1/reports", json={"text": "牦牛病了", "household_id": 12}, headers=gateway.token()
    )
    assert response.status_code == 201, response.text
    assert response.json()["household_id"] == 12


# Database errors that slip past validation


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (
            IntegrityError("INSERT INTO reports", {}, Exception("FOREIGN KEY constraint failed")),
            409,
            "conflict",
        ),
        (DataError("INSERT INTO reports", {}, Exception("integer out of range")), 422, "invalid_value"),
    ],
)
def test_database_integrity_and_data_errors_are_json(gateway, monkeypatch, error, status, code):
    def failing_submit(*_args, **_kwargs):
        failed = Future()
        failed.set_exception(error)
        return failed

    monkeypatch.setattr(gateway.app.state.writer, "submit", failing_submit)
    response = gateway.client.post("/v1/reports", json={"text": "ok"}, headers=gateway.token())
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


# A token is only as good as its account


def test_a_disabled_account_token_stops_working(gateway):
    headers = gateway.token()
    assert gateway.client.get("/v1/inbox", headers=headers).status_code == 200
    with gateway.sessions.begin() as session:
        session.get(Account, "jq-lw").disabled = True
    for response in (
        gateway.client.get("/v1/inbox", headers=headers),
        gateway.client.post("/v1/reports", json={"text": "ok"}, headers=headers),
    ):
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": "invalid or expired token", "code": "unauthorized"}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert gateway.client.get("/v1/inbox", headers=gateway.token("jq-lw-2")).status_code == 200


def test_a_deleted_account_token_stops_working(gateway):
    headers = gateway.token("jq-lw-2")
    with gateway.sessions.begin() as session:
        session.execute(delete(Account).where(Account.username == "jq-lw-2"))
    response = gateway.client.post("/v1/reports", json={"text": "ok"}, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"


# Bodies over the limit, declared or streamed


def chunks(total: int, size: int = 1000):
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/v1/reports", "application/json"), ("/v1/auth/token", "application/x-www-form-urlencoded")],
)
def test_a_chunked_body_over_the_limit_is_413(gateway, path, content_type):
    headers = {"Content-Type": content_type, **gateway.token()}
    streamed = gateway.client.post(path, content=chunks(MAX_BODY * 3), headers=headers)
    assert "content-length" not in {name.lower() for name in streamed.request.headers}
    declared = gateway.client.post(path, content=b"x" * (MAX_BODY + 1), headers=headers)
    for response in (streamed, declared):
        assert response.status_code == 413, response.text
        assert response.json() == {
            "detail": f"request body larger than {MAX_BODY} bytes",
            "code": "payload_too_large",
        }


def test_a_chunked_body_within_the_limit_is_served(gateway):
    body = json.dumps({"text": "路" * 100}).encode()
    response = gateway.client.post(
        "/v1/reports",
        content=iter([body[:50], body[50:]]),
        headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4()), **gateway.token()},
    )
    assert response.status_code == 201, response.text


# The RPC client's connections are closed at shutdown


def test_shutdown_closes_the_rpc_client(gateway, monkeypatch):
    closed = []
    monkeypatch.setattr(RpcClient, "close", lambda self: closed.append(self))
    app = create_app()
    with TestClient(app):
        pass
    assert closed == [app.state.rpc]
