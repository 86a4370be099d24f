"""The gateway's settings: the kit's plus what only the gateway needs (``LIANHU_*``)."""

from __future__ import annotations

from functools import lru_cache

from lianhu.config import KitSettings


class IntakeSettings(KitSettings):
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    token_ttl_minutes: int = 720
    report_text_max: int = 4000
    max_body_bytes: int = 64 * 1024
    # Reports accepted but not yet written: past this the gateway answers 503 with Retry-After
    # instead of holding an unbounded queue in memory.
    intake_queue_max: int = 1000
    # How stale "this account is still enabled" may be: a disabled account is refused within this.
    account_recheck_seconds: float = 5.0
    outbox_idle_seconds: float = 1.0


@lru_cache
def intake_settings() -> IntakeSettings:
    return IntakeSettings()
