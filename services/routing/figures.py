"""The governance figures routing exports to Prometheus (names and labels: ``lianhu.metrics``).

Counters move when the change is announced (its event confirmed by the broker), so a transaction
that rolled back never counts; gauges of open and overdue cases are read from the database when
Prometheus scrapes. A case with no township (a matter of the county as a whole) counts as "county".
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from lianhu import metrics
from lianhu.events import utcnow
from services.routing.lifecycle import OPEN
from services.routing.models import Case

COUNTY = "county"


def count_routed(category: str, urgency: str) -> None:
    metrics.REPORTS_ROUTED.labels(category=category, urgency=urgency).inc()


def count_announced(event: dict) -> None:
    """Count a published ``case_updated`` body: escalations by the level reached, resolutions by
    whether the case kept every deadline."""
    change = event.get("change")
    township = event.get("township") or COUNTY
    if change == "escalated":
        level = event["handler"]["org_unit"]["kind"]
        metrics.CASE_ESCALATIONS.labels(township=township, level=level).inc()
    elif change == "resolved":
        on_time = "false" if event.get("overdue") else "true"
        metrics.CASES_RESOLVED.labels(township=township, on_time=on_time).inc()


def case_gauges(session: Session) -> Iterable[metrics.Sample]:
    """``lianhu_cases_open`` and ``lianhu_cases_overdue`` by township and urgency (one grouped
    query over the open cases). Overdue: past the deadline of the stage the case is in now."""
    late = func.sum(case((Case.deadline_at < utcnow(), 1), else_=0))
    rows = session.execute(
        select(Case.township, Case.urgency, func.count(), late)
        .where(Case.state.in_(OPEN))
        .group_by(Case.township, Case.urgency)
    )
    for township, urgency, count, overdue in rows:
        labels = {"township": township or COUNTY, "urgency": urgency}
        yield ("lianhu_cases_open", labels, count)
        yield ("lianhu_cases_overdue", labels, overdue or 0)
