"""routing: turns each submitted report into a case with a handler, copies and a deadline."""

from __future__ import annotations

from nameko.events import EventDispatcher
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy, rpc
from sqlalchemy.exc import IntegrityError

from lianhu.events import (
    Reporter,
    ReportRouted,
    ReportSubmitted,
    ReportTranscribed,
    TranscriptionFailed,
    utcnow,
)
from lianhu.nameko_ext import Database, NotYet, Topology, call_rpc, subscribe
from services.routing import cases
from services.routing.cases import Decision
from services.routing.classify import Rules, classify, load_rules
from services.routing.config import routing_settings


class RoutingRules(DependencyProvider):
    """The versioned rules file, loaded (and validated) once when the service starts."""

    def setup(self) -> None:
        self.rules = load_rules(routing_settings().rules_path)

    def get_dependency(self, worker_ctx) -> Rules:
        return self.rules


class RoutingService:
    name = "routing"

    db = Database("routing")
    rules = RoutingRules()
    registry = RpcProxy("registry")
    dispatch = EventDispatcher()
    topology = Topology()

    def _decide(self, text: str, org_unit_id: int | None, household_id: int | None, base_time) -> Decision:
        classification = classify(text, self.rules)
        context = call_rpc(self.registry.reporter_context, org_unit_id, household_id)
        code = self.rules.department_for(classification.category)
        department = call_rpc(self.registry.department, code) if code else None
        return cases.decide(classification, self.rules, context, department, base_time)

    @subscribe("routing", ReportSubmitted)
    def handle_report_submitted(self, event: ReportSubmitted) -> None:
        with self.db() as session:
            existing = cases.find_case(session, event.report_id)
        if existing is None:
            decision = self._decide(
                event.text, event.reporter.org_unit_id, event.household_id, event.submitted_at
            )
            routed = cases.routed_event(
                event.report_id, event.text, event.reporter, decision, self.rules, event
            )
            try:
                with self.db.begin() as session:
                    cases.record_case(session, routed, decision, event)
            except IntegrityError:
                # A concurrent delivery of the same report won the race: emit what it recorded.
                with self.db() as session:
                    existing = cases.find_case(session, event.report_id)
        if existing is not None:
            routed = ReportRouted.model_validate(existing.routed_event)
        # Emitted after the commit; a crash before this line redelivers the report, which lands
        # here again and re-emits the same event (same id), so notify dedupes.
        self.dispatch(ReportRouted.event_type, routed.to_wire())

    @subscribe("routing", ReportTranscribed)
    def handle_report_transcribed(self, event: ReportTranscribed) -> None:
        """Route the case again on what was said; a transcript already applied is announced again."""
        with self.db() as session:
            case = cases.find_case(session, event.report_id)
        if case is None:
            raise NotYet(f"report {event.report_id} is not routed yet")
        if case.transcription != "done":
            reporter = ReportRouted.model_validate(case.routed_event).reporter
            text = " ".join(part for part in (case.text or "", event.text) if part)
            decision = self._decide(text, reporter.org_unit_id, case.household_id, case.submitted_at)
            with self.db.begin() as session:
                case = cases.find_case(session, event.report_id)
                if case.transcription != "done":  # a concurrent delivery may have applied it meanwhile
                    rerouted = cases.rerouted_event(case, event, decision, self.rules)
                    cases.record_transcript(session, case, event, rerouted)
        # After the commit, as for a new report: a crash before this line redelivers the transcript,
        # which finds it applied and announces the same revision again (same event id).
        self.dispatch(ReportRouted.event_type, case.routed_event)

    @subscribe("routing", TranscriptionFailed)
    def handle_transcription_failed(self, event: TranscriptionFailed) -> None:
        with self.db.begin() as session:
            case = cases.find_case(session, event.report_id)
            if case is None:
                raise NotYet(f"report {event.report_id} is not routed yet")
            if case.transcription == "pending":
                cases.record_transcription_failure(session, case, event)

    @rpc
    def get_case(self, report_id) -> dict | None:
        if not isinstance(report_id, str):
            return None
        with self.db() as session:
            case = cases.find_case(session, report_id)
            if case is None:
                return None
            return {**cases.case_json(case), "timeline": cases.timeline(session, case.id)}

    @rpc
    def explain(self, text, reporter) -> dict:
        """Dry run: classification, evidence, recipients and deadline, with nothing stored."""
        reporter = Reporter.model_validate(reporter)
        text = text if isinstance(text, str) else ""
        decision = self._decide(text, reporter.org_unit_id, None, utcnow())
        return cases.explanation_json(decision, self.rules)

    @rpc
    def health(self) -> dict:
        return {"service": self.name, "status": "ok", "rules_version": self.rules.version}
