"""Structured logs: one JSON object per line, carrying the report a line is about.

Every service logs through :class:`JsonFormatter` (``deploy/nameko.yaml``, ``deploy/logging.yaml`` for
the gateway's uvicorn), so one report's journey is ``grep '"report_id": "<id>"'`` across all of them.
The fields come from a per-request (gateway) or per-worker (nameko) context: the gateway binds one
for each request, nameko's container for each worker from the message it handles, and the report id
travels between services in nameko's message headers (``nameko.report_id``).

Log lines must never hold ID numbers, passwords or tokens: the formatter masks what looks like one,
as a last line of defence behind code that does not log them in the first place.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime

# The root level of the gateway's logging config (``level: ext://lianhu.logs.LOG_LEVEL``): uvicorn
# reads its config file as plain YAML, which cannot name an environment variable itself.
LOG_LEVEL = os.environ.get("LIANHU_LOG_LEVEL", "INFO").upper()

# Mutable on purpose: a field annotated deep inside a request (the id of a report just stored) must
# reach the access log line written by the middleware, across the task copies Starlette may make.
_fields: ContextVar[dict[str, str] | None] = ContextVar("lianhu_log_fields", default=None)

_MASKS = (
    # Resident ID numbers (18 characters, the last a digit or X) and bare 15-digit old ones.
    (re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])|(?<!\d)\d{15}(?!\d)"), "[id-number]"),
    (re.compile(r"\b(Bearer)\s+[\w.~+/=-]+", re.I), r"\1 [token]"),
    (re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+"), "[token]"),
    # user:password@ in connection URLs.
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1[secret]@"),
    (
        re.compile(
            r"""((?:password|passwd|secret|token|refresh_token|access_token)["']?\s*[=:]\s*["']?)[^\s"'&,}]+""",
            re.I,
        ),
        r"\1[secret]",
    ),
)

_RESERVED = {"time", "level", "logger", "message", "error", "stack"}


def mask(text: str) -> str:
    """``text`` with ID numbers, tokens and passwords masked."""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def bind(**fields: str | None) -> Token:
    """Start a fresh context (a request, a worker) from the current one plus ``fields``; pass the
    returned token to :func:`unbind` at its end."""
    merged = {**(_fields.get() or {}), **{k: str(v) for k, v in fields.items() if v is not None}}
    return _fields.set(merged)


def unbind(token: Token) -> None:
    _fields.reset(token)


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def annotate(**fields: str | None) -> None:
    """Add fields to the current context, visible to everything that logs for it from now on."""
    current = _fields.get()
    if current is None:
        bind(**fields)
    else:
        current.update({k: str(v) for k, v in fields.items() if v is not None})


def current() -> dict[str, str]:
    return dict(_fields.get() or {})


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", <context fields>, "error"?}`` on one line.

    ``extra={"fields": {...}}`` adds fields of one line (e.g. the access log's status and duration).
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        for name, value in {**current(), **getattr(record, "fields", {})}.items():
            if name not in _RESERVED:
                entry[name] = mask(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = mask(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = mask(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)
