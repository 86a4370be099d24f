"""The numbers a township leader is asked for, for any unit's subtree of the org tree.

A subtree is a prefix of the materialised path ("/1/5/%"), which PostgreSQL serves from the
``text_pattern_ops`` index and SQLite from a range scan: no recursion, a few aggregate queries whatever
the size of the subtree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from services.registry.models import FLAGS, SPECIES, Household, Livestock, Member, OrgUnit, Position
from services.registry.queries import LIAISON_MAX_HOUSEHOLDS, LIAISON_MIN_HOUSEHOLDS, unit_ref, valid_id


def summary_for_unit(session: Session, unit_id: int) -> dict[str, Any] | None:
    """Households, people, liaison workers, livestock and flags under ``unit_id``; None if unknown.

    Livestock is summed for the latest year counted anywhere in the subtree, so a township whose
    survey is half done is not mixed with last year's figures of its other villages.
    """
    if not valid_id(unit_id):
        return None
    unit = session.get(OrgUnit, unit_id)
    if unit is None:
        return None
    in_subtree = OrgUnit.path.like(f"{unit.path}%")
    households_here = (
        select(Household.id)
        .join(OrgUnit, OrgUnit.id == Household.liaison_unit_id)
        .where(in_subtree)
        .scalar_subquery()
    )

    flag_sums = [func.sum(case((getattr(Household, f"flag_{flag}"), 1), else_=0)) for flag in FLAGS]
    totals = session.execute(
        select(func.count(Household.id), *flag_sums)
        .join(OrgUnit, OrgUnit.id == Household.liaison_unit_id)
        .where(in_subtree)
    ).one()
    households = totals[0] or 0
    flags = {flag: int(count or 0) for flag, count in zip(FLAGS, totals[1:], strict=True)}

    people = (
        session.scalar(select(func.count(Member.id)).where(Member.household_id.in_(households_here))) or 0
    )
    liaison_workers = (
        session.scalar(
            select(func.count(func.distinct(Position.person_id)))
            .join(OrgUnit, OrgUnit.id == Position.org_unit_id)
            .where(Position.role == "liaison_worker", in_subtree)
        )
        or 0
    )

    year = session.scalar(select(func.max(Livestock.year)).where(Livestock.household_id.in_(households_here)))
    livestock = dict.fromkeys(SPECIES, 0)
    if year is not None:
        for species, head_count in session.execute(
            select(Livestock.species, func.sum(Livestock.head_count))
            .where(Livestock.household_id.in_(households_here), Livestock.year == year)
            .group_by(Livestock.species)
        ):
            livestock[species] = int(head_count or 0)

    per_unit = (
        select(OrgUnit.id, OrgUnit.name, func.count(Household.id).label("households"))
        .outerjoin(Household, Household.liaison_unit_id == OrgUnit.id)
        .where(OrgUnit.kind == "liaison", in_subtree)
        .group_by(OrgUnit.id, OrgUnit.name)
        .subquery()
    )
    outside = [
        {"unit_id": row.id, "name": row.name, "households": row.households}
        for row in session.execute(
            select(per_unit)
            .where(
                or_(
                    per_unit.c.households < LIAISON_MIN_HOUSEHOLDS,
                    per_unit.c.households > LIAISON_MAX_HOUSEHOLDS,
                )
            )
            .order_by(per_unit.c.id)
        )
    ]
    liaison_units = (
        session.scalar(
            select(func.count()).select_from(OrgUnit).where(and_(OrgUnit.kind == "liaison", in_subtree))
        )
        or 0
    )
    return {
        "unit": unit_ref(unit),
        "households": households,
        "people": people,
        "liaison_units": liaison_units,
        "liaison_workers": liaison_workers,
        "livestock_year": year,
        "livestock": livestock,
        "flags": flags,
        # Flagged, never refused: Jiangqian's own figures force some workers to four households.
        "liaison_workers_outside_5_12": len(outside),
        "liaison_units_outside_5_12": outside,
    }
