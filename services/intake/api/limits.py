"""Request-size cap: Starlette has none, and a phone on a bad link must not exhaust the gateway."""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException


class BodySizeLimit:
    """Pure ASGI middleware: ``413`` for a declared or streamed body over the route's limit.

    Every route gets ``max_bytes`` except those ``larger`` names, for the few that take files:
    ``(method, path pattern, bytes)``, and only for multipart bodies (a JSON body stays small).
    """

    def __init__(self, app, max_bytes: int, larger: tuple[tuple[str, str, int], ...] = ()):
        self.app = app
        self.max_bytes = max_bytes
        self.larger = [(method, re.compile(pattern), limit) for method, pattern, limit in larger]

    def _limit_for(self, scope) -> int:
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if not content_type.startswith(b"multipart/form-data"):
            return self.max_bytes
        for method, pattern, limit in self.larger:
            if scope["method"] == method and pattern.fullmatch(scope["path"]):
                return limit
        return self.max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, limit)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException is the one error FastAPI lets out of its body parsing as it
                    # is (anything else becomes a 400), so the app's handler answers the JSON 413.
                    raise HTTPException(413, self._detail(limit))
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    def _detail(limit: int) -> str:
        return f"request body larger than {limit} bytes"

    async def _reject(self, send, limit: int) -> None:
        body = json.dumps({"detail": self._detail(limit), "code": "payload_too_large"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
