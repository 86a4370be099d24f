"""Request and response bodies of the gateway's public API."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from lianhu.events import Location
from services.intake.config import intake_settings

# Control characters other than tab and newline: PostgreSQL refuses NUL, and none belong in a report.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(value: str) -> str:
    return _CONTROL.sub("", value).strip()


def _valid_unicode(value: str) -> str:
    # JSON's \uXXXX escapes can carry a lone surrogate, which no database or hash can encode.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("string is not valid Unicode (lone surrogate)") from None
    return value


# Every string a client sends: refused with a 422 unless it is valid Unicode.
UnicodeStr = Annotated[str, AfterValidator(_valid_unicode)]


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: UnicodeStr = Field(description="What the liaison worker reports, in Chinese or Tibetan.")
    # Household ids are 32-bit INTEGER columns: a larger number could only overflow them.
    household_id: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="The household it concerns, if any."
    )
    language: Literal["zh", "bo", "auto"] | None = None
    location: Location | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        value = clean_text(value)
        if not value:
            raise ValueError("text must not be empty")
        return _within_limit(value)


def _within_limit(value: str) -> str:
    limit = intake_settings().report_text_max
    if len(value) > limit:
        raise ValueError(f"text is {len(value)} characters; at most {limit} are accepted")
    return value


class VoiceReportIn(ReportIn):
    """The form fields beside a recording: the text is optional, the spoken language is the
    reporter's own unless the phone says which (``auto`` is the default)."""

    text: UnicodeStr = Field(default="", description="Anything typed beside the recording.")
    language: Literal["zh", "bo", "auto"] = "auto"

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return _within_limit(clean_text(value))


class ExplainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: UnicodeStr = Field(max_length=20_000)
    reporter: UnicodeStr | None = Field(
        default=None, description="Username to route as; the caller if omitted."
    )


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    username: str
    role: str
    org_unit: int | None
    org_unit_name: str
    township: str
    language: str
