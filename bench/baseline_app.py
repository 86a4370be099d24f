"""The floor the intake is measured against: a bare FastAPI JSON endpoint.

One ``POST`` route that validates a body shaped like a report with pydantic and returns JSON; no
database, no auth, no middleware. ``bench/intake.py`` serves it with exactly the uvicorn settings
of the intake, so ``ratio = intake rps / baseline rps`` is what the durable path costs on top of
the framework itself.
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from pydantic import BaseModel, Field


class Location(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class EchoIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    language: str | None = None
    location: Location | None = None


def create_app() -> FastAPI:
    app = FastAPI(title="bench baseline")

    @app.post("/v1/reports", status_code=201)
    async def echo(body: EchoIn) -> dict:
        # async: the cheapest FastAPI path (no threadpool hop), i.e. the framework's own ceiling.
        return {"id": str(uuid.uuid4()), "status": "received", "text": body.text}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app
