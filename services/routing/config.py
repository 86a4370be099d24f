"""Routing's settings: the kit's plus the rules file (``LIANHU_RULES_PATH``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lianhu.config import KitSettings


class RoutingSettings(KitSettings):
    # Empty: the rules file shipped with the service. Operators point this at their reviewed copy.
    rules_path: Path | None = None


@lru_cache
def routing_settings() -> RoutingSettings:
    return RoutingSettings()
