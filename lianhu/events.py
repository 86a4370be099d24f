"""Event contracts: what services tell each other, past tense, versioned.

Every event carries ``event_id`` (consumers dedupe on it), ``occurred_at`` and ``version``.
The wire format is nameko's: JSON on the topic exchange ``<source>.events`` with routing key
``event_type``, so nameko services and the FastAPI gateway read and write the same messages.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    source: ClassVar[str]
    event_type: ClassVar[str]

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: datetime = Field(default_factory=utcnow)
    version: int = 1

    @classmethod
    def exchange(cls) -> str:
        return f"{cls.source}.events"

    def to_wire(self) -> dict:
        return self.model_dump(mode="json")


class Location(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Reporter(BaseModel):
    """Who sent a report, as the gateway knows them from the access token."""

    username: str
    person_id: int | None = None
    org_unit_id: int | None = None
    role: str


class ReportSubmitted(Event):
    source: ClassVar[str] = "intake"
    event_type: ClassVar[str] = "report_submitted"

    report_id: str
    text: str = ""
    language: str | None = None
    household_id: int | None = None
    location: Location | None = None
    reporter: Reporter
    submitted_at: datetime


class UnitRef(BaseModel):
    id: int
    name: str
    name_bo: str | None = None
    kind: str
    level: int


class PersonRef(BaseModel):
    id: int
    name: str
    name_bo: str | None = None
    phone: str | None = None


class Recipient(BaseModel):
    """One unit (and its responsible person) that receives a case.

    ``role`` says what is expected of it: the ``handler`` must act, a ``copy`` is kept informed.
    ``position`` is the org role that made it a recipient, ``reason`` says why in words.
    """

    role: Literal["handler", "copy"]
    position: str
    org_unit: UnitRef
    person: PersonRef | None = None
    reason: str


class MatchedTerm(BaseModel):
    category: str
    term: str
    language: str
    urgent: bool = False


class ReportRouted(Event):
    source: ClassVar[str] = "routing"
    event_type: ClassVar[str] = "report_routed"

    report_id: str
    case_id: str
    category: str
    urgency: Literal["urgent", "general"]
    matched: list[MatchedTerm]
    rules_version: str
    deadline_at: datetime
    handler: Recipient
    recipients: list[Recipient]
    summary: str
    reporter: Reporter
    explanation: str
