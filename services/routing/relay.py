"""Publishing routing's outbox: ``case_updated`` events are written with the change that causes them
and published after the commit by the worker that made them; rows left unsent (a crash between
commit and publish, a broker hiccup) are published by the clock's next tick.

Publishing twice is harmless (the event id and the notice keys are the same), losing one is not.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session, sessionmaker

from lianhu.events import utcnow
from services.routing.models import outbox

BATCH = 500


def unsent(
    session: Session, event_ids: list[str] | None, created_before: datetime | None = None
) -> list[Row]:
    """The given rows if still unsent, or (``event_ids`` None) the oldest left behind."""
    query = select(outbox.c.id, outbox.c.routing_key, outbox.c.body).where(outbox.c.sent_at.is_(None))
    if event_ids is not None:
        query = query.where(outbox.c.id.in_(event_ids))
    if created_before is not None:
        query = query.where(outbox.c.created_at < created_before)
    return list(session.execute(query.order_by(outbox.c.created_at).limit(BATCH)))


def mark_sent(sessions: sessionmaker, event_ids: list[str]) -> None:
    with sessions.begin() as session:
        session.execute(update(outbox).where(outbox.c.id.in_(event_ids)).values(sent_at=utcnow()))
