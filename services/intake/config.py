"""The gateway's settings: the kit's plus what only the gateway needs (``LIANHU_*``)."""

from __future__ import annotations

from functools import lru_cache

from lianhu.config import KitSettings


class IntakeSettings(KitSettings):
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Access tokens are short-lived; a phone keeps its refresh token (rotated on every use) instead.
    token_ttl_minutes: int = 15
    refresh_ttl_days: int = 30
    # Lockout: this many wrong passwords in a row lock the account for lockout_minutes.
    login_max_failures: int = 5
    lockout_minutes: int = 15
    # Moving-window rate limits ("N/second|minute|hour"; empty: none), per process. Addresses are
    # shared by many phones behind a carrier's NAT, so their limits are wide.
    login_rate_per_account: str = "10/minute"
    login_rate_per_address: str = "60/minute"
    intake_rate_per_account: str = "120/minute"
    intake_rate_per_address: str = "3000/minute"
    # Browser frontends allowed to call the gateway (comma-separated origins); empty: none.
    cors_origins: str = ""
    report_text_max: int = 4000
    max_body_bytes: int = 64 * 1024
    # A voice report: the recording (10 MB) and its form; at most this many seconds once decoded.
    audio_max_bytes: int = 10 * 1024 * 1024
    audio_max_seconds: float = 120.0
    audio_decode_timeout_seconds: float = 20.0
    # Recordings read and decoded at once, each up to audio_max_bytes in memory: past this, 503.
    audio_checks_max: int = 16
    # Routes that take files: a scanned certificate (10 MB and the form around it), a household file.
    upload_max_bytes: int = 10 * 1024 * 1024 + 64 * 1024
    import_max_bytes: int = 50 * 1024 * 1024 + 64 * 1024
    # Importing or exporting a county's households takes a while (about a minute per 100,000 rows).
    registry_file_timeout_seconds: float = 300.0
    # Reports accepted but not yet written: past this the gateway answers 503 with Retry-After
    # instead of holding an unbounded queue in memory.
    intake_queue_max: int = 1000
    # How stale "this account is still enabled" may be: a disabled account is refused within this.
    account_recheck_seconds: float = 5.0
    outbox_idle_seconds: float = 1.0


@lru_cache
def intake_settings() -> IntakeSettings:
    return IntakeSettings()
