"""Rate limits per account and per address: ``429`` with ``Retry-After`` instead of a flood.

Moving windows from the ``limits`` library, kept in this process's memory: each gateway replica
counts for itself, so a deployment's real limit is the configured one times its replicas — set
them for that. A limit given as an empty string is off.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimits:
    def __init__(self, **limits: str):
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._items: dict[str, RateLimitItem | None] = {
            name: parse(value) if value else None for name, value in limits.items()
        }

    def retry_after(self, checks: list[tuple[str, str]]) -> int | None:
        """Count one hit on each ``(limit name, key)``; the seconds to wait when one is exhausted."""
        for name, key in checks:
            item = self._items[name]
            if item is not None and not self._limiter.hit(item, name, key):
                reset_at = self._limiter.get_window_stats(item, name, key).reset_time
                return max(1, math.ceil(reset_at - time.time()))
        return None
