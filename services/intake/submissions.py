"""Accepting a report: durably, once, whatever the phone retries.

One writer thread commits reports in batches (group commit): a request hands its report over and
waits for the commit that holds it. Each report, its ``report_submitted`` outbox row and its
Idempotency-Key are written in that one transaction, so a ``201`` means the report will reach
routing even if the broker is away, and a key never exists without its report — a request that
died leaves nothing half-claimed behind.

Idempotency-Key: the same key and body give the original response; the same key with another body
is refused (``422``); a retry while the first request is still queued or being written here is told
to wait (``409``). Another gateway process racing on the same key meets the unique key and answers
with the stored response.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from lianhu.auth import Principal
from lianhu.bus import outbox_row
from lianhu.db import write_lock
from lianhu.events import AudioRef, Reporter, ReportSubmitted, utcnow
from services.intake.models import IdempotencyKey, Report, outbox
from services.intake.schemas import ReportIn

log = logging.getLogger(__name__)

IN_FLIGHT = (409, "a request with this Idempotency-Key is still being processed", "idempotency_key_in_flight")
REUSED = (422, "this Idempotency-Key was used with a different request body", "idempotency_key_reused")


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


class Overloaded(Exception):
    """More reports are waiting to be written than the gateway will hold: the phone should retry."""


def request_fingerprint(report: ReportIn, audio: AudioRef | None = None) -> str:
    # The recording is part of the request: the same key with other audio is another request.
    fields = {**report.model_dump(mode="json"), "audio": audio.sha256 if audio else None}
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def report_body(report: Report) -> dict:
    location = None if report.lat is None else {"lat": report.lat, "lon": report.lon}
    audio = None
    if report.audio_sha256 is not None:
        audio = {
            "url": f"/v1/reports/{report.id}/audio",
            "media_type": report.audio_type,
            "bytes": report.audio_bytes,
            "seconds": report.audio_seconds,
        }
    return {
        "id": report.id,
        "status": "received",
        "text": report.text,
        "language": report.language,
        "household_id": report.household_id,
        "location": location,
        "reporter": report.reporter_username,
        "created_at": report.created_at.isoformat(),
        "audio": audio,
        # A recording's text comes later, from the speech service (GET /v1/reports/{id}).
        "transcription": "pending" if audio else None,
        "transcript": None,
        # Filled in from routing once the case exists (GET /v1/reports/{id}).
        "category": None,
        "urgency": None,
        "matched": [],
        "case": None,
    }


@dataclass
class _Pending:
    principal: Principal
    report_in: ReportIn
    key: str | None
    fingerprint: str
    audio: AudioRef | None = None
    future: Future = field(default_factory=Future)


def _new_report(item: _Pending, now: datetime) -> tuple[Report, ReportSubmitted]:
    report_in, principal, audio = item.report_in, item.principal, item.audio
    language = principal.language if report_in.language == "auto" else report_in.language
    report = Report(
        id=str(uuid.uuid4()),
        reporter_username=principal.username,
        text=report_in.text,
        language=language,
        household_id=report_in.household_id,
        lat=report_in.location.lat if report_in.location else None,
        lon=report_in.location.lon if report_in.location else None,
        created_at=now,
        audio_sha256=audio.sha256 if audio else None,
        audio_type=audio.media_type if audio else None,
        audio_bytes=audio.size_bytes if audio else None,
        audio_seconds=audio.duration_seconds if audio else None,
    )
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
        audio=audio,
    )
    return report, event


class ReportWriter:
    """The single writer of reports: a bounded queue in, one transaction per batch out."""

    def __init__(self, sessions: sessionmaker, max_queue: int = 1000, max_batch: int = 200, on_commit=None):
        self.sessions = sessions
        self.max_batch = max_batch
        self.on_commit = on_commit
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=max_queue)
        self._in_flight: dict[tuple[str, str], str] = {}
        self._in_flight_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="report-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Write what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def submit(
        self, principal: Principal, report_in: ReportIn, key: str | None = None, audio: AudioRef | None = None
    ) -> Future:
        """Queue a report (with its stored recording, if any); the future resolves to its
        :class:`Outcome` once committed."""
        fingerprint = request_fingerprint(report_in, audio) if key else ""
        item = _Pending(principal, report_in, key, fingerprint, audio)
        if key is not None:
            with self._in_flight_lock:
                held = self._in_flight.get((principal.username, key))
                if held is not None:
                    raise KeyConflict(*(IN_FLIGHT if held == item.fingerprint else REUSED))
                self._in_flight[(principal.username, key)] = item.fingerprint
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._release(item)
            raise Overloaded from None
        return item.future

    def _release(self, item: _Pending) -> None:
        if item.key is not None:
            with self._in_flight_lock:
                self._in_flight.pop((item.principal.username, item.key), None)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._commit(batch)
            except Exception as error:  # the writer must outlive any one batch, or every later request waits
                log.exception("report writer failed on a batch")
                for item in batch:
                    self._release(item)
                    if not item.future.done():
                        item.future.set_exception(error)
            if stopping:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            outcomes = self._write(batch)
        except IntegrityError:
            # Another gateway process stored one of these keys meanwhile: one at a time, so each
            # finds what is there and only that one answers with the stored response.
            outcomes = [self._write_alone(item) for item in batch]
        except Exception as error:  # the database is away: every request hears it, nothing is half-written
            log.warning("report batch of %d not written: %s", len(batch), error)
            outcomes = [error] * len(batch)
        for item, outcome in zip(batch, outcomes, strict=True):
            self._release(item)
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)
        if self.on_commit is not None:
            self.on_commit()

    def _write_alone(self, item: _Pending) -> Outcome | Exception:
        try:
            return self._write([item])[0]
        except IntegrityError:
            return KeyConflict(*IN_FLIGHT)
        except Exception as error:
            return error

    def _write(self, batch: list[_Pending]) -> list[Outcome | Exception]:
        now = utcnow()
        outcomes: list[Outcome | Exception] = []
        reports: list[dict] = []
        events: list[dict] = []
        keys: list[dict] = []
        with write_lock(self.sessions.kw["bind"]), self.sessions.begin() as session:
            wanted = [(item.principal.username, item.key) for item in batch if item.key is not None]
            stored = {}
            if wanted:
                rows = session.scalars(
                    select(IdempotencyKey).where(
                        tuple_(IdempotencyKey.username, IdempotencyKey.key).in_(wanted)
                    )
                )
                stored = {(row.username, row.key): row for row in rows}
            for item in batch:
                earlier = stored.get((item.principal.username, item.key)) if item.key is not None else None
                if earlier is not None:
                    if earlier.request_hash != item.fingerprint:
                        outcomes.append(KeyConflict(*REUSED))
                    else:
                        outcomes.append(Outcome(earlier.status_code, json.loads(earlier.response_body), True))
                    continue
                report, event = _new_report(item, now)
                body = report_body(report)
                reports.append(
                    {column.key: getattr(report, column.key) for column in Report.__table__.columns}
                )
                events.append(outbox_row(event))
                if item.key is not None:
                    keys.append(
                        {
                            "username": item.principal.username,
                            "key": item.key,
                            "request_hash": item.fingerprint,
                            "status_code": 201,
                            "response_body": json.dumps(body, ensure_ascii=False),
                            "created_at": now,
                        }
                    )
                outcomes.append(Outcome(201, body))
            if reports:
                session.execute(insert(Report), reports)
                session.execute(insert(outbox), events)
            if keys:
                session.execute(insert(IdempotencyKey), keys)
        return outcomes
