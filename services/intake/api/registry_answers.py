"""The registry's RPC answers as HTTP: who is asking going in, refusals and files coming out."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from fastapi.responses import JSONResponse, Response

from lianhu.auth import Principal
from services.intake.api.errors import error_response

# ``not_found`` covers "outside your area" too: the answer must not reveal what exists elsewhere.
REFUSAL_STATUS = {"not_found": 404, "forbidden": 403, "conflict": 409, "reason_required": 403}


def actor_of(principal: Principal) -> dict[str, Any]:
    return {"username": principal.username, "role": principal.role, "org_unit_id": principal.org_unit_id}


def refusal(answer: Any) -> JSONResponse | None:
    """The error response for a refused or invalid request; None when the answer is a success."""
    if answer is None:
        return error_response(404, "not found in your area")
    if not isinstance(answer, dict):
        return None
    if "refused" in answer:
        code = answer["refused"]
        return error_response(REFUSAL_STATUS.get(code, 403), answer.get("detail", code), code)
    if "errors" in answer:
        errors = answer["errors"]
        where = [error.get("field") or error.get("column") or "item" for error in errors]
        summary = "; ".join(f"{w}: {error.get('message_en')}" for w, error in zip(where, errors, strict=True))
        return error_response(422, summary or "invalid record", "invalid_record", errors=errors)
    return None


def file_response(answer: dict[str, Any], **headers: str) -> Response:
    """A file the registry sent (base64), as a download no cache keeps."""
    name = quote(answer.get("filename") or "download")
    return Response(
        base64.b64decode(answer["content_b64"]),
        media_type=answer["media_type"],
        headers={
            # RFC 6266 / 5987: an ASCII fallback and the UTF-8 name (Chinese file names survive).
            "Content-Disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            **headers,
        },
    )
