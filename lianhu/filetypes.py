"""What a file really is, from its first bytes: a name or a declared Content-Type is only a claim.

Used wherever the platform keeps a file a phone sent: the gateway refuses a wrong one early with
``415``, and the service that stores it checks again (a service trusts no caller).
"""

from __future__ import annotations

from collections.abc import Iterable

# Scans and photos of certificates, as phones and office scanners make them.
DOCUMENT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic", "image/tiff", "application/pdf")

_HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1")


def sniff(data: bytes) -> str | None:
    """The media type the content itself shows, or None when it is none of the known ones."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIC_BRANDS:
        return "image/heic"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    # PDF allows a little junk before the header; scanners rarely write any.
    if b"%PDF-" in data[:1024]:
        return "application/pdf"
    return None


def sniff_one_of(data: bytes, allowed: Iterable[str]) -> str | None:
    kind = sniff(data)
    return kind if kind in set(allowed) else None


EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "image/tiff": ".tif",
    "application/pdf": ".pdf",
}
