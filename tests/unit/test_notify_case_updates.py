"""notify and case updates: every unit told each thing once, items follow the newest state whatever
order the events come in, a unit the case newly reaches gets its item, the reporter hears back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

import services.notify
from lianhu.db import make_engine, make_session_factory, migrate
from lianhu.events import CaseUpdated, MatchedTerm, Notice, Recipient, Reporter, ReportRouted, UnitRef
from services.notify import inbox
from services.notify.models import InboxItem

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def unit(unit_id: int, kind: str) -> UnitRef:
    return UnitRef(id=unit_id, name=f"{kind}-{unit_id}", kind=kind, level=3)


VILLAGE, TOWNSHIP, CENTRE, REPORTER_UNIT = (
    unit(20, "village"),
    unit(10, "township"),
    unit(2, "governance_centre"),
    unit(30, "liaison"),
)


def recipient(ref: UnitRef, role: str) -> Recipient:
    return Recipient(role=role, position=ref.kind, org_unit=ref, reason="test")


@pytest.fixture
def sessions(database_url):
    migrate(Path(services.notify.__file__).parent / "migrations", database_url)
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def routed() -> ReportRouted:
    return ReportRouted(
        report_id="r-1",
        case_id="c-1",
        category="policy",
        urgency="general",
        matched=[MatchedTerm(category="policy", term="请问", language="zh")],
        rules_version="t",
        deadline_at=T0 + timedelta(days=7),
        handler=recipient(VILLAGE, "handler"),
        recipients=[recipient(VILLAGE, "handler"), recipient(CENTRE, "copy")],
        summary="请问补助",
        reporter=Reporter(username="jq-lw", org_unit_id=30, role="liaison_worker"),
        explanation="",
    )


def update(seq: int, state: str, handler: UnitRef, *notices: Notice, deadline_days: int = 7) -> CaseUpdated:
    return CaseUpdated(
        case_id="c-1",
        report_id="r-1",
        seq=seq,
        change=state,
        actor="routing",
        state=state,
        stage=seq,
        category="policy",
        urgency="general",
        summary="请问补助",
        deadline_at=T0 + timedelta(days=deadline_days),
        handler=recipient(handler, "handler"),
        notices=list(notices),
    )


def notice(key: str, kind: str, role: str, ref: UnitRef, note: str = "") -> Notice:
    return Notice(key=key, kind=kind, role=role, position=ref.kind, org_unit=ref, note=note)


def items(sessions, unit_id: int) -> list[dict]:
    with sessions() as session:
        return inbox.list_inbox(session, unit_id, 50, 0, False)["items"]


def apply(sessions, event) -> int:
    with sessions.begin() as session:
        if isinstance(event, ReportRouted):
            return inbox.deliver(session, event)
        return inbox.apply_update(session, event)


def test_an_escalation_reaches_the_next_level_once_and_moves_the_handler_role(sessions):
    apply(sessions, routed())
    escalated = update(
        1,
        "escalated",
        TOWNSHIP,
        notice("s2:escalated", "escalated", "handler", TOWNSHIP, "逾期"),
        notice("s2:escalated", "escalated", "copy", VILLAGE, "逾期"),
        deadline_days=14,
    )
    assert apply(sessions, escalated) == 2
    assert apply(sessions, escalated) == 0  # redelivered: nobody hears it twice
    [township] = items(sessions, 10)
    assert (township["role"], township["state"], township["attention"]) == (
        "handler",
        "escalated",
        "escalated",
    )
    assert [n["kind"] for n in township["notices"]] == ["escalated"] and township["read"] is False
    [village] = items(sessions, 20)
    assert (village["role"], village["state"], village["deadline_at"]) == (
        "copy",
        "escalated",
        (T0 + timedelta(days=14)).isoformat(),
    )
    [centre] = items(sessions, 2)
    assert (centre["role"], centre["attention"], centre["notices"]) == ("copy", None, [])


def test_an_older_update_arriving_late_does_not_undo_a_newer_one(sessions):
    apply(sessions, routed())
    apply(
        sessions,
        update(
            2, "resolved", VILLAGE, notice("s1:resolved", "resolved", "reporter", REPORTER_UNIT, "已答复")
        ),
    )
    apply(sessions, update(1, "acknowledged", VILLAGE))
    assert items(sessions, 20)[0]["state"] == "resolved"
    # The reporter's own unit got an item for the answer.
    [mine] = items(sessions, 30)
    assert (mine["role"], mine["attention"], mine["notices"][0]["note"]) == ("reporter", "resolved", "已答复")


def test_a_routed_revision_after_an_update_keeps_the_updated_deadline(sessions):
    apply(sessions, routed())
    apply(sessions, update(1, "escalated", TOWNSHIP, deadline_days=14))
    revised = routed().model_copy(update={"revision": 2, "event_id": "rev-2", "urgency": "urgent"})
    apply(sessions, revised)
    [village] = items(sessions, 20)
    assert village["urgency"] == "urgent"
    assert village["deadline_at"] == (T0 + timedelta(days=14)).isoformat()


def test_an_update_before_its_routing_still_leaves_one_item_per_unit(sessions):
    apply(
        sessions, update(1, "escalated", TOWNSHIP, notice("s2:escalated", "escalated", "handler", TOWNSHIP))
    )
    apply(sessions, routed())
    assert len(items(sessions, 10)) == len(items(sessions, 20)) == len(items(sessions, 2)) == 1


def test_each_reminder_is_kept_and_the_item_shows_unread_again(sessions):
    apply(sessions, routed())
    with sessions.begin() as session:
        for item in session.scalars(select(InboxItem)):
            item.read_at = T0
    apply(sessions, update(1, "routed", VILLAGE, notice("s1:remind:48", "reminder", "handler", VILLAGE)))
    apply(sessions, update(2, "routed", VILLAGE, notice("s1:remind:8", "reminder", "handler", VILLAGE)))
    [village] = items(sessions, 20)
    assert [n["kind"] for n in village["notices"]] == ["reminder", "reminder"]
    assert village["read"] is False
    with sessions() as session:
        assert inbox.list_inbox(session, 20, 50, 0, True)["total"] == 1
