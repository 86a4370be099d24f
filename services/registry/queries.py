"""Read-side questions the other services ask the registry: who is above whom, who heads a unit.

Plain functions over a SQLAlchemy session returning plain JSON-able dicts, so the nameko service stays
thin and these are unit-tested on both engines. Unknown ids answer None / [] and never raise: a report
must still be routed (to the governance centre at least) when a phone sends a stale id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from services.registry.models import Household, Member, OrgUnit, Person, Position

# Ids outside a 32-bit INTEGER cannot exist, and PostgreSQL raises on the comparison instead of
# answering "no row": screen them out before they reach the database.
_MAX_ID = 2**31 - 1

# A liaison worker should cover 5-12 households (the Gande practice); outside it is flagged, not refused.
LIAISON_MIN_HOUSEHOLDS = 5
LIAISON_MAX_HOUSEHOLDS = 12

UnitRef = dict[str, Any]
PersonRef = dict[str, Any]
Responsible = dict[str, Any]


def valid_id(value: object) -> bool:
    """True for a plausible row id; bool is an int subclass but never an id."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _MAX_ID


def unit_ref(unit: OrgUnit) -> UnitRef:
    return {"id": unit.id, "name": unit.name, "name_bo": unit.name_bo, "kind": unit.kind, "level": unit.level}


def person_ref(person: Person) -> PersonRef:
    return {"id": person.id, "name": person.name, "name_bo": person.name_bo, "phone": person.phone}


def path_ids(path: str) -> list[int]:
    """Ids along a materialised path, root first: "/1/5/23/" gives [1, 5, 23]."""
    return [int(part) for part in path.strip("/").split("/") if part]


def heads_of(session: Session, unit_ids: list[int]) -> dict[int, PersonRef]:
    """The head of each unit: the person of its first (lowest id) is_head position."""
    if not unit_ids:
        return {}
    rows = session.execute(
        select(Position.org_unit_id, Person)
        .join(Person, Person.id == Position.person_id)
        .where(Position.org_unit_id.in_(unit_ids), Position.is_head.is_(True))
        .order_by(Position.org_unit_id, Position.id)
    ).all()
    heads: dict[int, PersonRef] = {}
    for unit_id, person in rows:
        heads.setdefault(unit_id, person_ref(person))
    return heads


def _responsible(session: Session, unit: OrgUnit | None) -> Responsible | None:
    if unit is None:
        return None
    return {"unit": unit_ref(unit), "head": heads_of(session, [unit.id]).get(unit.id)}


def chain_above(session: Session, unit_id: int) -> list[Responsible]:
    """The unit and each ancestor up to the county, nearest first: the escalation ladder."""
    if not valid_id(unit_id):
        return []
    unit = session.get(OrgUnit, unit_id)
    if unit is None:
        return []
    # The path names every ancestor, so the chain costs two queries whatever its depth.
    ids = list(reversed(path_ids(unit.path))) or [unit.id]
    units = {row.id: row for row in session.scalars(select(OrgUnit).where(OrgUnit.id.in_(ids)))}
    heads = heads_of(session, ids)
    return [{"unit": unit_ref(units[i]), "head": heads.get(i)} for i in ids if i in units]


def handler_of(session: Session, unit_id: int) -> Responsible | None:
    if not valid_id(unit_id):
        return None
    return _responsible(session, session.get(OrgUnit, unit_id))


def governance_centre(session: Session) -> Responsible | None:
    unit = session.scalars(
        select(OrgUnit).where(OrgUnit.kind == "governance_centre").order_by(OrgUnit.id).limit(1)
    ).first()
    return _responsible(session, unit)


def department(session: Session, code: str) -> Responsible | None:
    if not isinstance(code, str) or not code:
        return None
    unit = session.scalars(
        select(OrgUnit).where(OrgUnit.kind == "department", OrgUnit.code == code).limit(1)
    ).first()
    return _responsible(session, unit)


def get_household(session: Session, household_id: int) -> dict[str, Any] | None:
    if not valid_id(household_id):
        return None
    household = session.get(Household, household_id)
    if household is None:
        return None
    members = session.scalar(select(func.count()).where(Member.household_id == household.id)) or 0
    return {
        "id": household.id,
        "book_no": household.book_no,
        "head_name": household.head_name,
        "head_name_bo": household.head_name_bo,
        "liaison_unit_id": household.liaison_unit_id,
        "address": household.address,
        "members": members,
    }


def reporter_context(session: Session, org_unit_id: int | None, household_id: int | None) -> dict[str, Any]:
    """Everything routing needs about who reported and for whom, in one call.

    ``unit`` is the reporter's own unit; the chain starts at the household's liaison unit when the
    household is known (the report is about that household's area), else at the reporter's unit.
    """
    reporter_unit = session.get(OrgUnit, org_unit_id) if valid_id(org_unit_id) else None
    household = get_household(session, household_id) if household_id is not None else None
    if household is not None:
        jurisdiction: int | None = household["liaison_unit_id"]
    else:
        jurisdiction = reporter_unit.id if reporter_unit is not None else None
    return {
        "unit": unit_ref(reporter_unit) if reporter_unit else None,
        "household": household,
        "household_found": household is not None,
        "chain": chain_above(session, jurisdiction) if jurisdiction is not None else [],
        "governance_centre": governance_centre(session),
    }


def _count_units(session: Session, kind: str) -> int:
    return session.scalar(select(func.count()).select_from(OrgUnit).where(OrgUnit.kind == kind)) or 0


def summary(session: Session) -> dict[str, Any]:
    """County-wide counts, and per township, for dashboards and seed checks."""
    households_per_unit = (
        select(OrgUnit.id.label("unit_id"), OrgUnit.path, func.count(Household.id).label("households"))
        .outerjoin(Household, Household.liaison_unit_id == OrgUnit.id)
        .where(OrgUnit.kind == "liaison")
        .group_by(OrgUnit.id, OrgUnit.path)
        .subquery()
    )
    outside = (
        session.scalar(
            select(func.count())
            .select_from(households_per_unit)
            .where(
                or_(
                    households_per_unit.c.households < LIAISON_MIN_HOUSEHOLDS,
                    households_per_unit.c.households > LIAISON_MAX_HOUSEHOLDS,
                )
            )
        )
        or 0
    )
    liaison_workers = (
        session.scalar(
            select(func.count(func.distinct(Position.person_id))).where(Position.role == "liaison_worker")
        )
        or 0
    )
    return {
        "townships": _count_units(session, "township"),
        "villages": _count_units(session, "village"),
        "departments": _count_units(session, "department"),
        "liaison_units": _count_units(session, "liaison"),
        "liaison_workers": liaison_workers,
        "households": session.scalar(select(func.count()).select_from(Household)) or 0,
        "persons": session.scalar(select(func.count()).select_from(Person)) or 0,
        "members": session.scalar(select(func.count()).select_from(Member)) or 0,
        "liaison_workers_outside_5_12": outside,
        "by_township": _by_township(session),
    }


def _by_township(session: Session) -> list[dict[str, Any]]:
    townships = session.scalars(select(OrgUnit).where(OrgUnit.kind == "township").order_by(OrgUnit.id)).all()
    # One pass over the liaison units: the township is the third id of each one's path
    # (county / township / village / liaison).
    unit_rows = session.execute(
        select(OrgUnit.id, OrgUnit.kind, OrgUnit.path).where(OrgUnit.kind.in_(("village", "liaison")))
    ).all()
    household_rows = session.execute(
        select(OrgUnit.path, func.count(func.distinct(Household.id)), func.count(Member.id))
        .join(Household, Household.liaison_unit_id == OrgUnit.id)
        .outerjoin(Member, Member.household_id == Household.id)
        .group_by(OrgUnit.path)
    ).all()
    stats = {
        t.id: {"id": t.id, "name": t.name, "villages": 0, "liaison_units": 0, "households": 0, "members": 0}
        for t in townships
    }
    for _id, kind, path in unit_rows:
        ids = path_ids(path)
        if len(ids) > 1 and ids[1] in stats:
            stats[ids[1]]["villages" if kind == "village" else "liaison_units"] += 1
    for path, households, members in household_rows:
        ids = path_ids(path)
        if len(ids) > 1 and ids[1] in stats:
            stats[ids[1]]["households"] += households
            stats[ids[1]]["members"] += members
    return list(stats.values())


def position_of(session: Session, person_id: int, org_unit_id: int) -> dict[str, Any] | None:
    """The person's position at the unit (what an account is bound to), with the unit's township."""
    if not (valid_id(person_id) and valid_id(org_unit_id)):
        return None
    row = session.execute(
        select(Position, Person, OrgUnit)
        .join(Person, Person.id == Position.person_id)
        .join(OrgUnit, OrgUnit.id == Position.org_unit_id)
        .where(Position.person_id == person_id, Position.org_unit_id == org_unit_id)
        .order_by(Position.is_head.desc(), Position.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    position, person, unit = row
    township = session.scalar(
        select(OrgUnit.name).where(OrgUnit.id.in_(path_ids(unit.path)), OrgUnit.kind == "township")
    )
    return {
        "role": position.role,
        "title": position.title,
        "person": person_ref(person),
        "unit": unit_ref(unit),
        "township": township or "",
    }
