"""The content-addressed blob store and file-type sniffing, on the real file system."""

from __future__ import annotations

import hashlib
import os

import pytest

from lianhu.blobs import BlobNotFound, CorruptBlob, FilesystemBlobStore
from lianhu.filetypes import sniff
from services.registry.protection import Protector


def test_put_names_by_content_and_stores_once(tmp_path):
    store = FilesystemBlobStore(tmp_path)
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(1000)
    name = store.put(data)
    assert name == hashlib.sha256(data).hexdigest()
    assert store.put(data) == name
    assert store.get(name) == data and store.exists(name)
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert files == [store.path_of(name)]  # one copy, no temporary file left behind


@pytest.mark.parametrize("name", ["../../etc/passwd", "A" * 64, "0" * 63, "", "0" * 64 + "/x", None])
def test_only_sha256_names_reach_the_file_system(tmp_path, name):
    store = FilesystemBlobStore(tmp_path)
    with pytest.raises(ValueError):
        store.get(name)
    with pytest.raises(ValueError):
        store.exists(name)


def test_missing_and_altered_blobs_are_told_apart(tmp_path):
    store = FilesystemBlobStore(tmp_path)
    with pytest.raises(BlobNotFound):
        store.get("0" * 64)
    name = store.put(b"%PDF-1.4 original")
    store.path_of(name).write_bytes(b"%PDF-1.4 altered!")
    with pytest.raises(CorruptBlob):
        store.get(name)


def test_a_sealed_store_keeps_no_clear_bytes_and_opens_only_with_its_key(tmp_path):
    protector = Protector(os.urandom(32), os.urandom(32))
    store = FilesystemBlobStore(tmp_path, sealer=protector)
    data = b"\xff\xd8\xff" + "公民身份号码 632623197503040011".encode() * 10
    name = store.put(data)
    assert name == hashlib.sha256(data).hexdigest()
    assert b"632623197503040011" not in store.path_of(name).read_bytes()
    assert store.get(name) == data
    stranger = FilesystemBlobStore(tmp_path, sealer=Protector(os.urandom(32), os.urandom(32)))
    with pytest.raises(CorruptBlob):
        stranger.get(name)
    # A sealed file moved under another blob's name does not open as that blob.
    other = store.put(b"%PDF-1.4 other")
    store.path_of(other).write_bytes(store.path_of(name).read_bytes())
    with pytest.raises(CorruptBlob):
        store.get(other)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xdb", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00", "image/png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00", "image/heic"),
        (b"II*\x00\x08\x00", "image/tiff"),
        (b"MM\x00*\x00\x00", "image/tiff"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"\n\n%PDF-1.4\n", "application/pdf"),
        (b"PK\x03\x04", None),
        (b"GIF89a", None),
        (b"<svg xmlns=", None),
        (b"", None),
    ],
)
def test_sniff_reads_the_content_not_the_name(head, kind):
    assert sniff(head + b"\x00" * 32) == kind
