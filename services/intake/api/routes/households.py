"""The household registry: search, a household's page, edits, and its scanned certificates.

Every call carries the caller to the registry, which answers within their jurisdiction: a household
outside it is ``404``, exactly like one that does not exist.
"""

from __future__ import annotations

import base64
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, File, Form, Header, Path, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from lianhu.filetypes import DOCUMENT_TYPES, sniff_one_of
from services.intake.api.deps import PrincipalDep, RpcDep
from services.intake.api.errors import error_response
from services.intake.api.registry_answers import actor_of, file_response, refusal

router = APIRouter(tags=["registry"])

Flag = Literal["low_income", "disability", "five_guarantee", "left_behind_elderly"]
DocumentKind = Literal["hukou", "id_card", "disability_cert", "low_income_cert", "other"]
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
Reason = Annotated[
    str | None,
    Query(
        max_length=500,
        description="Why clear ID numbers or a scan are needed; required for them, kept in the audit trail.",
    ),
]
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024


def _etag(version: int) -> str:
    return f'"{version}"'


def _version_from(if_match: str | None) -> int | None | Literal[False]:
    """The version an ``If-Match`` names; None without one, False when it names none."""
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    return int(value) if value.isdigit() and 0 < int(value) < 2**31 else False


def _household(answer: Any, status_code: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(
        answer, status_code=status_code, headers={"ETag": _etag(answer["version"]), **headers}
    )


@router.get("/v1/households")
def search_households(
    principal: PrincipalDep,
    rpc: RpcDep,
    q: Annotated[str | None, Query(max_length=100, description="Name (zh or bo), ID, book or phone")] = None,
    unit: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this unit's subtree")] = None,
    flag: Annotated[list[Flag] | None, Query(description="Only households with every flag given")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JSONResponse:
    """Households in the caller's area, best match first: ``{"items", "total", "page", ...}``."""
    answer = rpc.call(
        "registry",
        "search_households",
        actor_of(principal),
        q=q,
        unit_id=unit,
        flags=flag or [],
        page=page,
        page_size=page_size,
    )
    return refusal(answer) or JSONResponse(answer)


@router.get("/v1/households/{household_id}")
def get_household(
    household_id: Id, principal: PrincipalDep, rpc: RpcDep, reason: Reason = None
) -> JSONResponse:
    """Members, documents, livestock and flags. ID numbers are masked unless the caller's role may
    see them and ``reason`` says why (that read is audited). ``ETag`` is the household's version."""
    answer = rpc.call("registry", "household_detail", household_id, actor_of(principal), reason)
    return refusal(answer) or _household(answer)


@router.get("/v1/households/{household_id}/history")
def household_history(household_id: Id, principal: PrincipalDep, rpc: RpcDep) -> JSONResponse:
    """Every change ever made, oldest first: field, old and new value, who, when, why."""
    answer = rpc.call("registry", "household_history", household_id, actor_of(principal))
    return refusal(answer) or JSONResponse({"items": answer})


@router.post("/v1/households", status_code=201)
def create_household(
    principal: PrincipalDep,
    rpc: RpcDep,
    household: Annotated[dict[str, Any], Body(description="book_no, liaison_unit_id, head_name, …")],
    reason: Reason = None,
) -> JSONResponse:
    """Register a household in the caller's area; ``409`` when its book number is taken."""
    answer = rpc.call("registry", "create_household", household, actor_of(principal), reason)
    return refusal(answer) or _household(answer, 201, Location=f"/v1/households/{answer['id']}")


@router.patch("/v1/households/{household_id}")
def update_household(
    household_id: Id,
    principal: PrincipalDep,
    rpc: RpcDep,
    changes: Annotated[dict[str, Any], Body(description="Only the fields to change")],
    if_match: Annotated[str | None, Header(max_length=40, description="The ETag last read")] = None,
    reason: Reason = None,
) -> JSONResponse:
    """Change some fields; the old values stay in the history. With ``If-Match``, a household
    changed by someone else since answers ``409`` instead of being overwritten."""
    version = _version_from(if_match)
    if version is False:
        return error_response(400, "If-Match must be the ETag of the household", "bad_if_match")
    answer = rpc.call(
        "registry",
        "update_household",
        household_id,
        changes,
        actor_of(principal),
        reason,
        expected_version=version,
    )
    return refusal(answer) or _household(answer)


@router.post("/v1/households/{household_id}/documents", status_code=201)
def add_document(
    household_id: Id,
    principal: PrincipalDep,
    rpc: RpcDep,
    file: Annotated[UploadFile, File(description="JPEG, PNG, WebP, HEIC, TIFF or PDF, up to 10 MB")],
    kind: Annotated[DocumentKind, Form()],
    member_id: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
    number: Annotated[str | None, Form(max_length=64)] = None,
    issued_on: Annotated[date | None, Form()] = None,
    expires_on: Annotated[date | None, Form()] = None,
) -> JSONResponse:
    """Attach a scanned certificate; the same file again answers ``200`` with the first record."""
    data = file.file.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        return error_response(413, "the file is larger than 10 MB")
    if not data:
        return error_response(422, "the file is empty", "empty_file")
    if sniff_one_of(data, DOCUMENT_TYPES) is None:
        detail = "the file is not an image or PDF (JPEG, PNG, WebP, HEIC, TIFF or PDF)"
        return error_response(415, detail, "unsupported_media_type")
    fields = {
        "kind": kind,
        "member_id": member_id,
        "number": number,
        "issued_on": issued_on.isoformat() if issued_on else None,
        "expires_on": expires_on.isoformat() if expires_on else None,
        "original_name": (file.filename or "")[-255:] or None,
    }
    answer = rpc.call(
        "registry", "add_document", household_id, fields, base64.b64encode(data).decode(), actor_of(principal)
    )
    failed = refusal(answer)
    if failed is not None:
        return failed
    created = answer.pop("created")
    return JSONResponse(
        answer,
        status_code=201 if created else 200,
        headers={"Location": f"/v1/documents/{answer['id']}/file"},
    )


@router.get("/v1/documents/{document_id}/file", response_class=Response)
def open_document(document_id: Id, principal: PrincipalDep, rpc: RpcDep, reason: Reason = None) -> Response:
    """The scan itself, for roles that may see ID numbers, with a ``reason`` (audited)."""
    answer = rpc.call("registry", "open_document", document_id, actor_of(principal), reason)
    failed = refusal(answer)
    if failed is not None:
        return failed
    document = answer["document"]
    return file_response(
        {
            "content_b64": answer["content_b64"],
            "media_type": document["file_type"],
            "filename": document["original_name"] or f"document-{document['id']}",
        },
        ETag=f'"{document["file_sha256"]}"',
    )
