"""Event contracts: what services tell each other, past tense, versioned.

Every event carries ``event_id`` (consumers dedupe on it), ``occurred_at`` and ``version``.
The wire format is nameko's: JSON on the topic exchange ``<source>.events`` with routing key
``event_type``, so nameko services and the FastAPI gateway read and write the same messages.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator, model_validator


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


# What a spoken report may be in: Tibetan, Mandarin, or "the reporter's own language" resolved at intake.
SpeechLanguage = Literal["bo", "zh"]


class AudioRef(BaseModel):
    """A recording in the shared blob store (``<blob_dir>/audio``), named by its SHA-256."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    media_type: str
    size_bytes: int = Field(ge=1)
    duration_seconds: float | None = Field(default=None, ge=0)


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
    # A voice report: routed at once on its text (if any) as pending transcription, and transcribed.
    audio: AudioRef | None = None


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
    # A case is routed again when its recording's transcript changes what it is: the same case_id
    # with a higher revision, recipients only ever added. Consumers keep the highest revision.
    revision: int = Field(default=1, ge=1)
    transcription: Literal["pending", "done", "failed"] | None = None
    audio: AudioRef | None = None


class WordTiming(BaseModel):
    word: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    confidence: float = Field(ge=0, le=1)


class ReportTranscribed(Event):
    source: ClassVar[str] = "speech"
    event_type: ClassVar[str] = "report_transcribed"

    report_id: str
    text: str
    language: str
    words: list[WordTiming] = Field(default_factory=list)
    engine: str
    model: str
    audio_seconds: float = Field(ge=0)
    decode_seconds: float = Field(ge=0)


class TranscriptionFailed(Event):
    """The recording stays whole and playable; only its text is missing, and this says why."""

    source: ClassVar[str] = "speech"
    event_type: ClassVar[str] = "transcription_failed"

    report_id: str
    language: str | None = None
    reason: Literal["no_model", "corrupt_audio", "too_long", "timeout"]
    detail: str = ""


# --- Cases after routing: what users do to them, and what routing tells the units involved -----------

# A case's states (services/routing/lifecycle.py has the machine that moves between them).
CaseState = Literal[
    "routed",
    "acknowledged",
    "in_progress",
    "resolved",
    "closed",
    "returned",
    "reassigned",
    "escalated",
    "reopened",
    "merged",
]

CaseActionName = Literal[
    "acknowledge",
    "start",
    "comment",
    "resolve",
    "return",
    "reassign",
    "merge",
    "escalate",
    "confirm",
    "reopen",
    "rate",
]
# 退单: "not ours" is routed elsewhere; "cannot solve at this level" climbs the escalation ladder.
ReturnReason = Literal["not_ours", "cannot_solve"]
# Actions that must say why (the resolution, the reason for a return, a reopening, a comment).
NOTE_REQUIRED = frozenset({"comment", "resolve", "return", "reopen"})
# The field each action needs, and that no other action takes.
ACTION_FIELDS = {"return": "reason", "reassign": "unit_id", "merge": "into", "rate": "rating"}
NOTE_MAX = 2000


class CaseAction(BaseModel):
    """One action on a case as a user asks for it: the gateway checks its shape, routing decides
    whether this user may take it now. ``action_id`` makes a retry return the first outcome."""

    model_config = ConfigDict(extra="forbid", strict=True)

    action: CaseActionName
    note: str = Field(default="", max_length=NOTE_MAX)
    reason: ReturnReason | None = None
    unit_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="reassign: the new unit")
    into: str | None = Field(
        default=None, min_length=1, max_length=64, description="merge: the original report"
    )
    rating: int | None = Field(default=None, ge=1, le=5, description="rate: 1 (poor) to 5 (very satisfied)")
    action_id: str | None = Field(default=None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _needs(self) -> CaseAction:
        for action, field in ACTION_FIELDS.items():
            given = getattr(self, field) is not None
            if self.action == action and not given:
                raise ValueError(f"{action} needs {field}")
            if self.action != action and given:
                raise ValueError(f"{field} belongs to {action}, not {self.action}")
        if self.action in NOTE_REQUIRED and not self.note.strip():
            raise ValueError(f"{self.action} needs a note saying why")
        return self


NoticeKind = Literal[
    "assigned",
    "escalated",
    "reassigned",
    "reminder",
    "overdue",
    "resolved",
    "reopened",
    "confirmed",
    "closed",
    "merged",
    "comment",
    "rated",
]


class Notice(BaseModel):
    """One unit told about one change of a case. ``key`` is unique per case and unit: a redelivered
    or re-published update never tells anyone twice."""

    key: str
    kind: NoticeKind
    role: Literal["handler", "copy", "supervisor", "reporter"]
    position: str
    org_unit: UnitRef
    person: PersonRef | None = None
    note: str = ""


class CaseUpdated(Event):
    """A case changed after routing: an action, a reminder, an escalation, a closure.

    ``seq`` counts the case's changes: consumers keep the state of the highest. The event id is
    derived from the case and ``seq``, so a re-published update is the same event.
    """

    source: ClassVar[str] = "routing"
    event_type: ClassVar[str] = "case_updated"

    case_id: str
    report_id: str
    seq: int = Field(ge=1)
    change: str
    actor: str
    note: str = ""
    state: str
    stage: int = Field(ge=1)
    category: str
    urgency: Literal["urgent", "general"]
    summary: str
    deadline_at: datetime
    handler: Recipient
    notices: list[Notice] = Field(default_factory=list)
    # The name of the township the matter lies in (None: the county as a whole), and whether the
    # case ever missed a deadline: what the governance figures count by.
    township: str | None = None
    overdue: bool = False


# --- Tasks down (下发任务): the county and townships ask every liaison worker under some units ---------

TaskKind = Literal["outreach", "survey", "headcount", "other"]
# What each recipient answers with; a text task may also be answered by a recording.
TaskAnswerType = Literal["text", "number"]
TASK_TITLE_MAX = 200
TASK_BODY_MAX = 4000
TASK_TARGETS_MAX = 200
TASK_ANSWER_TEXT_MAX = 4000
# A headcount or a damage figure; larger numbers are typing errors.
TASK_NUMBER_MAX = 1e12
UnitId = Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
# Control characters other than tab and newline: PostgreSQL refuses NUL, and none belong in a task.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def task_text(value: str | None) -> str | None:
    """Text a person typed, without control characters; a lone surrogate (from a JSON escape) is
    refused, as no database or hash can encode it."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("string is not valid Unicode (lone surrogate)") from None
    return _CONTROL.sub("", value)


class TaskOrder(BaseModel):
    """A task as its sender asks for it: the gateway checks its shape, routing where it may go."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=TASK_TITLE_MAX)
    body: str = Field(default="", max_length=TASK_BODY_MAX)
    kind: TaskKind
    answer: TaskAnswerType
    targets: list[UnitId] = Field(min_length=1, max_length=TASK_TARGETS_MAX)
    due_at: datetime | None = Field(
        default=None, description="Default: 7 days from now; without a zone, the county's time"
    )

    _clean = field_validator("title", "body")(task_text)

    @model_validator(mode="after")
    def _title(self) -> TaskOrder:
        if not self.title.strip():
            raise ValueError("title must not be blank")
        return self


class TaskReply(BaseModel):
    """One recipient's answer: text and/or a recording for a text task, a number for a number task."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=TASK_ANSWER_TEXT_MAX)
    number: StrictFloat | StrictInt | None = Field(
        default=None, ge=-TASK_NUMBER_MAX, le=TASK_NUMBER_MAX, allow_inf_nan=False
    )
    audio: AudioRef | None = None

    _clean = field_validator("text")(task_text)


class TaskRecipientRef(BaseModel):
    """A liaison unit a task reached, with the worker who heads it."""

    org_unit: UnitRef
    person: PersonRef | None = None


class TaskAssigned(Event):
    """A task was sent: every recipient unit gets it in its inbox, once."""

    source: ClassVar[str] = "routing"
    event_type: ClassVar[str] = "task_assigned"

    task_id: str
    title: str
    kind: TaskKind
    answer: TaskAnswerType
    due_at: datetime
    sender_unit: UnitRef | None = None
    recipients: list[TaskRecipientRef]


class TaskAnswered(Event):
    """A recipient answered (or answered again): its inbox item shows the task as answered."""

    source: ClassVar[str] = "routing"
    event_type: ClassVar[str] = "task_answered"

    task_id: str
    org_unit_id: int
    answered_at: datetime


class TaskCancelled(Event):
    """The sender withdrew the task: every recipient's item shows it cancelled."""

    source: ClassVar[str] = "routing"
    event_type: ClassVar[str] = "task_cancelled"

    task_id: str
    note: str = ""
