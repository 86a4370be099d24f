"""The registry's settings: the kit's plus the keys that protect ID numbers (``LIANHU_REGISTRY_*``)."""

from __future__ import annotations

import base64
import secrets
from functools import lru_cache

from lianhu.config import KitSettings


class RegistrySettings(KitSettings):
    # 32 bytes, base64. Left empty, keys are made once in var/registry.keys: fine on one machine;
    # a real deployment sets both from its secret store, and backs them up — lost keys mean the ID
    # numbers are gone for good.
    registry_encryption_key: str = ""
    registry_index_key: str = ""

    def protection_keys(self) -> tuple[bytes, bytes]:
        if self.registry_encryption_key and self.registry_index_key:
            return base64.b64decode(self.registry_encryption_key), base64.b64decode(self.registry_index_key)
        stored = self.local_secret("registry.keys", lambda: f"{new_key()}\n{new_key()}\n")
        encryption, index = stored.split()
        return base64.b64decode(encryption), base64.b64decode(index)


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@lru_cache
def registry_settings() -> RegistrySettings:
    return RegistrySettings()
