"""One JSON error shape for every failure: ``{"detail": message, "code": machine code, ...}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lianhu.blobs import BlobNotFound, CorruptBlob
from lianhu.rpc_client import RemoteError, RpcUnavailable

RETRY_AFTER_SECONDS = "5"

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


def error_response(
    status_code: int, detail: str, code: str | None = None, retry_after: int | None = None, **extra
) -> JSONResponse:
    body = {"detail": detail, "code": code or _CODES.get(status_code, "error"), **extra}
    headers = None
    if retry_after is not None:
        headers = {"Retry-After": str(max(1, retry_after))}
    elif status_code == 503:
        headers = {"Retry-After": RETRY_AFTER_SECONDS}
    return JSONResponse(body, status_code=status_code, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        response = error_response(exc.status_code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = [
            {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
            for error in exc.errors()
        ]
        if any(error["type"] == "json_invalid" for error in errors):
            return error_response(400, "the request body is not valid JSON", "invalid_json", errors=errors)
        summary = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in errors)
        return error_response(422, summary or "invalid request", errors=errors)

    @app.exception_handler(RpcUnavailable)
    async def _rpc(request: Request, exc: RpcUnavailable):
        return error_response(503, f"a platform service is not answering: {exc}", "service_unavailable")

    @app.exception_handler(RemoteError)
    async def _remote(request: Request, exc: RemoteError):
        # The service answered with a failure (often its own database): likely passing, so retryable.
        return error_response(503, f"a platform service failed: {exc.exc_type}", "service_error")

    @app.exception_handler(BlobNotFound)
    @app.exception_handler(CorruptBlob)
    async def _blob(request: Request, exc: Exception):
        # The report exists, so its recording was stored: the shared volume is away or damaged.
        return error_response(503, "the stored recording cannot be read now", "blob_unavailable")

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError):
        return error_response(
            503, "the database is not answering; nothing was stored", "database_unavailable"
        )

    # Last line of defence: input validation should stop these first, but never as a bare 500.
    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError):
        return error_response(409, "the request conflicts with stored data", "conflict")

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError):
        return error_response(422, "a value does not fit what the database can store", "invalid_value")
