"""What may be written into the registry: households with members and livestock, as validated input.

Used by the RPC methods, the importer (one row at a time, errors reported per column) and the seed.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from services.registry.idnumber import parse_id_number
from services.registry.models import DOCUMENT_KINDS, FLAGS, SPECIES

Species = Literal[SPECIES]  # type: ignore[valid-type]
Flag = Literal[FLAGS]  # type: ignore[valid-type]
DocumentKind = Literal[DOCUMENT_KINDS]  # type: ignore[valid-type]
PHONE_PATTERN = r"^\+?[0-9][0-9\- ]{5,18}[0-9]$"


class Actor(BaseModel):
    """Who asks: every change and every sensitive read is recorded against them."""

    username: str
    role: str
    org_unit_id: int | None = None


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=64)
    name_bo: str | None = Field(default=None, max_length=128)
    sex: Literal["M", "F"] | None = None
    birth_date: date | None = None
    relation: str = Field(min_length=1, max_length=16)
    ethnicity: str | None = Field(default=None, max_length=16)
    phone: str | None = Field(default=None, pattern=PHONE_PATTERN)
    id_number: str | None = None

    @field_validator("id_number")
    @classmethod
    def _id_number(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return None
        parsed = parse_id_number(value)
        # Fields are validated in order, so birth date and sex are known here: checked once.
        birth_date, sex = info.data.get("birth_date"), info.data.get("sex")
        if birth_date is not None and birth_date != parsed.birth_date:
            raise ValueError("birth date does not match the ID number / 出生日期与身份证号不符")
        if sex is not None and sex != parsed.sex:
            raise ValueError("sex does not match the ID number / 性别与身份证号不符")
        return parsed.number

    @model_validator(mode="after")
    def _fill_from_id_number(self) -> MemberIn:
        # The number is already valid: read birth date and sex off its digits, no second parse.
        if self.id_number is not None:
            number = self.id_number
            self.birth_date = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
            self.sex = "M" if int(number[16]) % 2 else "F"
        return self


class LivestockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    year: int = Field(ge=1949, le=2100)
    species: Species
    head_count: int = Field(ge=0, le=1_000_000)


class HouseholdIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    book_no: str = Field(min_length=1, max_length=32)
    liaison_unit_id: int = Field(ge=1, le=2**31 - 1)
    head_name: str = Field(min_length=1, max_length=64)
    head_name_bo: str | None = Field(default=None, max_length=128)
    address: str | None = Field(default=None, max_length=255)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    grassland_area_mu: float | None = Field(default=None, ge=0, le=10_000_000)
    flags: set[Flag] = Field(default_factory=set)
    members: list[MemberIn] = Field(default_factory=list, max_length=60)
    livestock: list[LivestockIn] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _one_entry_per_species_and_year(self) -> HouseholdIn:
        keys = [(entry.year, entry.species) for entry in self.livestock]
        if len(keys) != len(set(keys)):
            raise ValueError("livestock lists a species twice for one year / 同一年份的畜种重复")
        ids = [member.id_number for member in self.members if member.id_number]
        if len(ids) != len(set(ids)):
            raise ValueError("two members share one ID number / 成员身份证号重复")
        return self
