"""The case state machine: which action whose, from which state, to which state.

    routed ─acknowledge→ acknowledged ─start→ in_progress ─resolve→ resolved ─confirm→ closed
                                                                    │  └─(window over)→ closed
                                                                    └─reopen→ reopened (the handler again)
    any open state ─return→ returned (re-routed) or escalated ("cannot solve at this level")
                   ─reassign→ reassigned   ─escalate / deadline→ escalated   ─merge→ merged

``returned``, ``reassigned``, ``escalated`` and ``reopened`` wait, like ``routed``, for the (new)
handler to acknowledge. ``closed`` and ``merged`` are final: only a rating may still come.
"""

from __future__ import annotations

from services.routing.escalation import Party

AWAITING = frozenset({"routed", "returned", "reassigned", "escalated", "reopened"})
WORKING = frozenset({"acknowledged", "in_progress"})
OPEN = AWAITING | WORKING

WHO_MAY: dict[str, frozenset[Party]] = {
    "acknowledge": frozenset({Party.HANDLER}),
    "start": frozenset({Party.HANDLER}),
    "resolve": frozenset({Party.HANDLER}),
    "return": frozenset({Party.HANDLER}),
    "reassign": frozenset({Party.ABOVE}),
    "escalate": frozenset({Party.ABOVE}),
    "merge": frozenset({Party.ABOVE}),
    "confirm": frozenset({Party.REPORTER}),
    "reopen": frozenset({Party.REPORTER}),
    "rate": frozenset({Party.REPORTER}),
    "comment": frozenset(Party),
}

ALLOWED_FROM: dict[str, frozenset[str]] = {
    "acknowledge": AWAITING,
    "start": AWAITING | {"acknowledged"},
    "resolve": OPEN,
    "return": OPEN,
    "reassign": OPEN,
    "escalate": OPEN,
    "merge": OPEN,
    "confirm": frozenset({"resolved"}),
    "reopen": frozenset({"resolved"}),
    # 回访: the reporter's verdict comes after the resolution, also once the case has closed.
    "rate": frozenset({"resolved", "closed"}),
    "comment": OPEN | {"resolved"},
}

# The two actions that only move the state: where they leave it, and the timeline's word for them.
STEPS: dict[str, tuple[str, str]] = {
    "acknowledge": ("acknowledged", "acknowledged"),
    "start": ("in_progress", "started"),
}


class Refused(Exception):
    """The action may not be taken: ``not_found`` (the case is none of the actor's business),
    ``forbidden`` (theirs to see, not to do) or ``conflict`` (not in the case's present state)."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


def check(action: str, parties: set[Party], state: str, sees_area: bool = False) -> None:
    """Refuse an action the actor may not take on a case in ``state``; the order of the checks
    makes a stranger learn nothing (404) before an insider learns the state (409). ``sees_area``:
    the case lies in the actor's part of the tree, so it is theirs to see if not to act on."""
    if not parties and not sees_area:
        raise Refused("not_found", "no such report in your area")
    allowed = WHO_MAY[action]
    if not parties & allowed:
        who = ", ".join(sorted(party.value for party in allowed))
        raise Refused("forbidden", f"{action} is for the case's {who}")
    if state not in ALLOWED_FROM[action]:
        raise Refused("conflict", f"cannot {action} a case that is {state}")
