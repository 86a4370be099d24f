"""Accepting a report: durably, once, whatever the phone retries.

The report row and its ``report_submitted`` outbox row commit in one transaction, so a ``201``
means the report will reach routing even if the broker is away. An ``Idempotency-Key`` makes a
retry safe: the same key and body give the original response, the same key with another body is
refused (``422``), and a retry while the first request still runs is told to wait (``409``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from lianhu.auth import Principal
from lianhu.bus import enqueue
from lianhu.events import Reporter, ReportSubmitted, utcnow
from services.intake.models import IdempotencyKey, Report, outbox
from services.intake.schemas import ReportIn


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict
    replayed: bool = False


class KeyConflict(Exception):
    def __init__(self, status_code: int, detail: str, code: str):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.code = code


def request_fingerprint(report: ReportIn) -> str:
    canonical = json.dumps(report.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def report_body(report: Report) -> dict:
    location = None if report.lat is None else {"lat": report.lat, "lon": report.lon}
    return {
        "id": report.id,
        "status": "received",
        "text": report.text,
        "language": report.language,
        "household_id": report.household_id,
        "location": location,
        "reporter": report.reporter_username,
        "created_at": report.created_at.isoformat(),
        # Filled in from routing once the case exists (GET /v1/reports/{id}).
        "category": None,
        "urgency": None,
        "matched": [],
        "case": None,
    }


def _claim(sessions: sessionmaker, username: str, key: str, fingerprint: str, stale_after: float):
    """Claim the key for this request, or return the stored outcome of an earlier one."""
    now = utcnow()
    try:
        with sessions.begin() as session:
            row = session.get(IdempotencyKey, (username, key))
            if row is None:
                session.add(
                    IdempotencyKey(username=username, key=key, request_hash=fingerprint, claimed_at=now)
                )
                return None
            if row.request_hash != fingerprint:
                raise KeyConflict(
                    422,
                    "this Idempotency-Key was used with a different request body",
                    "idempotency_key_reused",
                )
            if row.completed_at is not None:
                return Outcome(row.status_code, json.loads(row.response_body), replayed=True)
            if now - row.claimed_at < timedelta(seconds=stale_after):
                raise KeyConflict(
                    409,
                    "a request with this Idempotency-Key is still being processed",
                    "idempotency_key_in_flight",
                )
            # The first attempt died before finishing: this one takes over.
            row.claimed_at = now
            return None
    except IntegrityError:
        # Another request inserted the same key between our read and our insert.
        raise KeyConflict(
            409, "a request with this Idempotency-Key is still being processed", "idempotency_key_in_flight"
        ) from None


def _release(sessions: sessionmaker, username: str, key: str) -> None:
    with sessions.begin() as session:
        row = session.get(IdempotencyKey, (username, key))
        if row is not None and row.completed_at is None:
            session.delete(row)


def submit_report(
    sessions: sessionmaker,
    principal: Principal,
    report_in: ReportIn,
    idempotency_key: str | None,
    stale_after_seconds: float,
) -> Outcome:
    fingerprint = request_fingerprint(report_in)
    if idempotency_key is not None:
        earlier = _claim(sessions, principal.username, idempotency_key, fingerprint, stale_after_seconds)
        if earlier is not None:
            return earlier
    try:
        now = utcnow()
        report = Report(
            id=str(uuid.uuid4()),
            reporter_username=principal.username,
            text=report_in.text,
            language=report_in.language,
            household_id=report_in.household_id,
            lat=report_in.location.lat if report_in.location else None,
            lon=report_in.location.lon if report_in.location else None,
            created_at=now,
        )
        body = report_body(report)
        event = ReportSubmitted(
            report_id=report.id,
            text=report.text,
            language=report.language,
            household_id=report.household_id,
            location=report_in.location,
            reporter=Reporter(
                username=principal.username,
                person_id=principal.person_id,
                org_unit_id=principal.org_unit_id,
                role=principal.role,
            ),
            submitted_at=now,
        )
        with sessions.begin() as session:
            session.add(report)
            enqueue(session, outbox, event)
            if idempotency_key is not None:
                row = session.get(IdempotencyKey, (principal.username, idempotency_key))
                row.completed_at = now
                row.status_code = 201
                row.response_body = json.dumps(body, ensure_ascii=False)
    except Exception:
        if idempotency_key is not None:
            _release(sessions, principal.username, idempotency_key)
        raise
    return Outcome(201, body)
