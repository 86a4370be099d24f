from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from lianhu import audio as audio_codec
from lianhu import logs
from lianhu.blobs import BlobNotFound
from lianhu.events import AudioRef
from lianhu.filetypes import AUDIO_TYPES, sniff_one_of
from lianhu.rpc_client import RemoteError, RpcUnavailable
from services.intake.api.deps import PrincipalDep, ReadSessionsDep, RpcDep, SettingsDep
from services.intake.api.errors import error_response
from services.intake.api.registry_answers import actor_of
from services.intake.api.routes.auth import address_of
from services.intake.config import IntakeSettings
from services.intake.models import Report
from services.intake.schemas import ReportIn, VoiceReportIn
from services.intake.submissions import KeyConflict, Overloaded, report_body

router = APIRouter(tags=["reports"])

PROBE_RATE = 8000
# Who may hear any recording: the county's command and its governance centre.
COUNTY_WIDE_ROLES = frozenset({"county_command", "governance_centre"})

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Any unique string per report; a retry with the same key never makes a second report.",
    ),
]


def household_known(rpc, household_id: int) -> bool:
    """Whether the registry knows the household; if it cannot answer now, routing checks it later."""
    try:
        return rpc.call("registry", "get_household", household_id) is not None
    except (RpcUnavailable, RemoteError):
        # A failing registry (e.g. its database is down) cannot verify either: accept the report.
        return True


def _inlined(model: type[BaseModel]) -> dict:
    """The model's JSON schema with its ``$defs`` written in place (the OpenAPI document has none)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return inline(schema)


REPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inlined(ReportIn)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["audio"],
                    "properties": {
                        "audio": {
                            "type": "string",
                            "format": "binary",
                            "description": "WAV, AMR-NB, Ogg/Opus, WebM/Opus, M4A/AAC or MP3; "
                            "at most 10 MB and 120 s",
                        },
                        "text": {"type": "string"},
                        "language": {"type": "string", "enum": ["bo", "zh", "auto"], "default": "auto"},
                        "household_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                        "lat": {"type": "number", "minimum": -90, "maximum": 90},
                        "lon": {"type": "number", "minimum": -180, "maximum": 180},
                    },
                }
            },
        },
    }
}


def _invalid(error: ValidationError) -> RequestValidationError:
    # The same shape FastAPI gives a declared body: locations start with "body".
    return RequestValidationError(
        [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False, include_input=False)]
    )


async def _json_report(request: Request) -> ReportIn:
    body = await request.body()
    try:
        # As FastAPI parses bodies: bytes in, UTF-8 surrogates let through to the validators.
        payload = json.loads(body)
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", error.pos), "msg": "JSON decode error", "input": {}}]
        ) from None
    except ValueError:
        raise HTTPException(400, "the request body is not valid JSON") from None
    try:
        return ReportIn.model_validate(payload)
    except ValidationError as error:
        raise _invalid(error) from None


class Refused(Exception):
    """A request refused while it is read; ``response`` says why."""

    def __init__(self, response: JSONResponse):
        self.response = response


async def _voice_report(request: Request, settings: IntakeSettings) -> tuple[VoiceReportIn, AudioRef]:
    """The form's fields and its recording, checked by its bytes and its decoded length, stored."""
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
    except MultiPartException as error:
        raise HTTPException(400, f"the multipart body cannot be read: {error.message}") from None
    audio = form.get("audio")
    if not isinstance(audio, UploadFile):
        raise Refused(
            error_response(422, "a voice report needs its recording in the field 'audio'", "audio_missing")
        )
    fields = {name: value for name, value in form.multi_items() if name != "audio"}
    if any(not isinstance(value, str) for value in fields.values()):
        raise Refused(error_response(422, "only 'audio' may be a file", "invalid_request"))
    location = {name: fields.pop(name) for name in ("lat", "lon") if name in fields}
    if location:
        fields["location"] = location
    try:
        report = VoiceReportIn.model_validate(fields)
    except ValidationError as error:
        raise _invalid(error) from None
    return report, await checked_recording(request, audio, settings)


async def checked_recording(request: Request, audio: UploadFile, settings: IntakeSettings) -> AudioRef:
    """A recording checked by its bytes (415), its size (413) and its decoded length (413, 422),
    then stored in the blob store under its SHA-256: voice reports and voice answers to tasks. Only
    ``LIANHU_AUDIO_CHECKS_MAX`` at once (each is held in memory): past that, ``503`` to come back."""
    try:
        with request.app.state.recording_checks.slot():
            return await _checked_recording(request, audio, settings)
    except Overloaded:
        raise Refused(
            error_response(503, "too many recordings are being checked; retry shortly", "overloaded")
        ) from None


async def _checked_recording(request: Request, audio: UploadFile, settings: IntakeSettings) -> AudioRef:
    data = await audio.read(settings.audio_max_bytes + 1)
    if not data:
        raise Refused(error_response(422, "the recording is empty", "empty_audio"))
    if len(data) > settings.audio_max_bytes:
        raise Refused(error_response(413, f"the recording is larger than {settings.audio_max_bytes} bytes"))
    media_type = sniff_one_of(data, AUDIO_TYPES)
    if media_type is None:
        raise Refused(
            error_response(
                415,
                "not a recording this platform plays (WAV, AMR, Ogg/Opus, WebM/Opus, M4A/AAC, MP3)",
                "unsupported_media_type",
            )
        )
    try:
        # A low rate is enough to learn the true length (browsers' WebM headers carry none).
        pcm = await run_in_threadpool(
            audio_codec.decode,
            data,
            PROBE_RATE,
            settings.audio_max_seconds,
            settings.audio_decode_timeout_seconds,
        )
    except audio_codec.TooLong:
        raise Refused(
            error_response(
                413, f"the recording is longer than {settings.audio_max_seconds:.0f} s", "audio_too_long"
            )
        ) from None
    except audio_codec.AudioError as error:
        raise Refused(
            error_response(422, f"the recording cannot be decoded: {error}", "corrupt_audio")
        ) from None
    sha256 = await run_in_threadpool(request.app.state.audio_blobs.put, data)
    return AudioRef(
        sha256=sha256, media_type=media_type, size_bytes=len(data), duration_seconds=round(pcm.seconds, 3)
    )


@router.post("/v1/reports", status_code=201, openapi_extra=REPORT_BODY)
async def create_report(
    request: Request,
    principal: PrincipalDep,
    rpc: RpcDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Accept a report: JSON text, or a multipart voice report (``audio`` and optional ``text``,
    ``language``, ``household_id``, ``lat``, ``lon``). ``201`` only once it is stored with its
    event: nothing accepted is lost. A voice report is routed at once, pending transcription."""
    wait = request.app.state.rate_limits.retry_after(
        [("intake_per_account", principal.username), ("intake_per_address", address_of(request))]
    )
    if wait is not None:
        return error_response(429, "too many reports in a short time; retry shortly", retry_after=wait)
    audio = None
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            report, audio = await _voice_report(request, settings)
        else:
            report = await _json_report(request)
    except Refused as refused:
        return refused.response
    if report.household_id is not None and not await run_in_threadpool(
        household_known, rpc, report.household_id
    ):
        return error_response(
            422, f"household {report.household_id} is not in the registry", "unknown_household"
        )
    try:
        future = request.app.state.writer.submit(principal, report, idempotency_key, audio)
    except KeyConflict as conflict:
        return error_response(conflict.status_code, conflict.detail, conflict.code)
    except Overloaded:
        return error_response(503, "too many reports are waiting to be stored; retry shortly", "overloaded")
    try:
        outcome = await asyncio.wrap_future(future)
    except KeyConflict as conflict:
        return error_response(conflict.status_code, conflict.detail, conflict.code)
    logs.annotate(report_id=outcome.body["id"])
    headers = {"Location": f"/v1/reports/{outcome.body['id']}"}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


@router.get("/v1/reports/{report_id}")
def get_report(
    report_id: Annotated[str, Path(max_length=64)],
    principal: PrincipalDep,
    sessions: ReadSessionsDep,
    rpc: RpcDep,
) -> JSONResponse:
    """The report with its case once routed: category, urgency, evidence, handler, recipients, the
    timeline and ``allowed_actions`` (what the caller may do now). For its reporter, and for those
    the case concerns (its area, the units it reached, the levels above); ``404`` for anyone else."""
    with sessions() as session:
        report = session.get(Report, report_id)
    if report is None:
        return error_response(404, f"no report {report_id}")
    own = principal.username == report.reporter_username
    body = report_body(report)
    try:
        case = rpc.call("routing", "get_case", report_id, actor_of(principal))
    except RpcUnavailable:
        if not own:
            # Whether the caller may see it is routing's to say.
            return error_response(503, "cases cannot be read just now; retry shortly")
        body["case_lookup"] = "unavailable"
        return JSONResponse(body)
    if case is None and not (own or principal.role in COUNTY_WIDE_ROLES):
        return error_response(404, f"no report {report_id}")
    if case is not None:
        body.update(
            status=case["state"],
            category=case["category"],
            urgency=case["urgency"],
            matched=case["matched"],
            transcription=case["transcription"],
            transcript=case["transcript"],
            timeline=case["timeline"],
            allowed_actions=case["allowed_actions"],
            case=case,
        )
    return JSONResponse(body)


@router.get("/v1/reports/{report_id}/audio", response_class=Response)
def get_report_audio(
    report_id: Annotated[str, Path(max_length=64)],
    principal: PrincipalDep,
    sessions: ReadSessionsDep,
    rpc: RpcDep,
    request: Request,
) -> Response:
    """The recording as sent, with HTTP Range support so phone players can seek. For whoever may
    read the report."""
    with sessions() as session:
        report = session.get(Report, report_id)
    if report is None or report.audio_sha256 is None or not _may_hear(principal, report, rpc):
        return error_response(404, f"no recording for report {report_id}")
    blobs = request.app.state.audio_blobs
    path = blobs.path_of(report.audio_sha256)
    if not path.is_file():
        raise BlobNotFound(report.audio_sha256)
    return FileResponse(
        path,
        media_type=report.audio_type,
        headers={"Cache-Control": "private, max-age=86400, immutable", "ETag": f'"{report.audio_sha256}"'},
    )


def _may_hear(principal, report: Report, rpc) -> bool:
    """Who may read the report may hear it."""
    if principal.username == report.reporter_username or principal.role in COUNTY_WIDE_ROLES:
        return True
    return rpc.call("routing", "get_case", report.id, actor_of(principal)) is not None
