from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers; the broker state and outbox backlog are reported."""
    state = request.app.state
    checks: dict = {}
    try:
        with state.read_sessions() as session:
            session.execute(text("SELECT 1"))
        backlog, oldest = state.relay.backlog()
        checks["database"] = "ok"
        checks["outbox_backlog"] = backlog
        checks["outbox_oldest"] = oldest.isoformat() if oldest else None
    except Exception as error:  # any failure here means "not ready"
        checks["database"] = f"unavailable: {type(error).__name__}"
    checks["broker"] = "ok" if state.relay_alive() else "unavailable"
    # Without the broker reports are still accepted (they wait in the outbox), so only the
    # database decides readiness.
    ready = checks["database"] == "ok"
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
