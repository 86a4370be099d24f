"""Routing's settings: the kit's plus the rules file (``LIANHU_RULES_PATH``) and the clock's tick."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from lianhu.config import KitSettings


class RoutingSettings(KitSettings):
    # Empty: the rules file shipped with the service. Operators point this at their reviewed copy.
    rules_path: Path | None = None
    # How often the clock looks for due reminders, deadlines and confirmation windows; a timer
    # fires at most this long (plus one pass) after it falls due. Drills shorten it with the scale.
    clock_tick_seconds: float = Field(default=5.0, gt=0, le=50)


@lru_cache
def routing_settings() -> RoutingSettings:
    return RoutingSettings()
