"""What a file really is, from its first bytes: a name or a declared Content-Type is only a claim.

Used wherever the platform keeps a file a phone sent: the gateway refuses a wrong one early with
``415``, and the service that stores it checks again (a service trusts no caller).
"""

from __future__ import annotations

from collections.abc import Iterable

# Scans and photos of certificates, as phones and office scanners make them.
DOCUMENT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic", "image/tiff", "application/pdf")
# Voice messages as phones and browsers record them: WAV, AMR-NB (older phones, WeChat-style
# voice), Ogg/Opus (Android), WebM/Opus (browsers' MediaRecorder), M4A/AAC (iPhones), MP3.
AUDIO_TYPES = ("audio/wav", "audio/amr", "audio/ogg", "audio/webm", "audio/mp4", "audio/mpeg")

_HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1")
_M4A_BRANDS = (b"M4A ", b"M4B ", b"mp42", b"mp41", b"isom", b"iso2", b"3gp4", b"3gp5", b"3gp6", b"dash")


def sniff(data: bytes) -> str | None:
    """The media type the content itself shows, or None when it is none of the known ones."""
    head = data[:16]
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"#!AMR\n"):
        return "audio/amr"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM (and Matroska) from MediaRecorder
        return "audio/webm"
    if head[4:8] == b"ftyp" and head[8:12] in _M4A_BRANDS:
        return "audio/mp4"
    if head.startswith(b"ID3") or (
        len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06
    ):
        return "audio/mpeg"  # an ID3 tag, or an MPEG audio frame sync (layer bits set)
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
