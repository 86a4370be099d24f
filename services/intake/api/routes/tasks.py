"""Tasks down (下发任务): the county, departments and townships send a task to every liaison worker
under some units; each worker answers (text, a number, or a recording); completion rolls up by unit.

Routing owns tasks and decides everything (who may send where, who sees what): as for case
actions, the gateway passes the caller along and maps routing's answers. Every write carries a key
(the client's ``Idempotency-Key`` or one made here), so a call the RPC client resends acts once.
"""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, field_validator
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from lianhu.auth import Principal
from lianhu.blobs import BlobNotFound
from lianhu.events import TASK_ANSWER_TEXT_MAX, TASK_NUMBER_MAX, TaskOrder, task_text
from services.intake.api.deps import PrincipalDep, RpcDep, SettingsDep
from services.intake.api.errors import error_response
from services.intake.api.registry_answers import actor_of, refusal
from services.intake.api.routes.reports import Refused, checked_recording

router = APIRouter(tags=["tasks"])

TaskId = Annotated[str, Path(max_length=64)]
KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Any unique string per request: a retry returns the first outcome instead of "
        "acting twice; the same key with another body is 422 idempotency_key_reused.",
    ),
]


class TaskReplyIn(BaseModel):
    """A JSON answer: ``text`` for a text task, ``number`` for a number task (a note may go with it)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=TASK_ANSWER_TEXT_MAX)
    number: StrictFloat | StrictInt | None = Field(
        default=None, ge=-TASK_NUMBER_MAX, le=TASK_NUMBER_MAX, allow_inf_nan=False
    )

    _clean = field_validator("text")(task_text)


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)

    _clean = field_validator("note")(task_text)


ANSWER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": TaskReplyIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "audio": {
                            "type": "string",
                            "format": "binary",
                            "description": "a spoken answer (text tasks): WAV, AMR-NB, Ogg/Opus, WebM/Opus, "
                            "M4A/AAC or MP3; at most 10 MB and 120 s",
                        },
                        "text": {"type": "string"},
                        "number": {"type": "number"},
                    },
                }
            },
        },
    }
}


def _failed(answer: Any) -> JSONResponse | None:
    """Routing's refusal or validation errors as HTTP; None for a success."""
    if isinstance(answer, dict) and answer.get("errors"):
        errors = answer["errors"]
        summary = "; ".join(f"{error.get('field')}: {error.get('message_en')}" for error in errors)
        return error_response(422, summary, errors[0].get("code", "invalid_request"), errors=errors)
    return refusal(answer)


def _written(answer: Any, status_code: int, location: str | None = None) -> JSONResponse:
    failed = _failed(answer)
    if failed is not None:
        return failed
    headers = {"Location": location.format(**answer["result"])} if location else {}
    if answer["replayed"]:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(answer["result"], status_code=status_code, headers=headers)


@router.post("/v1/tasks", status_code=201)
def create_task(
    body: TaskOrder, principal: PrincipalDep, rpc: RpcDep, idempotency_key: KeyHeader = None
) -> JSONResponse:
    """Send a task to every liaison worker (联户员) under ``targets``: a village reaches its liaison
    workers, a township all of its villages', a liaison unit that worker. For the county command,
    the centre and departments (anywhere in the county) and township commands (their own township).
    ``201`` with the task and ``recipients`` (how many it reached); ``422 target_not_in_area``
    naming a unit outside the sender's area (or unknown), ``422 no_recipients`` for a unit with no
    liaison worker beneath, ``403`` for other roles."""
    key = idempotency_key or str(uuid.uuid4())
    answer = rpc.call("routing", "create_task", actor_of(principal), body.model_dump(mode="json"), key)
    return _written(answer, 201, "/v1/tasks/{id}")


@router.get("/v1/tasks")
def list_tasks(
    principal: PrincipalDep,
    rpc: RpcDep,
    role: Literal["sent", "received"] = "received",
    state: Literal["open", "done", "overdue", "cancelled"] | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JSONResponse:
    """The tasks the caller's unit sent (each with ``progress``: recipients, answered, overdue) or
    received (each with ``my_answer``), newest first: ``{"items", "total", "page", "page_size"}``."""
    answer = rpc.call("routing", "list_tasks", actor_of(principal), role, state, page, page_size)
    return _failed(answer) or JSONResponse(answer)


@router.get("/v1/tasks/{task_id}")
def get_task(task_id: TaskId, principal: PrincipalDep, rpc: RpcDep) -> JSONResponse:
    """The task: for its sender's unit and the county, with ``rollup`` (per target, and per
    township and village beneath) and every recipient's latest ``answers``; for a unit above some
    recipients, the same over its own subtree; for a recipient, her own answer and ``history``.
    ``404`` for anyone else."""
    answer = rpc.call("routing", "get_task", task_id, actor_of(principal))
    return _failed(answer) or JSONResponse(answer)


def _form_number(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        raise Refused(error_response(422, "number: not a number", "invalid_request")) from None
    if not math.isfinite(number) or abs(number) > TASK_NUMBER_MAX:
        raise Refused(error_response(422, "number: out of range", "invalid_request"))
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


async def _voice_reply(request: Request, task_id: str, principal: Principal, rpc, settings) -> dict[str, Any]:
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=TASK_ANSWER_TEXT_MAX * 4 + 1024)
    except MultiPartException as error:
        raise Refused(error_response(400, f"the multipart body cannot be read: {error.message}")) from None
    fields = {name: value for name, value in form.multi_items() if name != "audio"}
    if any(not isinstance(value, str) for value in fields.values()) or set(fields) - {"text", "number"}:
        raise Refused(error_response(422, "only 'audio', 'text' and 'number' may be sent", "invalid_request"))
    text = fields.get("text")
    if text is not None and len(text) > TASK_ANSWER_TEXT_MAX:
        raise Refused(
            error_response(422, f"text: at most {TASK_ANSWER_TEXT_MAX} characters", "invalid_request")
        )
    reply: dict[str, Any] = {"text": text, "number": _form_number(fields.get("number"))}
    audio = form.get("audio")
    if isinstance(audio, UploadFile):
        # Only a recipient of an open task may have her recording decoded and stored.
        task = await run_in_threadpool(rpc.call, "routing", "get_task", task_id, actor_of(principal))
        if task is None or task.get("view") != "recipient":
            raise Refused(error_response(404, "not found in your area"))
        if task["state"] == "cancelled":
            raise Refused(error_response(409, "the task was cancelled: it takes no more answers", "conflict"))
        reply["audio"] = (await checked_recording(request, audio, settings)).model_dump(mode="json")
    return reply


@router.post("/v1/tasks/{task_id}/answers", status_code=201, openapi_extra=ANSWER_BODY)
async def answer_task(
    task_id: TaskId,
    request: Request,
    principal: PrincipalDep,
    rpc: RpcDep,
    settings: SettingsDep,
    idempotency_key: KeyHeader = None,
) -> JSONResponse:
    """Answer a task the caller's unit received: JSON ``{"text"}`` or ``{"number"}``, or multipart
    with ``audio`` (a spoken answer to a text task) and optional ``text`` / ``number``. A later
    answer replaces the earlier (both stay in ``history``). ``404`` for a task not sent to the
    caller, ``409`` once it is cancelled, ``422 number_required`` / ``answer_required`` /
    ``text_expected`` when the answer does not fit the task."""
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            reply = await _voice_reply(request, task_id, principal, rpc, settings)
        else:
            try:
                raw = await request.json()
            except ValueError:
                return error_response(400, "the request body is not valid JSON", "invalid_json")
            try:
                reply = TaskReplyIn.model_validate(raw).model_dump(mode="json")
            except ValidationError as error:
                # The same shape FastAPI gives a declared body.
                raise RequestValidationError(
                    [
                        {**e, "loc": ("body", *e["loc"])}
                        for e in error.errors(include_url=False, include_input=False)
                    ]
                ) from None
    except Refused as refused:
        return refused.response
    key = idempotency_key or str(uuid.uuid4())
    answer = await run_in_threadpool(
        rpc.call, "routing", "answer_task", task_id, actor_of(principal), reply, key
    )
    return _written(answer, 201)


@router.post("/v1/tasks/{task_id}/cancel")
def cancel_task(
    task_id: TaskId,
    principal: PrincipalDep,
    rpc: RpcDep,
    body: Annotated[CancelIn | None, Body()] = None,
) -> JSONResponse:
    """Withdraw a task (its sender's unit only): ``200`` with the task, now ``cancelled``; the
    recipients' inbox items say so. Cancelling again answers the same."""
    note = body.note if body else ""
    answer = rpc.call("routing", "cancel_task", task_id, actor_of(principal), note)
    return _written(answer, 200)


@router.get("/v1/tasks/{task_id}/answers/{answer_id}/audio", response_class=Response)
def get_answer_audio(
    task_id: TaskId,
    answer_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    principal: PrincipalDep,
    rpc: RpcDep,
    request: Request,
) -> Response:
    """A spoken answer as recorded (HTTP ``Range`` supported), for whoever may see that answer."""
    audio = rpc.call("routing", "task_answer_audio", task_id, answer_id, actor_of(principal))
    if audio is None:
        return error_response(404, f"no recording for answer {answer_id}")
    path = request.app.state.audio_blobs.path_of(audio["sha256"])
    if not path.is_file():
        raise BlobNotFound(audio["sha256"])
    return FileResponse(
        path,
        media_type=audio["media_type"],
        headers={"Cache-Control": "private, max-age=86400, immutable", "ETag": f'"{audio["sha256"]}"'},
    )
