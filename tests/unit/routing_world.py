"""A small county and routing's plain modules around a real database, with the clock in the test's
hands: reports are routed, actions taken and the poller run at times the test chooses.

    county 1 ── centre 2, health 5, emergency 6, agriculture 7
             ├─ township 10 ── village 20 ── liaison 30
             │              └─ village 21 ── liaison 31
             └─ township 11 ── village 22
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

import services.routing
from lianhu.db import make_engine, make_session_factory, migrate
from lianhu.events import CaseUpdated, Reporter, ReportSubmitted
from services.routing import actions, case_reads, cases, stats, timers
from services.routing.actions import Actor, Invalid
from services.routing.classify import classify, load_rules
from services.routing.clock import CaseClock
from services.routing.lifecycle import Refused
from services.routing.models import Case, CaseTimer, outbox

RULES = load_rules()
# A Monday morning in the county (08:00 UTC is 16:00 there).
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)

KINDS = {1: "county", 2: "governance_centre", 5: "department", 6: "department", 7: "department"}
KINDS |= {10: "township", 11: "township", 20: "village", 21: "village", 22: "village"}
KINDS |= {30: "liaison", 31: "liaison"}
PARENT = {2: 1, 5: 1, 6: 1, 7: 1, 10: 1, 11: 1, 20: 10, 21: 10, 22: 11, 30: 20, 31: 21}
DEPARTMENT_UNITS = {"health": 5, "emergency": 6, "agriculture": 7}
LEVEL = {"county": 1, "governance_centre": 1, "department": 2, "township": 2, "village": 3, "liaison": 4}


def responsible(unit_id: int) -> dict:
    kind = KINDS[unit_id]
    return {
        "unit": {
            "id": unit_id,
            "name": f"{kind}-{unit_id}",
            "name_bo": None,
            "kind": kind,
            "level": LEVEL[kind],
        },
        "head": {"id": unit_id * 100, "name": f"head-{unit_id}", "name_bo": None, "phone": None},
    }


def chain_above(unit_id: int) -> list[dict]:
    chain = [responsible(unit_id)]
    while unit_id in PARENT:
        unit_id = PARENT[unit_id]
        chain.append(responsible(unit_id))
    return chain


class FakeRegistry:
    """The registry's answers for the tree above (what routing asks over RPC)."""

    def reporter_context(self, unit_id: int, household_id: int | None = None) -> dict:
        known = unit_id in KINDS
        return {
            "unit": responsible(unit_id)["unit"] if known else None,
            "household": None,
            "household_found": False,
            "chain": chain_above(unit_id) if known else [],
            "governance_centre": responsible(2),
        }

    def department(self, code: str) -> dict | None:
        unit = DEPARTMENT_UNITS.get(code)
        return responsible(unit) if unit else None


REGISTRY = FakeRegistry()

REPORTER = Actor("jq-lw", "liaison_worker", 30)
GRID = Actor("grid-20", "village_grid", 20)
OTHER_GRID = Actor("grid-21", "village_grid", 21)
TOWNSHIP = Actor("township-10", "township_command", 10)
OTHER_TOWNSHIP = Actor("township-11", "township_command", 11)
COUNTY = Actor("county", "county_command", 1)
CENTRE = Actor("centre-1", "governance_centre", 2)
HEALTH = Actor("dept-health", "department", 5)
EMERGENCY = Actor("dept-emergency", "department", 6)
STRANGER = Actor("grid-22", "village_grid", 22)

ILLNESS = "家里的老人发烧咳嗽好几天了，想请医生来看看"  # illness, general, health department
URGENT_ILLNESS = "牧民家里的老人突然昏迷不醒，需要马上送医院"
POLICY = "请问今年的草原生态保护补助奖励资金什么时候发放？"  # policy: no department


def routing_sessions(database_url: str):
    migrate(Path(services.routing.__file__).parent / "migrations", database_url)
    engine = make_engine(database_url)
    return engine, make_session_factory(engine)


class World:
    def __init__(self, sessions, scale: float = 1.0):
        self.sessions = sessions
        self.clock = CaseClock(RULES, scale)
        self.now = T0

    def report(self, text: str, reporter: Actor = REPORTER, at: datetime | None = None) -> str:
        at = at or self.now
        report_id = str(uuid.uuid4())
        classification = classify(text, RULES)
        code = RULES.department_for(classification.category)
        context = REGISTRY.reporter_context(reporter.org_unit_id)
        department = REGISTRY.department(code) if code else None
        decision = cases.decide(classification, RULES, context, department, at, self.clock.scale)
        submitted = ReportSubmitted(
            report_id=report_id,
            text=text,
            reporter=Reporter(
                username=reporter.username, org_unit_id=reporter.org_unit_id, role=reporter.role
            ),
            submitted_at=at,
        )
        routed = cases.routed_event(report_id, text, submitted.reporter, decision, RULES, submitted)
        cases.record_once(self.sessions, routed, decision, submitted)
        return report_id

    def act(self, report_id: str, who: Actor, action: str, at: datetime | None = None, **fields) -> dict:
        """What the service's ``act`` RPC answers, without the service."""
        try:
            request = actions.parse_action({"action": action, **fields})
            with self.sessions() as session:
                case = cases.find_case(session, report_id)
                original = cases.find_case(session, request.into) if request.into else None
            if case is None:
                raise Refused("not_found", "no such report")
            sees_area = case_reads.sees_area(case, self.viewer(who))
            around = actions.surroundings(case, original, who, request, REGISTRY, RULES, sees_area)
            outcome = actions.take(self.sessions, report_id, who, request, around, self.clock, at or self.now)
        except Refused as refused:
            return {"refused": refused.code, "detail": refused.detail}
        except Invalid as invalid:
            return {"errors": [invalid.problem]}
        return outcome.answer

    @staticmethod
    def viewer(who: Actor) -> case_reads.Viewer:
        unit = who.org_unit_id
        return case_reads.Viewer.of(who, chain_above(unit) if unit in KINDS else [])

    def read(self, report_id: str, who: Actor) -> dict | None:
        """What the service's ``get_case`` RPC answers, without the service."""
        with self.sessions() as session:
            case = cases.find_case(session, report_id)
            if case is None:
                return None
            timeline = cases.timeline(session, case.id)
        above = actions.above_handler(REGISTRY, case.handler_unit_id)
        return case_reads.case_page(case, timeline, self.viewer(who), above)

    def list(self, who: Actor, unit: int | None = None, **filters) -> list[str]:
        """The report ids ``list_cases`` shows ``who``, newest first (all pages)."""
        scope = stats.scope_for(chain_above(unit)) if unit is not None else None
        wanted = case_reads.parse_filters({**filters, "page_size": case_reads.MAX_PAGE_SIZE})
        with self.sessions() as session:
            page = case_reads.list_cases(session, self.viewer(who), wanted, scope)
        return [item["report_id"] for item in page["items"]]

    def tick(self, at: datetime) -> timers.Pass:
        return timers.fire_due(self.sessions, self.clock, at)

    def run_until(self, until: datetime, step: timedelta = timedelta(minutes=30)) -> None:
        at = self.now
        while at <= until:
            self.tick(at)
            at += step

    def case(self, report_id: str) -> Case:
        with self.sessions() as session:
            return cases.find_case(session, report_id)

    def timeline(self, report_id: str) -> list[dict]:
        with self.sessions() as session:
            return cases.timeline(session, self.case(report_id).id)

    def kinds(self, report_id: str) -> list[str]:
        return [entry["kind"] for entry in self.timeline(report_id)]

    def updates(self, report_id: str) -> list[CaseUpdated]:
        """The case_updated events in the outbox, in order."""
        with self.sessions() as session:
            bodies = session.scalars(select(outbox.c.body).order_by(outbox.c.created_at))
            events = [CaseUpdated.model_validate(json.loads(body)) for body in bodies]
        return sorted((e for e in events if e.report_id == report_id), key=lambda e: e.seq)

    def notices(self, report_id: str) -> list[tuple[str, int, str]]:
        """(kind, unit, role) of every notice sent about the case."""
        return [(n.kind, n.org_unit.id, n.role) for e in self.updates(report_id) for n in e.notices]

    def pending(self, report_id: str) -> list[tuple[int, str]]:
        case_id = self.case(report_id).id
        with self.sessions() as session:
            rows = session.execute(
                select(CaseTimer.stage, CaseTimer.kind)
                .where(CaseTimer.case_id == case_id, CaseTimer.done_at.is_(None))
                .order_by(CaseTimer.due_at)
            )
            return [tuple(row) for row in rows]
