"""The gateway's HTTP behaviour on a migrated SQLite database: bad input and failing dependencies
get clear JSON errors, never a 500, and a token is only as good as its account."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from concurrent.futures import Future
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from sqlalchemy.exc import DataError, IntegrityError

import services.intake
from lianhu.config import kit_settings
from lianhu.db import make_engine, make_session_factory, migrate
from lianhu.rpc_client import RemoteError, RpcClient, RpcUnavailable
from services.intake.accounts import load_accounts
from services.intake.api.ratelimit import RateLimits
from services.intake.app import create_app
from services.intake.config import intake_settings
from services.intake.models import Account, AuthEvent, Report, outbox

MAX_BODY = 4096
AUDIO_MAX_BYTES = 512 * 1024
AUDIO_MAX_SECONDS = 20
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
] + [
    {
        "username": "centre-1",
        "password": "s3cret-pass",
        "role": "governance_centre",
        "person_id": 2,
        "org_unit": 2,
        "org_unit_name": "综治中心",
    }
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
        # Every request signs in again here; the limits get their own tests below.
        "LIANHU_LOGIN_RATE_PER_ACCOUNT": "",
        "LIANHU_LOGIN_RATE_PER_ADDRESS": "",
        "LIANHU_AUDIO_MAX_BYTES": str(AUDIO_MAX_BYTES),
        "LIANHU_AUDIO_MAX_SECONDS": str(AUDIO_MAX_SECONDS),
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


# The registry's answers as HTTP


class RecordingRpc(StubRpc):
    def __init__(self, **answers):
        super().__init__(**answers)
        self.calls: list[tuple[str, tuple, dict]] = []

    def call(self, service: str, method: str, *args, **kwargs):
        self.calls.append((f"{service}.{method}", args, kwargs))
        return super().call(service, method, *args, **kwargs)

    def call_within(self, timeout: float, service: str, method: str, *args, **kwargs):
        return self.call(service, method, *args, **kwargs)


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        ({"refused": "not_found", "detail": "no household 5"}, 404, "not_found"),
        ({"refused": "forbidden", "detail": "no"}, 403, "forbidden"),
        ({"refused": "conflict", "detail": "changed"}, 409, "conflict"),
        ({"refused": "reason_required", "detail": "why?"}, 403, "reason_required"),
        (
            {"errors": [{"field": "lat", "message_zh": "纬度", "message_en": "bad lat"}]},
            422,
            "invalid_record",
        ),
        (RpcUnavailable("registry.update_household did not answer"), 503, "service_unavailable"),
    ],
)
def test_registry_refusals_become_http_statuses(gateway, answer, status, code):
    gateway.app.state.rpc = RecordingRpc(**{"registry.update_household": answer})
    response = gateway.client.patch("/v1/households/5", json={"lat": 1}, headers=gateway.token())
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    if status == 422:
        assert response.json()["errors"][0]["field"] == "lat"


@pytest.mark.parametrize(("if_match", "version"), [('"3"', 3), ('W/"3"', 3), ("*", None), (None, None)])
def test_if_match_carries_the_version_read(gateway, if_match, version):
    rpc = RecordingRpc(**{"registry.update_household": {"id": 5, "version": 4}})
    gateway.app.state.rpc = rpc
    headers = {**gateway.token(), **({"If-Match": if_match} if if_match else {})}
    response = gateway.client.patch("/v1/households/5", json={"address": "x"}, headers=headers)
    assert response.status_code == 200 and response.headers["ETag"] == '"4"'
    [(_, args, kwargs)] = rpc.calls
    assert args[:2] == (5, {"address": "x"}) and kwargs == {"expected_version": version}
    assert args[2] == {"username": "jq-lw", "role": "liaison_worker", "org_unit_id": 70}


def test_a_file_that_is_not_a_scan_never_reaches_the_registry(gateway):
    rpc = RecordingRpc()
    gateway.app.state.rpc = rpc
    response = gateway.client.post(
        "/v1/households/5/documents",
        data={"kind": "hukou"},
        files={"file": ("scan.jpg", b"GIF89a pretending", "image/jpeg")},
        headers=gateway.token(),
    )
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    assert rpc.calls == []


def test_a_refused_import_lists_its_problems(gateway):
    errors = [{"row": 3, "column": "身份证号", "message_zh": "校验位错误", "message_en": "check character"}]
    gateway.app.state.rpc = RecordingRpc(
        **{
            "registry.import_file": {
                "imported": False,
                "errors": errors,
                "error_count": 1,
                "errors_truncated": False,
            }
        }
    )
    response = gateway.client.post(
        "/v1/registry/import",
        files={"file": ("a.csv", "户口簿编号\n".encode(), "text/csv")},
        headers=gateway.token(),
    )
    assert response.status_code == 422
    assert (
        response.json() | {"errors": errors} == response.json() and response.json()["code"] == "invalid_file"
    )


def test_a_download_names_its_file_in_utf8(gateway):
    gateway.app.state.rpc = RecordingRpc(
        **{
            "registry.export_households": {
                "content_b64": "YSxi",
                "media_type": "text/csv; charset=utf-8",
                "filename": "江千乡.csv",
                "id_numbers": "masked",
            }
        }
    )
    response = gateway.client.get("/v1/registry/export?format=csv", headers=gateway.token())
    assert response.status_code == 200 and response.content == b"a,b"
    assert "filename*=UTF-8''%E6%B1%9F%E5%8D%83%E4%B9%A1.csv" in response.headers["content-disposition"]
    assert response.headers["cache-control"] == "no-store"


# Voice reports: real recordings through the real ffmpeg, into the real blob store


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, bytes]:
    """One spoken sentence in every format phones send, and a clip past the length limit."""
    folder = tmp_path_factory.mktemp("recordings")
    wav = folder / "clip.wav"
    _run("espeak-ng", "-v", "zh", "-w", str(wav), "牧民家里的老人突然昏迷不醒")
    for extension, codec in {"webm": "libopus", "ogg": "libopus", "mp3": "libmp3lame", "m4a": "aac"}.items():
        _run(
            "ffmpeg",
            "-nostdin",
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(wav),
            "-c:a",
            codec,
            str(folder / f"clip.{extension}"),
        )
    _run("sox", str(wav), "-r", "8000", "-c", "1", "-t", "amr-nb", str(folder / "clip.amr"))
    long = folder / "long.ogg"
    _run(
        "ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
        "-t", str(AUDIO_MAX_SECONDS + 1), "-c:a", "libopus", str(long),
    )  # fmt: skip
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def send_voice(
    gateway: Gateway, data: bytes, filename: str = "clip.ogg", headers: dict | None = None, **fields
):
    return gateway.client.post(
        "/v1/reports",
        data=fields,
        files={"audio": (filename, data, "application/octet-stream")},
        headers={**gateway.token(), **(headers or {})},
    )


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("clip.wav", "audio/wav"),
        ("clip.amr", "audio/amr"),
        ("clip.ogg", "audio/ogg"),
        ("clip.webm", "audio/webm"),
        ("clip.m4a", "audio/mp4"),
        ("clip.mp3", "audio/mpeg"),
    ],
)
def test_every_phone_format_is_accepted_and_stored_as_sent(gateway, recordings, name, media_type):
    response = send_voice(gateway, recordings[name], name)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["audio"]["media_type"] == media_type and body["transcription"] == "pending"
    assert 4 < body["audio"]["seconds"] < 7 and body["audio"]["bytes"] == len(recordings[name])
    assert body["language"] == "bo"  # "auto": the liaison worker's own language
    with gateway.sessions() as session:
        [event] = [
            json.loads(row.body)
            for row in session.execute(outbox.select())
            if json.loads(row.body)["report_id"] == body["id"]
        ]
    assert event["audio"]["sha256"] == hashlib.sha256(recordings[name]).hexdigest()
    assert event["text"] == "" and event["language"] == "bo"
    played = gateway.client.get(body["audio"]["url"], headers=gateway.token())
    assert played.status_code == 200 and played.content == recordings[name]
    assert played.headers["content-type"].startswith(media_type)


def test_a_recording_is_served_in_ranges_to_those_allowed(gateway, recordings):
    gateway.app.state.rpc = RecordingRpc(**{"routing.get_case": None})
    data = recordings["clip.webm"]
    body = send_voice(gateway, data, text="  补充：在冬季牧场 ", language="zh").json()
    assert body["text"] == "补充：在冬季牧场" and body["language"] == "zh"
    url = body["audio"]["url"]
    part = gateway.client.get(url, headers={**gateway.token(), "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = gateway.client.get(url, headers={**gateway.token(), "Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    # Another liaison worker, whom routing does not show the case, hears nothing of it.
    stranger = gateway.token("jq-lw-2")
    assert gateway.client.get(url, headers=stranger).status_code == 404
    gateway.app.state.rpc = RecordingRpc(**{"routing.get_case": {"state": "routed"}})
    assert gateway.client.get(url, headers=stranger).status_code == 200
    [(_, (_, actor), _)] = gateway.app.state.rpc.calls
    assert actor["username"] == "jq-lw-2"
    assert gateway.client.get("/v1/reports/nope/audio", headers=stranger).status_code == 404


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda r: b"", 422, "empty_audio"),
        (lambda r: b"%PDF-1.4 a document", 415, "unsupported_media_type"),
        (lambda r: "牧民家里的老人".encode(), 415, "unsupported_media_type"),
        (lambda r: b"OggS" + os.urandom(4000), 422, "corrupt_audio"),
        (lambda r: r["clip.wav"][:60], 422, "corrupt_audio"),  # a header and nothing after it
        (lambda r: r["long.ogg"], 413, "audio_too_long"),
        (lambda r: b"RIFF\x00\x00\x00\x00WAVE" + bytes(AUDIO_MAX_BYTES), 413, "payload_too_large"),
    ],
)
def test_bad_recordings_get_clear_errors_and_leave_nothing(gateway, recordings, make, status, code):
    response = send_voice(gateway, make(recordings))
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    with gateway.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"language": "fr"},
        {"household_id": "twelve"},
        {"lat": "91", "lon": "0"},
        {"lat": "30"},
        {"colour": "red"},
    ],
)
def test_bad_form_fields_are_422(gateway, recordings, fields):
    response = send_voice(gateway, recordings["clip.ogg"], **fields)
    assert response.status_code == 422, response.text


def test_a_form_without_its_recording_is_422(gateway):
    response = gateway.client.post(
        "/v1/reports", data={"text": "牦牛病了"}, files={"photo": ("a.txt", b"x")}, headers=gateway.token()
    )
    assert response.status_code == 422


def test_a_retried_voice_report_is_one_report(gateway, recordings):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = send_voice(gateway, recordings["clip.amr"], "clip.amr", key)
    again = send_voice(gateway, recordings["clip.amr"], "clip.amr", key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = send_voice(gateway, recordings["clip.mp3"], "clip.mp3", key)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")


# Signing in, refreshing, signing out; limits and headers


def sign_in(gateway: Gateway, password: str = "s3cret-pass", username: str = "jq-lw"):
    return gateway.client.post("/v1/auth/token", data={"username": username, "password": password})


def test_a_refresh_token_is_spent_once_and_a_replay_ends_the_sign_in(gateway):
    first = sign_in(gateway).json()
    assert first["expires_in"] == 15 * 60 and first["refresh_token"]
    renewed = gateway.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert renewed.status_code == 200, renewed.text
    current = renewed.json()["refresh_token"]
    inbox = gateway.client.get(
        "/v1/inbox", headers={"Authorization": f"Bearer {renewed.json()['access_token']}"}
    )
    assert inbox.status_code == 200
    replay = gateway.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert (replay.status_code, replay.json()["code"]) == (401, "invalid_refresh_token")
    # The copy's replay ended the phone's sign-in too.
    assert gateway.client.post("/v1/auth/refresh", json={"refresh_token": current}).status_code == 401
    for bad in ({}, {"refresh_token": ""}, {"refresh_token": 7}, {"refresh_token": "x" * 500}):
        assert gateway.client.post("/v1/auth/refresh", json=bad).status_code == 422, bad


def test_signing_out_spends_the_refresh_token(gateway):
    token = sign_in(gateway).json()["refresh_token"]
    assert gateway.client.post("/v1/auth/logout", json={"refresh_token": token}).status_code == 204
    assert gateway.client.post("/v1/auth/refresh", json={"refresh_token": token}).status_code == 401
    assert gateway.client.post("/v1/auth/logout", json={"refresh_token": "unknown"}).status_code == 204


def test_brute_force_locks_the_account_and_says_when_to_retry(gateway):
    for _ in range(5):
        assert sign_in(gateway, "guess-" + uuid.uuid4().hex).status_code == 401
    locked = sign_in(gateway)  # even the right password
    assert (locked.status_code, locked.json()["code"]) == (429, "account_locked")
    assert 60 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert sign_in(gateway, username="jq-lw-2").status_code == 200  # another account is not affected
    with gateway.sessions() as session:
        actions = [
            row.action for row in session.scalars(select(AuthEvent).where(AuthEvent.username == "jq-lw"))
        ]
    assert (
        actions.count("login_failed") == 5 and "locked" in actions and actions[-1] == "login_refused_locked"
    )


def test_too_many_sign_ins_or_reports_are_429_with_retry_after(gateway):
    gateway.app.state.rate_limits = RateLimits(
        login_per_account="3/minute",
        login_per_address="",
        intake_per_account="2/minute",
        intake_per_address="",
    )
    answers = [sign_in(gateway, "wrong-password-1").status_code for _ in range(4)]
    assert answers == [401, 401, 401, 429]
    headers = {"Authorization": f"Bearer {sign_in(gateway, username='jq-lw-2').json()['access_token']}"}
    sent = [gateway.client.post("/v1/reports", json={"text": "雪灾"}, headers=headers) for _ in range(3)]
    assert [response.status_code for response in sent] == [201, 201, 429]
    assert int(sent[-1].headers["Retry-After"]) >= 1 and sent[-1].json()["code"] == "too_many_requests"


def test_changing_a_password_checks_the_old_one_and_the_rules(gateway):
    headers = gateway.token()
    change = "/v1/auth/password"
    wrong = gateway.client.post(
        change, json={"current_password": "nope", "new_password": "牧场冬季转场2026"}, headers=headers
    )
    assert wrong.status_code == 401
    weak = gateway.client.post(
        change, json={"current_password": "s3cret-pass", "new_password": "123"}, headers=headers
    )
    assert (weak.status_code, weak.json()["code"]) == (422, "weak_password") and weak.json()["message_zh"]
    done = gateway.client.post(
        change, json={"current_password": "s3cret-pass", "new_password": "牧场冬季转场2026"}, headers=headers
    )
    assert done.status_code == 204
    assert sign_in(gateway).status_code == 401 and sign_in(gateway, "牧场冬季转场2026").status_code == 200


def test_security_headers_on_every_answer(gateway):
    for response in (gateway.client.get("/healthz"), gateway.client.get("/v1/inbox"), sign_in(gateway, "x")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert (
            response.headers["x-frame-options"] == "DENY"
            and response.headers["referrer-policy"] == "no-referrer"
        )


# Accounts kept by county staff


POSITION = {
    "role": "village_grid",
    "title": "网格长",
    "person": {"id": 41, "name": "拉毛"},
    "unit": {"id": 60, "name": "江千一村", "kind": "village", "level": 3},
    "township": "江千乡",
}


def test_county_staff_create_an_account_bound_to_a_registry_position(gateway):
    rpc = RecordingRpc(**{"registry.position_of": POSITION})
    gateway.app.state.rpc = rpc
    admin = gateway.token("centre-1")
    body = {"username": "jq-v1-grid", "password": "牧场冬季转场2026", "person_id": 41, "org_unit_id": 60}
    created = gateway.client.post("/v1/accounts", json={**body, "role": "county_command"}, headers=admin)
    assert created.status_code == 422  # the role comes from the position, never from the form
    created = gateway.client.post("/v1/accounts", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert {k: created.json()[k] for k in ("role", "org_unit_name", "township", "language")} == {
        "role": "village_grid",
        "org_unit_name": "江千一村",
        "township": "江千乡",
        "language": "zh",
    }
    assert rpc.calls == [("registry.position_of", (41, 60), {})]
    assert gateway.client.post("/v1/accounts", json=body, headers=admin).status_code == 409
    assert sign_in(gateway, "牧场冬季转场2026", "jq-v1-grid").json()["role"] == "village_grid"
    weak = gateway.client.post(
        "/v1/accounts", json={**body, "username": "other", "password": "123"}, headers=admin
    )
    assert weak.json()["code"] == "weak_password"
    gateway.app.state.rpc = RecordingRpc(**{"registry.position_of": None})
    unknown = gateway.client.post("/v1/accounts", json={**body, "username": "other-2"}, headers=admin)
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_position")


def test_only_county_staff_manage_accounts(gateway):
    worker = gateway.token()
    for method, path, body in [
        ("get", "/v1/accounts", None),
        (
            "post",
            "/v1/accounts",
            {"username": "x-1", "password": "牧场冬季转场2026", "person_id": 1, "org_unit_id": 1},
        ),
        ("patch", "/v1/accounts/jq-lw-2", {"disabled": True}),
        ("post", "/v1/accounts/jq-lw-2/password", {"password": "牧场冬季转场2026"}),
        ("get", "/v1/audit?source=accounts", None),
        ("get", "/v1/audit", None),
    ]:
        response = gateway.client.request(method, path, json=body, headers=worker)
        assert response.status_code == 403, (path, response.text)
    assert sign_in(gateway, username="jq-lw-2").status_code == 200


def test_disabling_and_resetting_end_every_sign_in(gateway):
    admin = gateway.token("centre-1")
    phone = sign_in(gateway, username="jq-lw-2").json()
    disabled = gateway.client.patch("/v1/accounts/jq-lw-2", json={"disabled": True}, headers=admin)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert (
        gateway.client.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]}).status_code
        == 401
    )
    assert (
        gateway.client.get(
            "/v1/inbox", headers={"Authorization": f"Bearer {phone['access_token']}"}
        ).status_code
        == 401
    )
    assert (
        gateway.client.patch("/v1/accounts/jq-lw-2", json={"disabled": False}, headers=admin).status_code
        == 200
    )
    for _ in range(5):
        sign_in(gateway, "wrong-" + uuid.uuid4().hex, "jq-lw-2")
    assert sign_in(gateway, username="jq-lw-2").json()["code"] == "account_locked"
    reset = gateway.client.post(
        "/v1/accounts/jq-lw-2/password", json={"password": "新的牧场密码2026"}, headers=admin
    )
    assert reset.status_code == 200 and reset.json()["locked"] is False
    assert sign_in(gateway, "新的牧场密码2026", "jq-lw-2").status_code == 200
    trail = gateway.client.get("/v1/audit", params={"source": "accounts", "entity": "jq-lw-2"}, headers=admin)
    events = trail.json()["items"]
    actions = [event["action"] for event in events]
    assert actions[0] == "login" and {
        "account_disabled",
        "account_enabled",
        "locked",
        "password_reset",
    } <= set(actions)
    assert all("password" not in (event["detail"] or "") for event in events)
    assert (
        gateway.client.patch("/v1/accounts/nobody", json={"disabled": True}, headers=admin).status_code == 404
    )
    assert (
        gateway.client.patch("/v1/accounts/centre-1", json={"disabled": True}, headers=admin).status_code
        == 409
    )
    listed = gateway.client.get("/v1/accounts", params={"q": "jq-lw"}, headers=admin).json()
    assert listed["total"] == 2 and {item["username"] for item in listed["items"]} == {"jq-lw", "jq-lw-2"}


@pytest.mark.parametrize(
    "path", ["/v1/accounts?q=a%00b", "/v1/audit?source=accounts&actor=a%00b", "/v1/audit?actor=%01"]
)
def test_control_characters_in_admin_filters_are_422(gateway, path):
    response = gateway.client.get(path, headers=gateway.token("centre-1"))
    assert response.status_code == 422, response.text


def test_a_username_with_a_nul_byte_is_a_plain_wrong_login(gateway):
    assert sign_in(gateway, username="jq-lw\x00").status_code == 401
