"""Each level sees its own cases, and nothing more: a generated matrix over the demo county.

Reports from liaison workers, village grids and township commands of every township are routed
with the real registry's answers about the demo county (some then escalated up the ladder). Every
demo account, against every case, three ways: read the case's page, find it in the case list, and
take an action on it (``confirm``, which no case here is ready for, so the matrix changes nothing:
the reporter hears "not now", anyone else who can see the case "not yours", everyone else "no such
case"). Who may see a case is derived here from the org tree by walking ``parent_id``, not from the
materialised paths the code uses.
"""

from __future__ import annotations

from sqlalchemy import select

from lianhu.events import Reporter, ReportSubmitted
from services.registry import queries
from services.registry.models import OrgUnit
from services.routing import actions, case_reads, cases
from services.routing.actions import Actor
from services.routing.classify import classify
from services.routing.clock import CaseClock
from services.routing.lifecycle import Refused
from tests.unit.routing_world import RULES, T0, routing_sessions
from tests.unit.test_jurisdiction_matrix import ancestors_by_unit, county  # noqa: F401 - the fixture

TEXTS = (
    "家里的老人发烧咳嗽好几天了，想请医生来看看",
    "两户牧民因为草场边界发生纠纷，快要打起来了",
    "请问今年的草原生态保护补助奖励资金什么时候发放？",
    "昨晚大雪，三户牧民的帐篷被压塌了",
)
REPORTER_ROLES = ("liaison_worker", "liaison_worker", "village_grid", "township_command")


class DemoRegistry:
    """The registry's answers, from its own queries on the demo county (what the RPCs return)."""

    def __init__(self, sessions):
        self.sessions = sessions

    def reporter_context(self, unit_id: int, household_id: int | None = None) -> dict:
        with self.sessions() as session:
            return queries.reporter_context(session, unit_id, household_id)

    def department(self, code: str) -> dict | None:
        with self.sessions() as session:
            return queries.department(session, code)

    def chain_above(self, unit_id: int) -> list[dict]:
        with self.sessions() as session:
            return queries.chain_above(session, unit_id)


def route(sessions, registry: DemoRegistry, reporter: Actor, text: str, number: int) -> str:
    report_id = f"matrix-{number:03d}"
    classification = classify(text, RULES)
    code = RULES.department_for(classification.category)
    context = registry.reporter_context(reporter.org_unit_id)
    department = registry.department(code) if code else None
    decision = cases.decide(classification, RULES, context, department, T0)
    submitted = ReportSubmitted(
        report_id=report_id,
        text=text,
        reporter=Reporter(username=reporter.username, org_unit_id=reporter.org_unit_id, role=reporter.role),
        submitted_at=T0,
    )
    routed = cases.routed_event(report_id, text, submitted.reporter, decision, RULES, submitted)
    cases.record_once(sessions, routed, decision, submitted)
    return report_id


def act(sessions, registry: DemoRegistry, report_id: str, who: Actor, action: str, viewer) -> str:
    """What the service's ``act`` answers, as the outcome's state or the refusal's code."""
    request = actions.parse_action({"action": action, "note": "矩阵"})
    with sessions() as session:
        case = cases.find_case(session, report_id)
    around = actions.surroundings(
        case, None, who, request, registry, RULES, case_reads.sees_area(case, viewer)
    )
    try:
        return actions.take(sessions, report_id, who, request, around, CaseClock(RULES), T0).answer["state"]
    except Refused as refused:
        return refused.code


def test_no_account_reads_finds_or_acts_on_a_case_outside_its_reach(county, tmp_path):  # noqa: F811
    registry_sessions, _, demo_accounts = county
    registry = DemoRegistry(registry_sessions)
    with registry_sessions() as session:
        chains = ancestors_by_unit(session)
        kinds = dict(session.execute(select(OrgUnit.id, OrgUnit.kind)).all())
        townships = [unit for unit, kind in kinds.items() if kind == "township"]
    engine, sessions = routing_sessions(f"sqlite:///{tmp_path / 'routing.db'}")
    accounts = [Actor(a["username"], a["role"], a["org_unit"]) for a in demo_accounts]

    # From every township: reporters of each level, then a third of the cases escalated by the centre.
    centre = next(who for who in accounts if who.role == "governance_centre")
    made: dict[str, Actor] = {}
    for township in townships:
        for number, role in enumerate(REPORTER_ROLES):
            reporter = next(
                who
                for who in accounts
                if who.role == role and township in chains[who.org_unit_id] and who not in made.values()
            )
            made[route(sessions, registry, reporter, TEXTS[number], len(made))] = reporter
    centre_view = case_reads.Viewer.of(centre, registry.chain_above(centre.org_unit_id))
    for report_id in list(made)[::3]:
        assert act(sessions, registry, report_id, centre, "escalate", centre_view) == "escalated"

    with sessions() as session:
        routed = {report_id: cases.find_case(session, report_id) for report_id in made}
    checked, wrong = 0, []
    for who in accounts:
        viewer = case_reads.Viewer.of(who, registry.chain_above(who.org_unit_id))
        with sessions() as session:
            filters = case_reads.parse_filters({"page_size": case_reads.MAX_PAGE_SIZE})
            listed = {
                item["report_id"] for item in case_reads.list_cases(session, viewer, filters, None)["items"]
            }
        for report_id, reporter in made.items():
            case = routed[report_id]
            reached = {recipient.org_unit_id for recipient in case.recipients} | {case.handler_unit_id}
            expected = (
                who.username == reporter.username
                or kinds[who.org_unit_id] in ("county", "governance_centre")
                or who.org_unit_id in chains[reporter.org_unit_id]
                or who.org_unit_id in reached
                or who.org_unit_id in chains[case.handler_unit_id]
            )
            above = actions.above_handler(registry, case.handler_unit_id)
            page = case_reads.case_page(case, [], viewer, above)
            if (page is not None) != expected:
                wrong.append((who.username, report_id, "read", expected))
            if (report_id in listed) != expected:
                wrong.append((who.username, report_id, "list", expected))
            outcome = act(sessions, registry, report_id, who, "confirm", viewer)
            wanted = (
                "conflict"
                if who.username == reporter.username
                else ("forbidden" if expected else "not_found")
            )
            if outcome != wanted:
                wrong.append((who.username, report_id, "confirm", wanted, outcome))
            checked += 3
    engine.dispose()
    assert checked >= 10_000, checked
    assert wrong == [], wrong[:10]
