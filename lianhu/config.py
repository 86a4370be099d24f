"""Settings shared by every service, read from ``LIANHU_*`` environment variables.

Service-specific settings subclass :class:`KitSettings` in the service's own ``config.py``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAMES = ("intake", "routing", "registry", "notify")


class KitSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIANHU_", extra="ignore")

    amqp_uri: str = "amqp://guest:guest@127.0.0.1:5672/"
    var_dir: Path = Path("var")
    # Content-addressed files (certificate scans, recordings); one shared volume in compose.
    blob_dir: Path | None = None
    # Signs access tokens. Left empty, a random key is made once and kept in var/secret.key:
    # fine on one machine, but every replica of a real deployment must share one set here.
    secret_key: str = ""
    rpc_timeout_seconds: float = 5.0
    # Quorum queues survive a node loss and carry a delivery count, which bounds redelivery.
    queue_type: Literal["quorum", "classic"] = "quorum"
    delivery_limit: int = 10
    log_level: str = "INFO"
    # Multiplies every deadline, reminder and confirmation window: 0.00001 turns seven days into six
    # seconds for drills and tests. Production leaves it at 1.
    time_scale: float = Field(default=1.0, gt=0)

    def database_url(self, service: str) -> str:
        """``LIANHU_<SERVICE>_DATABASE_URL``, or the service's own SQLite file under ``var/``."""
        url = os.environ.get(f"LIANHU_{service.upper()}_DATABASE_URL")
        if url:
            return url
        return f"sqlite:///{(self.var_dir / f'{service}.db').resolve()}"

    def blob_root(self, owner: str) -> Path:
        """Where ``owner``'s blobs live: ``<blob_dir>/<owner>``, ``var/blobs/<owner>`` by default."""
        return (self.blob_dir or self.var_dir / "blobs") / owner

    def signing_key(self) -> str:
        if self.secret_key:
            return self.secret_key
        return self.local_secret("secret.key", lambda: secrets.token_urlsafe(48))

    def local_secret(self, name: str, make: Callable[[], str]) -> str:
        """A secret made once and kept in ``var/<name>`` (mode 0600), for a single-machine setup."""
        key_file = self.var_dir / name
        if not key_file.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two services starting together must not each write their own key.
            try:
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(make())
        return key_file.read_text().strip()


@lru_cache
def kit_settings() -> KitSettings:
    return KitSettings()
