"""Whole spreadsheets in and out of the registry, and the figures of a unit's subtree."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from services.intake.api.deps import PrincipalDep, RpcDep, SettingsDep
from services.intake.api.errors import error_response
from services.intake.api.registry_answers import actor_of, file_response, refusal

router = APIRouter(tags=["registry"])

Format = Annotated[Literal["xlsx", "csv"], Query(alias="format")]
MAX_IMPORT_BYTES = 50 * 1024 * 1024


@router.get("/v1/registry/template", response_class=Response)
def import_template(principal: PrincipalDep, rpc: RpcDep, fmt: Format = "xlsx") -> Response:
    """The import template: the Chinese headers and one example row."""
    answer = rpc.call("registry", "import_template", fmt)
    return refusal(answer) or file_response(answer)


@router.post("/v1/registry/import")
def import_households(
    principal: PrincipalDep,
    rpc: RpcDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="CSV or XLSX in the template's layout, up to 50 MB")],
    reason: Annotated[str | None, Form(max_length=500)] = None,
) -> JSONResponse:
    """Every row checked first; all imported or none. ``200`` with the counts, or ``422`` with
    ``errors`` as ``{row, column, message_zh, message_en}``. Importing the same file again
    changes nothing (households are matched by book number)."""
    data = file.file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        return error_response(413, "the file is larger than 50 MB; split it by township")
    answer = rpc.call_within(
        settings.registry_file_timeout_seconds,
        "registry",
        "import_file",
        base64.b64encode(data).decode(),
        file.filename or file.content_type or "",
        actor_of(principal),
        reason,
    )
    if isinstance(answer, dict) and answer.get("imported") is False:
        count = answer.get("error_count", len(answer.get("errors", [])))
        detail = f"nothing was imported: {count} problem(s) in the file"
        return JSONResponse({"detail": detail, "code": "invalid_file", **answer}, status_code=422)
    return refusal(answer) or JSONResponse(answer)


@router.get("/v1/registry/export", response_class=Response)
def export_households(
    principal: PrincipalDep,
    rpc: RpcDep,
    settings: SettingsDep,
    unit: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    fmt: Format = "xlsx",
    reason: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """The households of a unit (default: the caller's area) in the import layout. ID numbers are
    masked unless the caller's role may see them and ``reason`` says why (audited)."""
    answer = rpc.call_within(
        settings.registry_file_timeout_seconds,
        "registry",
        "export_households",
        actor_of(principal),
        unit_id=unit,
        fmt=fmt,
        reason=reason,
    )
    failed = refusal(answer)
    if failed is not None:
        return failed
    return file_response(answer, **{"X-Lianhu-Id-Numbers": answer["id_numbers"]})


@router.get("/v1/registry/summary")
def registry_summary(
    principal: PrincipalDep,
    rpc: RpcDep,
    unit: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> JSONResponse:
    """Households, people, liaison workers, livestock by species and flag counts under a unit
    (default: the caller's own area)."""
    answer = rpc.call("registry", "summary_for_unit", unit, actor_of(principal))
    return refusal(answer) or JSONResponse(answer)
