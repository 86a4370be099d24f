"""The registry's tables: one org tree (routing, escalation, permissions) and the households under it."""

from __future__ import annotations

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, SmallInteger, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lianhu.db import make_metadata

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


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    name_bo: Mapped[str | None] = mapped_column(String(128))
    sex: Mapped[str | None] = mapped_column(String(1))  # "M" / "F"
    birth_year: Mapped[int | None] = mapped_column(SmallInteger)
    relation: Mapped[str] = mapped_column(String(16))
