"""notify: puts every routed case into the inbox of each recipient unit, once."""

from __future__ import annotations

from nameko.rpc import rpc

from lianhu.events import ReportRouted
from lianhu.nameko_ext import Database, subscribe
from services.notify import inbox


class NotifyService:
    name = "notify"

    db = Database("notify")

    @subscribe("notify", ReportRouted)
    def handle_report_routed(self, event: ReportRouted) -> None:
        with self.db.begin() as session:
            inbox.deliver(session, event)

    @rpc
    def list_inbox(self, org_unit_id, limit=50, offset=0, unread_only=False) -> dict:
        if not isinstance(org_unit_id, int) or not isinstance(limit, int) or not isinstance(offset, int):
            return {"items": [], "total": 0}
        with self.db() as session:
            return inbox.list_inbox(session, org_unit_id, limit, offset, bool(unread_only))

    @rpc
    def health(self) -> dict:
        return {"service": self.name, "status": "ok"}
