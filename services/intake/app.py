"""The gateway: every frontend's single door to Lianhu.

``create_app`` wires the routes to the database, the RPC client and the outbox relay thread that
moves accepted reports to RabbitMQ.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from lianhu.blobs import FilesystemBlobStore
from lianhu.bus import ConfirmedPublisher, OutboxRelay
from lianhu.db import make_engine, make_read_session_factory, make_session_factory
from lianhu.rpc_client import RpcClient
from services.intake.accounts import AccountStates
from services.intake.api import errors, observability
from services.intake.api.admission import Admission
from services.intake.api.headers import SecurityHeaders
from services.intake.api.limits import BodySizeLimit
from services.intake.api.ratelimit import RateLimits
from services.intake.api.routes import (
    accounts,
    audit,
    auth,
    cases,
    health,
    households,
    inbox,
    registry_files,
    reports,
    routing,
    tasks,
    units,
    web,
)
from services.intake.config import IntakeSettings, intake_settings
from services.intake.models import outbox
from services.intake.submissions import ReportWriter

# Room for the text fields and multipart boundaries beside a file.
FORM_OVERHEAD_BYTES = 64 * 1024


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or intake_settings()
    engine = make_engine(settings.database_url("intake"))
    sessions = make_session_factory(engine)
    read_sessions = make_read_session_factory(engine)
    publisher = ConfirmedPublisher(settings)
    relay = OutboxRelay(sessions, outbox, publisher.publish, service="intake", keepalive=publisher.keepalive)
    writer = ReportWriter(sessions, max_queue=settings.intake_queue_max, on_commit=relay.wake.set)
    rpc = RpcClient(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = threading.Event()
        relay_thread = threading.Thread(
            target=relay.run, args=(stop, settings.outbox_idle_seconds), name="outbox-relay", daemon=True
        )
        relay_thread.start()
        writer.start()
        try:
            yield
        finally:
            writer.stop()
            stop.set()
            relay.wake.set()
            relay_thread.join(timeout=15)
            publisher.close()
            rpc.close()
            engine.dispose()

    app = FastAPI(
        title="Lianhu intake gateway",
        version="0.1.0",
        description="Reports in, answers out: the public API of the Lianhu household liaison platform.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.read_sessions = read_sessions
    app.state.writer = writer
    app.state.account_states = AccountStates(read_sessions, settings.account_recheck_seconds)
    app.state.relay = relay
    app.state.relay_alive = lambda: relay.broker_ok
    app.state.rpc = rpc
    app.state.audio_blobs = FilesystemBlobStore(settings.blob_root("audio"))
    app.state.recording_checks = Admission(settings.audio_checks_max)
    app.state.signing_key = settings.signing_key()
    app.state.rate_limits = RateLimits(
        login_per_account=settings.login_rate_per_account,
        login_per_address=settings.login_rate_per_address,
        intake_per_account=settings.intake_rate_per_account,
        intake_per_address=settings.intake_rate_per_address,
    )
    errors.install(app)
    for module in (
        auth,
        accounts,
        audit,
        reports,
        cases,
        tasks,
        inbox,
        routing,
        households,
        units,
        registry_files,
        health,
    ):
        app.include_router(module.router)
    app.include_router(web.router)  # the reference pages, last: they only add GET routes of their own
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        larger=(
            ("POST", r"/v1/reports", settings.audio_max_bytes + FORM_OVERHEAD_BYTES),
            ("POST", r"/v1/tasks/[^/]+/answers", settings.audio_max_bytes + FORM_OVERHEAD_BYTES),
            ("POST", r"/v1/households/[^/]+/documents", settings.upload_max_bytes),
            ("POST", r"/v1/registry/import", settings.import_max_bytes),
        ),
    )
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match", "Range"],
            expose_headers=["Location", "ETag", "Retry-After", "Idempotent-Replayed", "Content-Range"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    # Outermost: it times and counts every answer, the refusals of the middleware above included.
    observability.install(app)
    return app
