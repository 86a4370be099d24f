"""What the gateway tells its operators: rate, errors and duration per route, an access line for the
requests worth one, and the log context (the report a request is about) of every line written
while a request is served."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI

from lianhu import logs, metrics

access_log = logging.getLogger("lianhu.access")

# Routes are labelled by their template; anything that matched none shares one label, so a scan of
# random paths cannot blow up the number of series.
UNMATCHED = "unmatched"


class RequestObserver:
    """Pure ASGI middleware (no task per request, unlike BaseHTTPMiddleware)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = logs.bind(service="intake", report_id=scope.get("path_params", {}).get("report_id"))
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._observe(scope, status, time.perf_counter() - started)
            logs.unbind(token)

    def _observe(self, scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", UNMATCHED)
        method = scope["method"]
        metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
        metrics.HTTP_DURATION.labels(method, route).observe(seconds)
        # Routing has filled in the path parameters by now.
        logs.annotate(report_id=scope.get("path_params", {}).get("report_id"))
        # Every request is in the metrics; a line is kept for those about a report (to follow its
        # journey) and for failures. Never the query string: it may hold an ID number.
        level = logging.INFO if status >= 500 or "report_id" in logs.current() else logging.DEBUG
        if access_log.isEnabledFor(level):
            fields = {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1e3, 1),
            }
            access_log.log(level, "%s %s %d", method, route, status, extra={"fields": fields})


def install(app: FastAPI) -> None:
    """Observe every request; publish the outbox's backlog at each scrape."""
    app.add_middleware(RequestObserver)
    metrics.install("intake:outbox", metrics.ScrapeGauges(metrics.OUTBOX_GAUGES, app.state.relay.gauges))
