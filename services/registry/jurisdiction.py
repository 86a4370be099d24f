"""Who may see and change which households: the org subtree of the caller's position.

County-wide roles (the county command, the governance centre, a department serving every township)
see the whole county; everyone else sees the subtree of their own unit: a township its villages, a
grid leader her village, a liaison worker her own households. Writing is for the chain of
government that keeps the registry (departments read it), and whole files go through the county and
township commands only. Every check happens here, in the registry, where the data is read: a caller
that forgets one still gets nothing it may not have.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry.models import UNIT_KINDS, OrgUnit
from services.registry.queries import valid_id
from services.registry.records import COUNTY_WIDE_ROLES
from services.registry.schemas import Actor

WRITER_ROLES = frozenset(
    {"county_command", "governance_centre", "township_command", "village_grid", "liaison_worker"}
)
# Import and export move thousands of households at once: commands only, each within its own area.
BULK_ROLES = frozenset({"county_command", "governance_centre", "township_command"})


class Refused(Exception):
    """The caller may not do this: ``not_found`` (out of their area or unknown) or ``forbidden``."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Unit:
    id: int
    path: str


def scope_path(session: Session, actor: Actor) -> str | None:
    """``""`` for the whole county, the actor's own unit path, or None: no place in the tree, no data."""
    if actor.role in COUNTY_WIDE_ROLES:
        return ""
    if actor.org_unit_id is None or not valid_id(actor.org_unit_id):
        return None
    return session.scalar(select(OrgUnit.path).where(OrgUnit.id == actor.org_unit_id))


def within(scope: str | None, unit_path: str) -> bool:
    return scope is not None and bool(unit_path) and unit_path.startswith(scope)


def may_see(session: Session, actor: Actor, unit_path: str) -> bool:
    return within(scope_path(session, actor), unit_path)


def may_write(session: Session, actor: Actor, unit_path: str) -> bool:
    return actor.role in WRITER_ROLES and may_see(session, actor, unit_path)


def unit_in_scope(session: Session, actor: Actor, unit_id: int | None) -> Unit | None:
    """The unit asked for (the actor's own, or the county's root, when None) if the actor may see it.

    None when it is unknown or outside the actor's area: the caller answers both the same way, so
    asking does not reveal which units exist elsewhere.
    """
    scope = scope_path(session, actor)
    if scope is None:
        return None
    if unit_id is None:
        if scope:
            unit_id = actor.org_unit_id
        else:
            root = session.execute(
                select(OrgUnit.id, OrgUnit.path).where(OrgUnit.parent_id.is_(None), OrgUnit.kind == "county")
            ).first()
            return Unit(root.id, root.path) if root else None
    if not valid_id(unit_id):
        return None
    row = session.execute(select(OrgUnit.id, OrgUnit.path).where(OrgUnit.id == unit_id)).first()
    if row is None or not within(scope, row.path):
        return None
    return Unit(row.id, row.path)


def unit_paths(session: Session, unit_ids: set[int]) -> dict[int, str]:
    if not unit_ids:
        return {}
    return dict(session.execute(select(OrgUnit.id, OrgUnit.path).where(OrgUnit.id.in_(unit_ids))).all())


ALL_KINDS = frozenset(UNIT_KINDS)


def units_in_scope(
    session: Session, actor: Actor, kinds: frozenset[str] = ALL_KINDS, parent_id: int | None = None
) -> list[dict] | None:
    """The org units of the actor's area (the whole county for county-wide roles), in tree order:
    what a console offers as filters and task targets. None: the actor has no place in the tree."""
    scope = scope_path(session, actor)
    if scope is None:
        return None
    query = (
        select(OrgUnit).where(OrgUnit.path.like(f"{scope}%"), OrgUnit.kind.in_(kinds)).order_by(OrgUnit.path)
    )
    if parent_id is not None:
        query = query.where(OrgUnit.parent_id == parent_id)
    return [
        {
            "id": unit.id,
            "parent_id": unit.parent_id,
            "kind": unit.kind,
            "level": unit.level,
            "name": unit.name,
            "name_bo": unit.name_bo,
        }
        for unit in session.scalars(query)
    ]
