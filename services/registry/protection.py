"""Sensitive values at rest: AES-GCM ciphertext plus a keyed blind index for exact search.

The blind index (HMAC-SHA256 with its own key) lets "find this ID number" run as an indexed equality
without the database ever holding the number; without the key it cannot be reversed by trying all
numbers, which a plain hash of an 18-digit ID would allow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
# Bound into every ciphertext: a value moved to another field or table no longer decrypts.
DEFAULT_CONTEXT = b"lianhu-registry-v1"
BLOB_CONTEXT = b"lianhu-registry-blob-v1:"


class UndecryptableValue(ValueError):
    """The stored value was altered, or the key is not the one it was written with."""


class Protector:
    def __init__(self, encryption_key: bytes, index_key: bytes):
        if len(encryption_key) != 32 or len(index_key) != 32:
            raise ValueError("registry keys must be 32 bytes each")
        if encryption_key == index_key:
            raise ValueError("the encryption and index keys must differ")
        self._aead = AESGCM(encryption_key)
        self._index_key = index_key

    def encrypt(self, plaintext: str, context: bytes = DEFAULT_CONTEXT) -> str:
        nonce = os.urandom(NONCE_BYTES)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, plaintext.encode(), context)).decode()

    def decrypt(self, token: str, context: bytes = DEFAULT_CONTEXT) -> str:
        try:
            raw = base64.b64decode(token)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context).decode()
        except (InvalidTag, ValueError) as error:
            raise UndecryptableValue("stored value cannot be decrypted") from error

    # A lianhu.blobs.Sealer: certificate scans at rest. The blob's name is bound in, so a file
    # swapped for another one on disk fails to open rather than showing the wrong person's papers.
    def seal(self, data: bytes, name: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, BLOB_CONTEXT + name.encode())

    def unseal(self, sealed: bytes, name: str) -> bytes:
        try:
            return self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], BLOB_CONTEXT + name.encode()
            )
        except (InvalidTag, ValueError) as error:
            raise UndecryptableValue("stored file cannot be decrypted") from error

    def blind_index(self, value: str) -> str:
        return hmac.new(self._index_key, value.strip().upper().encode(), hashlib.sha256).hexdigest()
