"""The registry's tables: one org tree (routing, escalation, permissions) and the households under it."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lianhu.db import UtcDateTime, make_metadata

UNIT_KINDS = ("county", "governance_centre", "department", "township", "village", "liaison")
ROLES = (
    "county_command",
    "governance_centre",
    "department",
    "township_command",
    "village_grid",
    "liaison_worker",
)
# The level of each kind is fixed by the four-level system; kept here so the seed and checks agree.
LEVEL_OF_KIND = {
    "county": 1,
    "governance_centre": 1,
    "department": 2,
    "township": 2,
    "village": 3,
    "liaison": 4,
}
DOCUMENT_KINDS = ("hukou", "id_card", "disability_cert", "low_income_cert", "other")
SPECIES = ("yak", "sheep", "goat", "horse")
# Household status flags (sensitive personal information under PIPL: shown by role, audited).
FLAGS = ("low_income", "disability", "five_guarantee", "left_behind_elderly")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Base(DeclarativeBase):
    metadata = make_metadata()


class OrgUnit(Base):
    __tablename__ = "org_units"
    __table_args__ = (
        CheckConstraint(_in_list("kind", UNIT_KINDS), name="kind"),
        CheckConstraint("level BETWEEN 1 AND 4", name="level"),
        # text_pattern_ops lets PostgreSQL use the index for `path LIKE '/1/5/%'` under any collation.
        Index("ix_org_units_path", "path", postgresql_ops={"path": "text_pattern_ops"}),
        Index("ix_org_units_kind", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    level: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str] = mapped_column(String(128))
    name_bo: Mapped[str | None] = mapped_column(String(256))
    code: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Materialised path of ids, "/1/5/23/": ancestors without recursion, a subtree by prefix.
    path: Mapped[str] = mapped_column(String(255), default="")


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    name_bo: Mapped[str | None] = mapped_column(String(128))
    sex: Mapped[str | None] = mapped_column(String(1))  # "M" / "F"
    phone: Mapped[str | None] = mapped_column(String(20))


class Position(Base):
    __tablename__ = "positions"
    __table_args__ = (
        CheckConstraint(_in_list("role", ROLES), name="role"),
        # "Who heads this unit" is the hot lookup of every chain.
        Index("ix_positions_org_unit_id_is_head", "org_unit_id", "is_head"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    role: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(64))
    is_head: Mapped[bool] = mapped_column(Boolean, default=False)


class Household(Base):
    __tablename__ = "households"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    book_no: Mapped[str] = mapped_column(String(32), unique=True)
    liaison_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    head_name: Mapped[str] = mapped_column(String(64))
    head_name_bo: Mapped[str | None] = mapped_column(String(128))
    address: Mapped[str | None] = mapped_column(String(255))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    # Grassland contract area in mu (亩), as on the contract certificate.
    grassland_area_mu: Mapped[float | None] = mapped_column(Float)
    flag_low_income: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    flag_disability: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    flag_five_guarantee: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    flag_left_behind_elderly: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Bumped by every change: history rows name the version they replaced.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    name_bo: Mapped[str | None] = mapped_column(String(128))
    sex: Mapped[str | None] = mapped_column(String(1))  # "M" / "F"
    birth_year: Mapped[int | None] = mapped_column(SmallInteger)
    relation: Mapped[str] = mapped_column(String(16))
    birth_date: Mapped[date | None] = mapped_column(Date)
    ethnicity: Mapped[str | None] = mapped_column(String(16))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    # The national ID number never rests in clear: AES-GCM ciphertext, a keyed blind index for exact
    # search, and the masked form (first six and last two characters) for everyone else.
    id_number_cipher: Mapped[str | None] = mapped_column(Text)
    id_number_index: Mapped[str | None] = mapped_column(String(64), index=True)
    id_number_masked: Mapped[str | None] = mapped_column(String(18))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Document(Base):
    """A scanned certificate; the file itself lives in the blob store under its SHA-256."""

    __tablename__ = "documents"
    __table_args__ = (CheckConstraint(_in_list("kind", DOCUMENT_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    # Certificate numbers embed the ID number (a disability certificate is ID + two digits): encrypted.
    number_cipher: Mapped[str | None] = mapped_column(Text)
    number_masked: Mapped[str | None] = mapped_column(String(32))
    issued_on: Mapped[date | None] = mapped_column(Date)
    expires_on: Mapped[date | None] = mapped_column(Date)
    file_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    file_type: Mapped[str | None] = mapped_column(String(64))
    file_size: Mapped[int | None] = mapped_column(Integer)
    original_name: Mapped[str | None] = mapped_column(String(255))
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    uploaded_by: Mapped[str] = mapped_column(String(64))


class Livestock(Base):
    __tablename__ = "livestock"
    __table_args__ = (
        CheckConstraint(_in_list("species", SPECIES), name="species"),
        CheckConstraint("head_count >= 0", name="head_count"),
        UniqueConstraint("household_id", "year", "species", name="uq_livestock_household_year_species"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    year: Mapped[int] = mapped_column(SmallInteger)
    species: Mapped[str] = mapped_column(String(16))
    head_count: Mapped[int] = mapped_column(Integer)


class History(Base):
    """Every previous value of every edited field: an edit never erases what was there before.

    Sensitive values are kept as they rest (the ID number's ciphertext), never in clear.
    """

    __tablename__ = "history"
    __table_args__ = (Index("ix_history_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    changed_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """Append-only (database triggers refuse UPDATE and DELETE): who did or saw what, when, why."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int | None] = mapped_column(Integer)
    fields: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
