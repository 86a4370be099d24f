"""The escalation ladder and who stands where around a case, read off the registry's org tree.

The ladder (Gande practice): village grid → township command → county command (with the governance
centre) → the county department for the category. "Above" a handler means its ancestors in the org
tree; the governance centre works beside the county command, so it stands above everything the
county does, and the county command above the centre. Nothing here is keyed on role names: a unit's
place in the tree decides.
"""

from __future__ import annotations

from enum import StrEnum

from lianhu.events import Recipient
from services.routing.recipients import recipient_of

COUNTY_LEVEL = frozenset({"county", "governance_centre"})
# The kinds of unit that answer for cases: a liaison worker's unit reports, it does not handle.
ASSIGNABLE_KINDS = frozenset({"village", "township", "county", "governance_centre", "department"})

ESCALATED_REASON = "逾期或本级无法解决，升级办理 / escalated: not resolved at the level below"
REASSIGNED_REASON = "上级改派 / reassigned by a level above"
REROUTED_REASON = "原承办单位退单，综治中心重新分派 / returned as not theirs: the centre dispatches it again"


class Party(StrEnum):
    """How a user stands to a case; an action is open to some of them."""

    HANDLER = "handler"  # works in the unit that must act now
    ABOVE = "above"  # works in a unit above the handler
    REPORTER = "reporter"  # sent the report
    INVOLVED = "involved"  # works in a unit the case reached (a copy, a former handler)


def _kind(entry: dict) -> str:
    return entry["unit"]["kind"]


def _id(entry: dict) -> int:
    return entry["unit"]["id"]


def ladder_above(handler: Recipient, chain: list[dict], department: dict | None) -> list[Recipient]:
    """The rungs a case climbs from ``handler``, nearest first.

    ``chain`` is a registry chain (nearest first, up to the county) through the handler's unit; a
    handler outside it (the governance centre, for a reporter at county level) climbs only to the
    department. The county command and the centre are one level: either goes next to the department.
    """
    unit = handler.org_unit
    if unit.kind == "department":
        return []  # the top: what a department cannot finish, the county follows up (overseers)
    ids = [_id(entry) for entry in chain]
    above = chain[ids.index(unit.id) + 1 :] if unit.id in ids else []
    rungs = [
        recipient_of(entry, "handler", ESCALATED_REASON)
        for entry in above
        if _kind(entry) == "township" or (_kind(entry) == "county" and unit.kind not in COUNTY_LEVEL)
    ]
    if department is not None and _id(department) != unit.id:
        rungs.append(recipient_of(department, "handler", ESCALATED_REASON))
    return rungs


def overseers(chain: list[dict], centre: dict | None) -> list[Recipient]:
    """The county command and the governance centre, told when a case at the top runs late."""
    county = [entry for entry in chain if _kind(entry) == "county"]
    reason = "县级督办 / the county follows up overdue cases"
    return [recipient_of(entry, "copy", reason) for entry in [*county, *([centre] if centre else [])]]


def units_above(handler_chain: list[dict], centre_id: int | None) -> set[int]:
    """The units that may steer a case away from the handler (the first entry of ``handler_chain``,
    its chain_above): its ancestors, and the governance centre beside the county command. The county
    level dispatches (分流交办), so a case it holds itself it may pass on too."""
    if not handler_chain:
        return set()
    ids = [_id(entry) for entry in handler_chain]
    above = set(ids[1:])
    if centre_id is not None and any(_kind(entry) == "county" for entry in handler_chain):
        above.add(centre_id)
    if _kind(handler_chain[0]) not in COUNTY_LEVEL:
        above.discard(ids[0])
    return above


def parties(
    actor_unit: int | None,
    actor_username: str,
    *,
    handler_id: int,
    reporter_username: str,
    above: set[int],
    involved: set[int],
) -> set[Party]:
    """Every way the actor stands to the case; empty: the case is none of their business."""
    found = set()
    if actor_username == reporter_username:
        found.add(Party.REPORTER)
    if actor_unit is not None:
        if actor_unit == handler_id:
            found.add(Party.HANDLER)
        if actor_unit in above:
            found.add(Party.ABOVE)
        if actor_unit in involved:
            found.add(Party.INVOLVED)
    return found


def path_of(chain: list[dict]) -> str:
    """The registry's materialised path ("/1/5/23/") of the first unit of a chain (nearest first)."""
    return "/" + "".join(f"{entry['unit']['id']}/" for entry in reversed(chain))


def township_of(chain: list[dict]) -> str | None:
    """The name of the township (乡镇) on a registry chain, None above or beside the townships."""
    entry = next((entry for entry in chain if _kind(entry) == "township"), None)
    return entry["unit"]["name"] if entry else None


def path_ids(path: str) -> list[int]:
    return [int(part) for part in path.strip("/").split("/") if part]


def within_reach(actor_unit: int | None, target_chain: list[dict], centre_id: int | None) -> bool:
    """Whether a unit (the first of ``target_chain``) lies in the actor's part of the tree; the
    county command and the governance centre reach the whole county."""
    if actor_unit is None or not target_chain:
        return False
    ids = {_id(entry) for entry in target_chain}
    county_level = {_id(entry) for entry in target_chain if _kind(entry) == "county"}
    if centre_id is not None:
        county_level.add(centre_id)
    return actor_unit in ids or actor_unit in county_level
