"""Content-addressed file storage: scanned certificates now, voice recordings next.

A blob is named by the SHA-256 of its bytes, so storing the same file twice stores it once, a name
can never point at other content, and a reader can check what it got. ``BlobStore`` is the small
interface services depend on; ``FilesystemBlobStore`` is the default (one directory, or one shared
volume in compose). An object store can take its place behind the same three methods.

A ``Sealer`` encrypts blobs at rest (the registry's certificate scans show ID numbers): the name
stays the SHA-256 of the clear bytes, so equal files are still stored once and every read is
checked against it after decryption.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class BlobNotFound(LookupError):
    pass


class CorruptBlob(Exception):
    """Stored bytes no longer hash to their name: the disk or someone altered them."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checked(sha256: str) -> str:
    # The name becomes a path: only 64 lower-case hex digits may reach the file system.
    if not isinstance(sha256, str) or not SHA256_PATTERN.match(sha256):
        raise ValueError("a blob name is 64 lower-case hex digits (SHA-256)")
    return sha256


class Sealer(Protocol):
    def seal(self, data: bytes, name: str) -> bytes: ...

    def unseal(self, sealed: bytes, name: str) -> bytes: ...


class BlobStore(ABC):
    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its SHA-256; storing existing content is a no-op."""

    @abstractmethod
    def get(self, sha256: str) -> bytes:
        """The blob's bytes, checked against the name; BlobNotFound or CorruptBlob otherwise."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...


class FilesystemBlobStore(BlobStore):
    """``<root>/ab/cd/abcd…``: two levels of fan-out keep directories small at millions of files."""

    def __init__(self, root: Path | str, sealer: Sealer | None = None):
        self.root = Path(root)
        self.sealer = sealer

    def path_of(self, sha256: str) -> Path:
        name = _checked(sha256)
        return self.root / name[:2] / name[2:4] / name

    def put(self, data: bytes) -> str:
        name = sha256_of(data)
        target = self.path_of(name)
        if target.exists():
            return name
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, flushed to disk, then renamed into place: a crash leaves either no blob or
        # the whole blob, never a torn one under its final name.
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.sealer.seal(data, name) if self.sealer else data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself must survive a power cut
        finally:
            os.close(directory)
        return name

    def get(self, sha256: str) -> bytes:
        try:
            data = self.path_of(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None
        if self.sealer is not None:
            try:
                data = self.sealer.unseal(data, sha256)
            except ValueError as error:
                raise CorruptBlob(sha256) from error
        if sha256_of(data) != sha256:
            raise CorruptBlob(sha256)
        return data

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()
