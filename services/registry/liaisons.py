"""Who a task sent to some units reaches: every liaison unit (level 4) beneath them, within the
sender's jurisdiction.

Routing asks once, when a task is sent, and keeps the answer: each liaison unit with its path (so
"who is above a recipient" is answered without the registry later) and the townships and villages on
those paths (so completion rolls up by name).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from services.registry.jurisdiction import Refused, scope_path, within
from services.registry.models import OrgUnit
from services.registry.queries import heads_of, path_ids, unit_ref, valid_id
from services.registry.schemas import Actor

MAX_TARGETS = 200
ROLLUP_KINDS = frozenset({"township", "village"})


class UnknownTarget(Refused):
    def __init__(self, unit_id: Any):
        super().__init__("not_found", f"no unit {unit_id} in your area")
        self.unit_id = unit_id


def liaison_units_under(session: Session, actor: Actor, unit_ids: list[Any]) -> dict[str, Any]:
    """``{"sender_unit", "targets": [{"unit", "path"}], "liaisons": [{"unit", "head", "path"}],
    "units": [UnitRef of each township and village on the liaisons' paths]}``.

    A target that is unknown or outside the actor's area is refused ``not_found`` naming its id
    (``unit_id``): both look the same, so asking reveals nothing about other areas.
    """
    scope = scope_path(session, actor)
    if scope is None:
        raise Refused("forbidden", "your account has no place in the org tree")
    wanted: list[int] = []
    for unit_id in unit_ids:
        if unit_id not in wanted:
            wanted.append(unit_id)
    if not wanted or len(wanted) > MAX_TARGETS:
        raise Refused("not_found", f"between 1 and {MAX_TARGETS} units are needed")
    found = {
        unit.id: unit
        for unit in session.scalars(select(OrgUnit).where(OrgUnit.id.in_([u for u in wanted if valid_id(u)])))
    }
    targets = []
    for unit_id in wanted:
        unit = found.get(unit_id) if valid_id(unit_id) else None
        if unit is None or not within(scope, unit.path):
            raise UnknownTarget(unit_id)
        targets.append(unit)
    liaisons = list(
        session.scalars(
            select(OrgUnit)
            .where(OrgUnit.kind == "liaison", or_(*(OrgUnit.path.like(f"{t.path}%") for t in targets)))
            .order_by(OrgUnit.path)
        )
    )
    heads = heads_of(session, [unit.id for unit in liaisons])
    above = {i for unit in liaisons for i in path_ids(unit.path)} - {unit.id for unit in liaisons}
    units = (
        session.scalars(select(OrgUnit).where(OrgUnit.id.in_(above), OrgUnit.kind.in_(ROLLUP_KINDS)))
        if above
        else []
    )
    own = session.get(OrgUnit, actor.org_unit_id) if valid_id(actor.org_unit_id) else None
    return {
        "sender_unit": unit_ref(own) if own is not None else None,
        "targets": [{"unit": unit_ref(unit), "path": unit.path} for unit in targets],
        "liaisons": [
            {"unit": unit_ref(unit), "head": heads.get(unit.id), "path": unit.path} for unit in liaisons
        ],
        "units": sorted((unit_ref(unit) for unit in units), key=lambda ref: ref["id"]),
    }
