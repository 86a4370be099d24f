"""notify: puts every routed case into the inbox of each recipient unit, once, and tells each unit
what every later change of the case means for it (reminders, escalations, resolutions), once. A task
sent down is an inbox item of its own (``kind`` "task") for each liaison unit it reached, marked
answered or cancelled as routing says."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from lianhu import metrics
from lianhu.events import CaseUpdated, ReportRouted, TaskAnswered, TaskAssigned, TaskCancelled
from lianhu.nameko_ext import Database, NotYet, rpc, subscribe
from services.notify import inbox

# The one channel so far: the in-app inbox every unit reads (GET /v1/inbox).
INBOX = "inbox"


class NotifyService:
    name = "notify"

    db = Database("notify")

    def _write(self, apply, event: ReportRouted | CaseUpdated | TaskAssigned) -> None:
        """``apply(session, event)`` in one transaction; it returns how many inbox entries it added."""
        try:
            with self.db.begin() as session:
                delivered = apply(session, event)
        except IntegrityError as error:
            # Another worker wrote the same item or notice first (PostgreSQL, two events of one
            # case at once): the retry finds it and adds only what is still missing.
            raise NotYet(f"{event.event_type} {event.event_id} was being written concurrently") from error
        except Exception:
            # Then retried like any failure, and dead-lettered past the limit.
            metrics.NOTIFICATIONS_FAILED.labels(channel=INBOX).inc()
            raise
        metrics.NOTIFICATIONS_SENT.labels(channel=INBOX).inc(delivered)

    @subscribe("notify", ReportRouted)
    def handle_report_routed(self, event: ReportRouted) -> None:
        self._write(inbox.deliver, event)

    @subscribe("notify", CaseUpdated)
    def handle_case_updated(self, event: CaseUpdated) -> None:
        self._write(inbox.apply_update, event)

    @subscribe("notify", TaskAssigned)
    def handle_task_assigned(self, event: TaskAssigned) -> None:
        self._write(inbox.deliver_task, event)

    @subscribe("notify", TaskAnswered)
    def handle_task_answered(self, event: TaskAnswered) -> None:
        with self.db.begin() as session:
            found = inbox.apply_task_answered(session, event)
        if not found:
            raise NotYet(f"task {event.task_id} has not reached unit {event.org_unit_id} yet")

    @subscribe("notify", TaskCancelled)
    def handle_task_cancelled(self, event: TaskCancelled) -> None:
        with self.db.begin() as session:
            found = inbox.apply_task_cancelled(session, event)
        if not found:
            raise NotYet(f"task {event.task_id} has not reached its units yet")

    @rpc
    def list_inbox(self, org_unit_id, limit=50, offset=0, unread_only=False) -> dict:
        if not isinstance(org_unit_id, int) or not isinstance(limit, int) or not isinstance(offset, int):
            return {"items": [], "total": 0}
        with self.db() as session:
            return inbox.list_inbox(session, org_unit_id, limit, offset, bool(unread_only))

    @rpc
    def health(self) -> dict:
        return {"service": self.name, "status": "ok"}
