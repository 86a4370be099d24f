"""One household created or changed by a person at a screen, within their own area.

Both go through :func:`records.apply_households`, the registry's one write path, after the checks a
single edit needs on top of it: the caller may write where the household is and where it goes, a
new book number is really new, and a change was made to the version the caller last saw (two staff
editing the same household must not silently overwrite each other).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry import jurisdiction, records
from services.registry.jurisdiction import Refused
from services.registry.models import Household, OrgUnit
from services.registry.protection import Protector
from services.registry.schemas import Actor, HouseholdIn


def _validated(values: dict[str, Any]) -> HouseholdIn:
    try:
        return HouseholdIn.model_validate(values)
    except ValidationError as error:
        problems = records.validation_problems(error)
        problems[0].problems = problems
        raise problems[0] from None


def _check_destination(session: Session, actor: Actor, liaison_unit_id: int) -> None:
    path = session.scalar(
        select(OrgUnit.path).where(OrgUnit.id == liaison_unit_id, OrgUnit.kind == "liaison")
    )
    if path is None or not jurisdiction.may_see(session, actor, path):
        # Unknown and out-of-area units read the same: an edit must not reveal the tree elsewhere.
        raise records.RecordError(
            "liaison_unit_id", "联户单元不存在或不在您的管辖范围内", "no such liaison unit in your area"
        )
    if not jurisdiction.may_write(session, actor, path):
        raise Refused("forbidden", "your role may not change households")


def create_household(
    session: Session, values: Any, actor: Actor, reason: str | None, protector: Protector
) -> dict[str, Any]:
    """A new household in the caller's transaction; its detail as the caller may see it."""
    if actor.role not in jurisdiction.WRITER_ROLES:
        raise Refused("forbidden", "your role may not add households")
    if not isinstance(values, dict):
        raise records.RecordError("body", "请求内容必须是一个户", "the body must be one household object")
    item = _validated(values)
    _check_destination(session, actor, item.liaison_unit_id)
    if session.scalar(select(Household.id).where(Household.book_no == item.book_no)) is not None:
        raise Refused("conflict", f"household book {item.book_no} is already registered")
    counts = records.apply_households(session, [item], actor, reason, protector)
    return records.household_detail(session, counts["household_ids"][0], actor, protector)


# What a change may not touch: the book number is the household's key (a new book is a new
# household), and version / id are the registry's own.
FIXED_FIELDS = ("book_no", "id", "version")


def update_household(
    session: Session,
    household_id: int,
    changes: Any,
    expected_version: int | None,
    actor: Actor,
    reason: str | None,
    protector: Protector,
) -> dict[str, Any]:
    """Apply ``changes`` (only the fields sent) to the household; its new detail.

    ``expected_version`` is the version the caller last read (``If-Match``): a household changed
    since then refuses with ``conflict``, so the caller reloads instead of undoing someone's edit.
    """
    current = session.execute(
        select(
            Household.book_no, Household.liaison_unit_id, Household.head_name, Household.version, OrgUnit.path
        )
        .join(OrgUnit, OrgUnit.id == Household.liaison_unit_id)
        .where(Household.id == household_id)
    ).first()
    if current is None or not jurisdiction.may_see(session, actor, current.path):
        raise Refused("not_found", f"no household {household_id}")
    if not jurisdiction.may_write(session, actor, current.path):
        raise Refused("forbidden", "your role may not change households")
    if not isinstance(changes, dict) or not changes:
        raise records.RecordError("body", "没有要修改的内容", "send at least one field to change")
    fixed = [name for name in FIXED_FIELDS if name in changes]
    if fixed:
        raise records.RecordError(fixed[0], "该字段不能修改", f"{fixed[0]} cannot be changed")
    if expected_version is not None and expected_version != current.version:
        raise Refused("conflict", f"the household changed since version {expected_version}; reload it")
    # The write path treats every field sent as stated: the required ones absent from a change are
    # stated as they are, which records no change for them.
    values = {"liaison_unit_id": current.liaison_unit_id, "head_name": current.head_name, **changes}
    item = _validated({**values, "book_no": current.book_no})
    if item.liaison_unit_id != current.liaison_unit_id:
        _check_destination(session, actor, item.liaison_unit_id)
    records.apply_households(session, [item], actor, reason, protector)
    return records.household_detail(session, household_id, actor, protector)
