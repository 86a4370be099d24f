"""routing: turns each submitted report into a case with a handler, copies and a deadline, takes the
actions users take on it, and runs its clock (reminders, escalation, closing).

On SQLite, writes (and the county-wide figures) run off the eventlet hub (``db.off_hub``): SQLite
blocks in C while it waits for its write lock, and the clock's passes hold that lock for a moment.
PostgreSQL's driver cooperates with eventlet, so there they stay on the hub, several at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from nameko.events import EventDispatcher
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from nameko.timer import Timer

from lianhu import metrics
from lianhu.bus import outbox_gauges
from lianhu.db import is_sqlite
from lianhu.events import (
    CaseUpdated,
    Reporter,
    ReportRouted,
    ReportSubmitted,
    ReportTranscribed,
    TranscriptionFailed,
    utcnow,
)
from lianhu.nameko_ext import Database, DatabaseGauges, NotYet, Topology, call_rpc, rpc, subscribe
from services.routing import actions, case_reads, cases, escalation, figures, relay, stats, tasks, timers
from services.routing.actions import Actor, Invalid
from services.routing.case_reads import Viewer
from services.routing.cases import Decision
from services.routing.classify import Rules, classify, load_rules
from services.routing.clock import CaseClock
from services.routing.config import routing_settings
from services.routing.lifecycle import Refused
from services.routing.models import outbox

log = logging.getLogger(__name__)
T = TypeVar("T")

# Outbox rows older than this are left behind by a worker that died or could not publish; younger
# ones are still being published by the worker that wrote them.
LEFT_BEHIND = timedelta(seconds=10)


class RoutingRules(DependencyProvider):
    """The versioned rules file, loaded (and validated) once when the service starts."""

    def setup(self) -> None:
        self.rules = load_rules(routing_settings().rules_path)

    def get_dependency(self, worker_ctx) -> Rules:
        return self.rules


class ClockTick(Timer):
    """The clock's heartbeat every ``LIANHU_CLOCK_TICK_SECONDS``, read when the service starts; a
    tick waits for the previous one to finish."""

    def __init__(self, **kwargs):
        super().__init__(interval=0, eager=True, **kwargs)

    def setup(self) -> None:
        self.interval = routing_settings().clock_tick_seconds
        super().setup()


clock_tick = ClockTick.decorator


class RegistryReads:
    """The registry reads routing makes, as RPC calls with the kit's timeout."""

    def __init__(self, proxy):
        self.proxy = proxy

    def reporter_context(self, unit_id: int, household_id: int | None = None) -> dict:
        return call_rpc(self.proxy.reporter_context, unit_id, household_id)

    def department(self, code: str) -> dict | None:
        return call_rpc(self.proxy.department, code)


def _refusal(refused: Refused) -> dict:
    return {"refused": refused.code, "detail": refused.detail}


class RoutingService:
    name = "routing"

    db = Database("routing")
    rules = RoutingRules()
    registry = RpcProxy("registry")
    dispatch = EventDispatcher()
    topology = Topology()
    case_figures = DatabaseGauges("routing", metrics.CASE_GAUGES, figures.case_gauges)
    outbox_figures = DatabaseGauges("routing", metrics.OUTBOX_GAUGES, outbox_gauges(outbox, "routing"))

    def _blocking(self, work: Callable[..., T], *args) -> T:
        """``work(sessions, *args)`` where it cannot freeze the hub: a native thread on SQLite."""
        if is_sqlite(routing_settings().database_url(self.name)):
            return self.db.off_hub(work, *args)
        return work(self.db, *args)

    def _clock(self) -> CaseClock:
        return CaseClock(self.rules, routing_settings().time_scale)

    def _decide(self, text: str, org_unit_id: int | None, household_id: int | None, base_time) -> Decision:
        classification = classify(text, self.rules)
        registry = RegistryReads(self.registry)
        context = registry.reporter_context(org_unit_id, household_id)
        code = self.rules.department_for(classification.category)
        department = registry.department(code) if code else None
        scale = routing_settings().time_scale
        return cases.decide(classification, self.rules, context, department, base_time, scale)

    def _relay(self, event_ids: list[str] | None) -> None:
        """Publish outbox rows: these (just committed), or None: any left behind."""
        if event_ids == []:
            return
        with self.db() as session:
            rows = relay.unsent(session, event_ids, None if event_ids else utcnow() - LEFT_BEHIND)
        sent = []
        try:
            for row in rows:
                body = json.loads(row.body)
                self.dispatch(row.routing_key, body)
                sent.append(row.id)
                if row.routing_key == CaseUpdated.event_type:
                    figures.count_announced(body)
        except Exception:  # the broker may be away: the rows wait for the next tick
            log.warning(
                "published %d of %d case updates; the clock retries", len(sent), len(rows), exc_info=True
            )
        if sent:
            self._blocking(relay.mark_sent, sent)

    # ------------------------------------------------------------------------------- events in

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
            wire = self._blocking(cases.record_once, routed, decision, event)
            figures.count_routed(decision.classification.category, decision.classification.urgency)
        else:
            wire = existing.routed_event
        # Emitted after the commit; a crash before this line redelivers the report, which lands
        # here again and re-emits the same event (same id), so notify dedupes.
        self.dispatch(ReportRouted.event_type, wire)

    @subscribe("routing", ReportTranscribed)
    def handle_report_transcribed(self, event: ReportTranscribed) -> None:
        """Route the case again on what was said; a transcript already applied is announced again."""
        with self.db() as session:
            case = cases.find_case(session, event.report_id)
        if case is None:
            raise NotYet(f"report {event.report_id} is not routed yet")
        published: list[str] = []
        wire = case.routed_event
        if case.transcription != "done":
            reporter = ReportRouted.model_validate(case.routed_event).reporter
            text = " ".join(part for part in (case.text or "", event.text) if part)
            decision = self._decide(text, reporter.org_unit_id, case.household_id, case.submitted_at)
            # A concurrent delivery may have applied it meanwhile: the write checks again.
            wire, published = self._blocking(
                cases.apply_transcript_once, event, decision, self.rules, self._clock(), utcnow()
            )
        # After the commit, as for a new report: a crash before this line redelivers the transcript,
        # which finds it applied and announces the same revision again (same event id).
        self.dispatch(ReportRouted.event_type, wire)
        self._relay(published)

    @subscribe("routing", TranscriptionFailed)
    def handle_transcription_failed(self, event: TranscriptionFailed) -> None:
        if not self._blocking(cases.record_failure_once, event):
            raise NotYet(f"report {event.report_id} is not routed yet")

    # ----------------------------------------------------------------------------------- the clock

    @clock_tick
    def run_clock(self) -> None:
        """Fire every timer that fell due, a batch of cases per transaction, then publish."""
        clock = self._clock()
        while True:
            done = self._blocking(timers.fire_due, clock, utcnow())
            self._relay(done.events)
            if done.cases < timers.BATCH:
                break
        self._relay(None)

    # ------------------------------------------------------------------------------------- actions

    @rpc
    def act(self, report_id, actor, action) -> dict:
        """One user's action on a case: the outcome, ``{"refused": code, "detail"}`` (not_found,
        forbidden, conflict) or ``{"errors": [...]}``. The same ``action_id`` again returns the
        first outcome."""
        who = Actor.parse(actor)
        if who is None:
            return {"refused": "forbidden", "detail": "a valid actor (username, role) is required"}
        try:
            request = actions.parse_action(action)
            with self.db() as session:
                case = cases.find_case(session, report_id) if isinstance(report_id, str) else None
                original = cases.find_case(session, request.into) if request.into else None
            if case is None:
                raise Refused("not_found", "no such report in your area")
            sees_area = case_reads.sees_area(case, self._viewer(who))
            around = actions.surroundings(
                case, original, who, request, RegistryReads(self.registry), self.rules, sees_area
            )
            outcome = self._blocking(actions.take, report_id, who, request, around, self._clock(), utcnow())
        except Refused as refused:
            return _refusal(refused)
        except Invalid as invalid:
            return {"errors": [invalid.problem]}
        self._relay(outcome.events)
        return outcome.answer

    @rpc
    def case_stats(self, actor, unit_id=None, start=None, end=None) -> dict:
        """Exact figures for a unit's subtree (default: the actor's unit) over cases submitted in
        [start, end); units outside the actor's part of the tree are ``not_found``."""
        who = Actor.parse(actor)
        if who is None:
            return {"refused": "forbidden", "detail": "a valid actor (username, role) is required"}
        chain = self._chain_in_reach(who, who.org_unit_id if unit_id is None else unit_id)
        if chain is None:
            return {"refused": "not_found", "detail": "no such unit in your area"}
        try:
            period = [stats.parse_moment(value, self.rules.clock) for value in (start, end)]
        except ValueError as error:
            return {
                "errors": [{"field": "from/to", "message_zh": "日期格式不正确", "message_en": str(error)}]
            }
        # A whole county's figures read many rows: like a write on SQLite.
        figures = self._blocking(stats.read_summary, stats.scope_for(chain), *period)
        for row in figures["by_unit"]:
            found = call_rpc(self.registry.handler_of, row.pop("unit_id"))
            row["unit"] = found["unit"] if found else None
        return {
            "unit": chain[0]["unit"],
            "from": period[0].isoformat() if period[0] else None,
            "to": period[1].isoformat() if period[1] else None,
            **figures,
        }

    # --------------------------------------------------------------------------------------- reads

    def _chain_in_reach(self, who: Actor, unit: object) -> list[dict] | None:
        """The registry's chain above ``unit`` when it lies in the actor's part of the tree."""
        chain = call_rpc(self.registry.chain_above, unit) if isinstance(unit, int) else []
        centre = call_rpc(self.registry.governance_centre) if chain else None
        if not escalation.within_reach(who.org_unit_id, chain, centre["unit"]["id"] if centre else None):
            return None
        return chain

    def _viewer(self, who: Actor) -> Viewer:
        unit = who.org_unit_id
        return Viewer.of(who, call_rpc(self.registry.chain_above, unit) if unit is not None else [])

    @rpc
    def get_case(self, report_id, actor) -> dict | None:
        """The case with its timeline and the actions the actor may take now; None when there is
        no such case or it is none of the actor's business."""
        who = Actor.parse(actor)
        if who is None or not isinstance(report_id, str):
            return None
        with self.db() as session:
            case = cases.find_case(session, report_id)
            if case is None:
                return None
            timeline = cases.timeline(session, case.id)
        above = actions.above_handler(RegistryReads(self.registry), case.handler_unit_id)
        return case_reads.case_page(case, timeline, self._viewer(who), above)

    @rpc
    def list_cases(self, actor, filters=None) -> dict:
        """A page of the cases the actor may see, newest first, narrowed by ``filters`` (see
        :class:`case_reads.CaseFilters`); ``unit`` outside the actor's area is ``not_found``."""
        who = Actor.parse(actor)
        if who is None:
            return {"refused": "forbidden", "detail": "a valid actor (username, role) is required"}
        try:
            wanted = case_reads.parse_filters(filters)
        except Invalid as invalid:
            return {"errors": [invalid.problem]}
        scope = None
        if wanted.unit is not None:
            chain = self._chain_in_reach(who, wanted.unit)
            if chain is None:
                return {"refused": "not_found", "detail": "no such unit in your area"}
            scope = stats.scope_for(chain)
        viewer = self._viewer(who)
        with self.db() as session:
            return case_reads.list_cases(session, viewer, wanted, scope)

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

    # ------------------------------------------------------------------- tasks down (tasks.py)
    # Writes as RPC, like ``act``: the gateway answers 201 with the task's id and its checks. Every
    # write carries a request key, so a resent call returns the first outcome.

    def _task_write(self, actor, work: Callable[[Actor], tasks.Outcome]) -> dict:
        who = Actor.parse(actor)
        if who is None:
            return {"refused": "forbidden", "detail": "a valid actor (username, role) is required"}
        try:
            outcome = work(who)
        except Refused as refused:
            return _refusal(refused)
        except Invalid as invalid:
            return {"errors": [invalid.problem]}
        self._relay(outcome.events)
        return {"result": outcome.answer, "replayed": outcome.replayed}

    @rpc
    def create_task(self, actor, order, request_key) -> dict:
        """Send a task to every liaison unit under ``order["targets"]``: ``{"result", "replayed"}``,
        ``{"refused": ...}`` or ``{"errors": [...]}`` (a target outside the sender's area names it)."""

        def work(who: Actor) -> tasks.Outcome:
            tasks.check_sender(who)
            request, key = tasks.parse_order(order), tasks.parse_key(request_key)
            print_ = tasks.fingerprint(who.username, request)
            with self.db() as session:
                replay = tasks.find_sent(session, who.username, key, print_)
            if replay is not None:
                return replay
            now = utcnow()
            due = tasks.due_time(request.due_at, now, self.rules.clock.zone)
            reach = tasks.reach_of(call_rpc(self.registry.liaison_units_under, actor, request.targets))
            return self._blocking(tasks.create, who, request, reach, key, print_, due, now)

        return self._task_write(actor, work)

    @rpc
    def answer_task(self, task_id, actor, reply, request_key) -> dict:
        """A recipient's answer (``text``, ``number``, ``audio``); it replaces her last one."""

        def work(who: Actor) -> tasks.Outcome:
            request, key = tasks.parse_reply(reply), tasks.parse_key(request_key)
            return self._blocking(tasks.answer, task_id, who, request, key, utcnow())

        return self._task_write(actor, work)

    @rpc
    def cancel_task(self, task_id, actor, note="") -> dict:
        note = note[: tasks.CANCEL_NOTE_MAX] if isinstance(note, str) else ""
        return self._task_write(actor, lambda who: self._blocking(tasks.cancel, task_id, who, note, utcnow()))

    @rpc
    def list_tasks(self, actor, role="received", state=None, page=1, page_size=20) -> dict:
        who = Actor.parse(actor)
        if who is None:
            return {"refused": "forbidden", "detail": "a valid actor (username, role) is required"}
        try:
            with self.db() as session:
                return tasks.list_tasks(session, who, role, state, page, page_size, utcnow())
        except Invalid as invalid:
            return {"errors": [invalid.problem]}

    @rpc
    def get_task(self, task_id, actor) -> dict | None:
        who = Actor.parse(actor)
        if who is None:
            return None
        with self.db() as session:
            return tasks.get_task(session, task_id, who, utcnow())

    @rpc
    def task_answer_audio(self, task_id, answer_id, actor) -> dict | None:
        """The recording (an AudioRef) of an answer the actor may see, else None."""
        who = Actor.parse(actor)
        if who is None:
            return None
        with self.db() as session:
            return tasks.audio_of(session, task_id, answer_id, who, utcnow())
