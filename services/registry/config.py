"""The registry's settings: the kit's plus the keys that protect ID numbers (``LIANHU_REGISTRY_*``)."""

from __future__ import annotations

import base64
import os
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
        key_file = self.var_dir / "registry.keys"
        if not key_file.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(f"{base64.b64encode(secrets.token_bytes(32)).decode()}\n")
                    handle.write(f"{base64.b64encode(secrets.token_bytes(32)).decode()}\n")
        encryption, index = key_file.read_text().split()
        return base64.b64decode(encryption), base64.b64decode(index)


@lru_cache
def registry_settings() -> RegistrySettings:
    return RegistrySettings()
