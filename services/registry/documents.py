"""Scanned certificates: hukou books, ID cards, disability and low-income certificates.

The file is kept in the blob store under the SHA-256 of its bytes, sealed with the registry's key
(a scan shows the ID number in clear), after its first bytes proved it an image or a PDF. Its
number is stored like an ID number: encrypted, shown masked. Adding the same file to the same
household twice (a phone retrying an upload) gives back the first record instead of a second one.
Opening a scan is a sensitive read: the roles that may see ID numbers, with a reason, audited.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from lianhu.blobs import BlobStore, sha256_of
from lianhu.filetypes import DOCUMENT_TYPES, sniff_one_of
from services.registry import audit, jurisdiction
from services.registry.idnumber import mask_id_number
from services.registry.jurisdiction import Refused
from services.registry.models import Document, Household, Member, OrgUnit
from services.registry.protection import Protector
from services.registry.records import RecordError, can_see_sensitive
from services.registry.schemas import Actor, DocumentKind

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: DocumentKind
    member_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    number: str | None = Field(default=None, max_length=64)
    issued_on: date | None = None
    expires_on: date | None = None
    original_name: str | None = Field(default=None, max_length=255)

    @model_validator(mode="after")
    def _dates_in_order(self) -> DocumentIn:
        if self.issued_on and self.expires_on and self.expires_on < self.issued_on:
            raise ValueError("expires_on is before issued_on / 有效期早于签发日期")
        return self


def mask_number(number: str) -> str:
    # Long numbers (most embed the ID number) keep region and last two; short ones only the last two.
    return mask_id_number(number) if len(number) >= 10 else "*" * (len(number) - 2) + number[-2:]


def _household_path(session: Session, household_id: int) -> str | None:
    return session.scalar(
        select(OrgUnit.path)
        .join(Household, Household.liaison_unit_id == OrgUnit.id)
        .where(Household.id == household_id)
    )


def _visible_household(session: Session, household_id: int, actor: Actor) -> str:
    path = _household_path(session, household_id)
    if path is None or not jurisdiction.may_see(session, actor, path):
        raise Refused("not_found", f"no household {household_id}")
    return path


def as_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "household_id": row.household_id,
        "member_id": row.member_id,
        "kind": row.kind,
        "number": row.number_masked,
        "issued_on": row.issued_on.isoformat() if row.issued_on else None,
        "expires_on": row.expires_on.isoformat() if row.expires_on else None,
        "file_sha256": row.file_sha256,
        "file_type": row.file_type,
        "file_size": row.file_size,
        "original_name": row.original_name,
        "uploaded_at": row.uploaded_at.isoformat(),
        "uploaded_by": row.uploaded_by,
    }


def add_document(
    session: Session,
    household_id: int,
    document: DocumentIn,
    data: bytes,
    actor: Actor,
    protector: Protector,
    blobs: BlobStore,
) -> dict[str, Any]:
    """Store the scan and its record in the caller's transaction; ``created`` says whether it is new.

    Raises :class:`Refused` for a household the actor may not see (``not_found``) or change
    (``forbidden``), and :class:`RecordError` for a file or member that does not fit.
    """
    path = _visible_household(session, household_id, actor)
    if not jurisdiction.may_write(session, actor, path):
        raise Refused("forbidden", "your role may not add documents to households")
    if not data:
        raise RecordError("file", "文件为空", "the file is empty")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise RecordError(
            "file", "文件超过10MB", f"the file is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB"
        )
    file_type = sniff_one_of(data, DOCUMENT_TYPES)
    if file_type is None:
        raise RecordError(
            "file",
            "文件不是图片或PDF（支持JPEG、PNG、WebP、HEIC、TIFF、PDF）",
            "the file is not an image or PDF (JPEG, PNG, WebP, HEIC, TIFF or PDF)",
        )
    if document.member_id is not None:
        owner = session.scalar(select(Member.household_id).where(Member.id == document.member_id))
        if owner != household_id:
            raise RecordError("member_id", "该成员不属于此户", "the member is not in this household")

    sha256 = sha256_of(data)
    existing = session.scalars(
        select(Document).where(
            Document.household_id == household_id,
            Document.kind == document.kind,
            Document.file_sha256 == sha256,
            Document.member_id.is_(None)
            if document.member_id is None
            else Document.member_id == document.member_id,
        )
    ).first()
    if existing is not None:
        return {**as_dict(existing), "created": False}

    blobs.put(data)
    row = Document(
        household_id=household_id,
        member_id=document.member_id,
        kind=document.kind,
        number_cipher=protector.encrypt(document.number) if document.number else None,
        number_masked=mask_number(document.number) if document.number else None,
        issued_on=document.issued_on,
        expires_on=document.expires_on,
        file_sha256=sha256,
        file_type=file_type,
        file_size=len(data),
        original_name=document.original_name,
        uploaded_at=datetime.now(UTC),
        uploaded_by=actor.username,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "create", "document", row.id, {"household_id": household_id, "kind": row.kind}, None
    )
    return {**as_dict(row), "created": True}


def open_document(
    session: Session, document_id: int, actor: Actor, reason: str | None, blobs: BlobStore
) -> tuple[dict[str, Any], bytes]:
    """The record and the file, for a role that may see ID numbers and states why; audited."""
    row = session.get(Document, document_id)
    if row is None:
        raise Refused("not_found", f"no document {document_id}")
    _visible_household(session, row.household_id, actor)
    if not can_see_sensitive(actor.role):
        raise Refused("forbidden", "your role may not open scanned certificates")
    if not reason:
        raise Refused("reason_required", "opening a scanned certificate needs a stated reason")
    if row.file_sha256 is None:
        raise Refused("not_found", f"document {document_id} has no file")
    data = blobs.get(row.file_sha256)
    audit.record(
        session, actor, "read_sensitive", "document", row.id, {"household_id": row.household_id}, reason
    )
    return as_dict(row), data
