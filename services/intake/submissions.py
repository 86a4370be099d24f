"""Accepting a report: durably, once, whatever the phone retries.

The report row and its ``report_submitted`` outbox row commit in one transaction, so a ``201``
means the report will reach routing even if the broker is away. An ``Idempotency-Key`` makes a
retry safe: the same key and body give the original response, the same key with another body is
refused (``422``), and a retry while the first request still runs is told to wait (``409``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from lianhu.auth import Principal
from lianhu.bus import enqueue
from lianhu.events import Reporter, ReportSubmitted, utcnow
from services.intake.models import IdempotencyKey, Report, outbox
from services.intake.schemas import ReportIn

log = logging.getLogger(__name__)


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


IN_FLIGHT = (409, "a request with this Idempotency-Key is still being processed", "idempotency_key_in_flight")


class _ClaimLost(Exception):
    """Another request took the key over while this one ran (this one was presumed dead)."""


def _key_row(username: str, key: str, claim_id: str | None = None):
    condition = (IdempotencyKey.username == username) & (IdempotencyKey.key == key)
    if claim_id is not None:
        condition &= (IdempotencyKey.claim_id == claim_id) & IdempotencyKey.completed_at.is_(None)
    return condition


def _claim(
    sessions: sessionmaker, username: str, key: str, fingerprint: str, stale_after: float
) -> tuple[Outcome | None, str]:
    """Claim the key for this request (returns its claim id), or the stored outcome of an earlier one."""
    now = utcnow()
    claim_id = str(uuid.uuid4())
    try:
        with sessions.begin() as session:
            row = session.get(IdempotencyKey, (username, key))
            if row is None:
                session.add(
                    IdempotencyKey(
                        username=username,
                        key=key,
                        request_hash=fingerprint,
                        claim_id=claim_id,
                        claimed_at=now,
                    )
                )
                return None, claim_id
            if row.request_hash != fingerprint:
                raise KeyConflict(
                    422,
                    "this Idempotency-Key was used with a different request body",
                    "idempotency_key_reused",
                )
            if row.completed_at is not None:
                return Outcome(row.status_code, json.loads(row.response_body), replayed=True), row.claim_id
            if now - row.claimed_at < timedelta(seconds=stale_after):
                raise KeyConflict(*IN_FLIGHT)
            # The first attempt looks dead: take the key over, but only from the claim we saw, so two
            # retries racing for it cannot both win.
            taken = session.execute(
                update(IdempotencyKey)
                .where(_key_row(username, key, row.claim_id))
                .values(claim_id=claim_id, claimed_at=now)
            )
            if taken.rowcount != 1:
                raise KeyConflict(*IN_FLIGHT)
            return None, claim_id
    except IntegrityError:
        # Another request inserted the same key between our read and our insert.
        raise KeyConflict(*IN_FLIGHT) from None


def _release(sessions: sessionmaker, username: str, key: str, claim_id: str) -> None:
    try:
        with sessions.begin() as session:
            session.execute(delete(IdempotencyKey).where(_key_row(username, key, claim_id)))
    except Exception:  # the database may be the reason we are here; the claim then goes stale
        log.warning("could not release idempotency key claim; it expires by itself", exc_info=True)


def submit_report(
    sessions: sessionmaker,
    principal: Principal,
    report_in: ReportIn,
    idempotency_key: str | None,
    stale_after_seconds: float,
) -> Outcome:
    if idempotency_key is None:
        return store_report(sessions, principal, report_in, None, None)
    fingerprint = request_fingerprint(report_in)
    earlier, claim_id = _claim(
        sessions, principal.username, idempotency_key, fingerprint, stale_after_seconds
    )
    if earlier is not None:
        return earlier
    return store_report(sessions, principal, report_in, idempotency_key, claim_id)


def store_report(
    sessions: sessionmaker,
    principal: Principal,
    report_in: ReportIn,
    idempotency_key: str | None,
    claim_id: str | None,
) -> Outcome:
    """Commit the report, its event and (if keyed) the stored response, all or nothing."""
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
    try:
        with sessions.begin() as session:
            session.add(report)
            enqueue(session, outbox, event)
            if idempotency_key is not None:
                completed = session.execute(
                    update(IdempotencyKey)
                    .where(_key_row(principal.username, idempotency_key, claim_id))
                    .values(
                        completed_at=now, status_code=201, response_body=json.dumps(body, ensure_ascii=False)
                    )
                )
                if completed.rowcount != 1:
                    raise _ClaimLost  # rolls this report back: the request that took over owns the key
    except _ClaimLost:
        with sessions() as session:
            row = session.get(IdempotencyKey, (principal.username, idempotency_key))
            if row is not None and row.completed_at is not None:
                return Outcome(row.status_code, json.loads(row.response_body), replayed=True)
        raise KeyConflict(*IN_FLIGHT) from None
    except Exception:
        if idempotency_key is not None:
            _release(sessions, principal.username, idempotency_key, claim_id)
        raise
    return Outcome(201, body)
