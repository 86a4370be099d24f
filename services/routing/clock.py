"""The case clock: deadlines, reminder points and the reporter's confirmation window.

Everything here is a function of explicit times: callers say what "now" is, so the service passes
the wall clock and tests pass any moment they like. The durations come from the rules file
(``deadline_hours`` per category and urgency, the ``clock`` section for the rest) and are multiplied
by ``LIANHU_TIME_SCALE``, so a drill can run seven days in seconds.

Working days: an urgency listed under ``clock.working_days.urgencies`` counts only the time inside
working days (Monday to Friday at the county's UTC offset, minus holidays, plus weekend days worked
instead). A general matter reported on Friday evening is not overdue on the next Friday.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.routing.classify import Rules

URGENCIES: tuple[str, ...] = ("urgent", "general")
WEEKEND = (5, 6)  # Saturday, Sunday (date.weekday())
# A deadline further away than this many calendar days is a misconfiguration, not a plan.
MAX_CALENDAR_DAYS = 400

# Timer kinds, one row per case, stage and kind (see services.routing.timers).
DUE = "due"
AUTOCLOSE = "autoclose"
REMIND_PREFIX = "remind:"
OVERDUE_PREFIX = "overdue:"


@dataclass(frozen=True)
class ClockRules:
    # 催办 to the handler this many hours before its deadline, per urgency; a point that would fall
    # before the handler got the case is skipped.
    reminder_hours_before: Mapping[str, tuple[int, ...]] = field(
        default_factory=lambda: {"general": (48, 8), "urgent": (4, 1)}
    )
    # At the top of the ladder and still open: remind the handler and the county this often.
    overdue_repeat_hours: int = 24
    # How long the reporter has to confirm or reopen a resolution before the case closes.
    confirm_window_hours: int = 72
    working_day_urgencies: frozenset[str] = frozenset()
    # China keeps one offset all year (no daylight saving), so a fixed offset is exact and needs no
    # time-zone database in the image.
    utc_offset_hours: int = 8
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    @property
    def zone(self) -> timezone:
        return timezone(timedelta(hours=self.utc_offset_hours))

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() not in WEEKEND and day not in self.holidays


_CLOCK_KEYS = {"reminder_hours_before", "overdue_repeat_hours", "confirm_window_hours", "working_days"}
_WORKING_DAY_KEYS = {"urgencies", "utc_offset_hours", "holidays", "workdays"}


def _hours(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: hours must be a positive whole number, got {value!r}")
    return value


def _mapping(value: Any, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return value


def _dates(value: Any, where: str) -> frozenset[date]:
    if not isinstance(value, list) or not all(
        isinstance(d, date) and not isinstance(d, datetime) for d in value
    ):
        raise ValueError(f"{where}: expected a list of dates (YYYY-MM-DD), got {value!r}")
    return frozenset(value)


def parse_clock_rules(raw: Any) -> ClockRules:
    """The ``clock`` section of the rules file; absent keys keep their defaults."""
    if raw is None:
        return ClockRules()
    spec = _mapping(raw, _CLOCK_KEYS, "clock")
    defaults = ClockRules()
    reminders = dict(defaults.reminder_hours_before)
    if "reminder_hours_before" in spec:
        given = _mapping(spec["reminder_hours_before"], set(URGENCIES), "clock.reminder_hours_before")
        for urgency, hours in given.items():
            where = f"clock.reminder_hours_before.{urgency}"
            if not isinstance(hours, list):
                raise ValueError(f"{where}: expected a list of hours, got {hours!r}")
            reminders[urgency] = tuple(sorted({_hours(h, where) for h in hours}, reverse=True))
    working = _mapping(spec.get("working_days") or {}, _WORKING_DAY_KEYS, "clock.working_days")
    urgencies = working.get("urgencies") or []
    if not isinstance(urgencies, list) or any(u not in URGENCIES for u in urgencies):
        raise ValueError(f"clock.working_days.urgencies: expected a list of {', '.join(URGENCIES)}")
    offset = working.get("utc_offset_hours", defaults.utc_offset_hours)
    if isinstance(offset, bool) or not isinstance(offset, int) or not -12 <= offset <= 14:
        raise ValueError(f"clock.working_days.utc_offset_hours: expected a whole offset, got {offset!r}")
    return ClockRules(
        reminder_hours_before=reminders,
        overdue_repeat_hours=_hours(
            spec.get("overdue_repeat_hours", defaults.overdue_repeat_hours), "clock.overdue_repeat_hours"
        ),
        confirm_window_hours=_hours(
            spec.get("confirm_window_hours", defaults.confirm_window_hours), "clock.confirm_window_hours"
        ),
        working_day_urgencies=frozenset(urgencies),
        utc_offset_hours=offset,
        holidays=_dates(working.get("holidays") or [], "clock.working_days.holidays"),
        workdays=_dates(working.get("workdays") or [], "clock.working_days.workdays"),
    )


def add_working_time(start: datetime, span: timedelta, rules: ClockRules) -> datetime:
    """``start`` plus ``span`` of time counted only inside working days (local midnight to midnight)."""
    zone = rules.zone
    cursor = start.astimezone(zone)
    remaining = span
    for _ in range(MAX_CALENDAR_DAYS):
        next_midnight = datetime.combine(cursor.date() + timedelta(days=1), time(), tzinfo=zone)
        if rules.is_working_day(cursor.date()):
            available = next_midnight - cursor
            if remaining <= available:
                return (cursor + remaining).astimezone(UTC)
            remaining -= available
        cursor = next_midnight
    raise ValueError(f"no deadline within {MAX_CALENDAR_DAYS} days: check clock.working_days")


def local_midnight(day: date, rules: ClockRules) -> datetime:
    """The start of ``day`` in the county's time zone, as UTC (stats periods are local days)."""
    return datetime.combine(day, time(), tzinfo=rules.zone).astimezone(UTC)


@dataclass(frozen=True)
class CaseClock:
    """The rules' durations at a time scale, anchored on times the caller gives."""

    rules: Rules
    scale: float = 1.0

    @property
    def clock_rules(self) -> ClockRules:
        return self.rules.clock

    def scaled(self, span: timedelta) -> timedelta:
        return span * self.scale

    def deadline(self, category: str, urgency: str, start: datetime) -> datetime:
        """A fresh deadline for a handler who gets the case at ``start``."""
        span = self.rules.deadline_for(category, urgency)
        if urgency in self.clock_rules.working_day_urgencies:
            span = add_working_time(start, span, self.clock_rules) - start
        return start + self.scaled(span)

    def stage_timers(self, urgency: str, start: datetime, deadline: datetime) -> list[tuple[str, datetime]]:
        """The reminder points and the deadline of one stage, as (kind, due) pairs."""
        timers = []
        for hours in self.clock_rules.reminder_hours_before.get(urgency, ()):
            due = deadline - self.scaled(timedelta(hours=hours))
            if due > start:
                timers.append((f"{REMIND_PREFIX}{hours}", due))
        timers.append((DUE, deadline))
        return timers

    def overdue_reminder(self, deadline: datetime, count: int) -> tuple[str, datetime]:
        """The ``count``-th repeated overdue reminder after a deadline at the top of the ladder."""
        repeat = self.scaled(timedelta(hours=self.clock_rules.overdue_repeat_hours))
        return f"{OVERDUE_PREFIX}{count}", deadline + repeat * count

    def confirm_by(self, resolved_at: datetime) -> datetime:
        return resolved_at + self.scaled(timedelta(hours=self.clock_rules.confirm_window_hours))
