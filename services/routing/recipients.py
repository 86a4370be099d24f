"""Directed routing: exactly who must act on a case and who is kept informed.

Not a broadcast. The handler is the village grid leader of the reporter's (or the household's)
village; the county governance centre always gets a copy at once; an urgent case also reaches the
township command at once; a category may name a county department that gets a copy too.
"""

from __future__ import annotations

from lianhu.events import PersonRef, Recipient, UnitRef

# Which org role answers for a unit of each kind.
POSITION_OF_KIND = {
    "village": "village_grid",
    "township": "township_command",
    "county": "county_command",
    "governance_centre": "governance_centre",
    "department": "department",
}


def recipient_of(responsible: dict, role: str, reason: str) -> Recipient:
    """A registry ``{"unit", "head"}`` answer as a recipient of a case."""
    unit = UnitRef.model_validate(responsible["unit"])
    head = responsible.get("head")
    return Recipient(
        role=role,
        position=POSITION_OF_KIND.get(unit.kind, unit.kind),
        org_unit=unit,
        person=PersonRef.model_validate(head) if head else None,
        reason=reason,
    )


def _first_of_kind(chain: list[dict], kind: str) -> dict | None:
    return next((entry for entry in chain if entry["unit"]["kind"] == kind), None)


def resolve_recipients(
    context: dict, urgency: str, department: dict | None
) -> tuple[Recipient, list[Recipient]]:
    """The handler and every recipient (handler first), from the registry's reporter context.

    ``context`` is the registry's ``reporter_context``: the jurisdiction unit's chain up to the
    county and the governance centre. Nobody appears twice.
    """
    chain = context.get("chain") or []
    centre = context.get("governance_centre")
    village = _first_of_kind(chain, "village")
    township = _first_of_kind(chain, "township")

    if village is not None:
        handler = recipient_of(village, "handler", "网格长负责办理 / the village grid leader handles it")
    elif township is not None:
        handler = recipient_of(township, "handler", "乡镇指挥长负责办理 / no village above the reporter")
    elif centre is not None:
        handler = recipient_of(centre, "handler", "综治中心负责办理 / reporter at county level or unknown")
    else:
        raise LookupError("the registry has no governance centre: nobody could receive this case")

    recipients = [handler]
    seen = {handler.org_unit.id}

    def add(responsible: dict | None, reason: str) -> None:
        if responsible is not None and responsible["unit"]["id"] not in seen:
            seen.add(responsible["unit"]["id"])
            recipients.append(recipient_of(responsible, "copy", reason))

    add(centre, "县综治中心同步抄送 / the county governance centre gets every case at once")
    if urgency == "urgent":
        add(township, "紧急事项同步乡镇指挥长 / urgent: the township command is told at once")
    if department is not None:
        add(department, f"{department['unit']['name']}主管此类事项 / the county department for this category")
    return handler, recipients
