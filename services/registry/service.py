"""The registry as a nameko service: thin RPC over the plain modules beside it.

Callers may be a gateway relaying phone input, so arguments are checked here: a wrong type answers
None / [] like an unknown id, bad input to a write answers ``{"errors": [...]}``, and a request the
caller may not make answers ``{"refused": code, "detail": ...}`` (``not_found`` for anything outside
their area, ``forbidden``, ``conflict``, ``reason_required``), instead of a remote exception the
caller would have to special-case. Every method that takes an ``actor`` answers within that actor's
jurisdiction.

Writes, clear reads (which write their audit row) and whole-file work run off the eventlet hub
(``db.off_hub``): a database lock or a minute-long import must not freeze the other workers.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import Any

from nameko.extensions import DependencyProvider
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from lianhu.blobs import FilesystemBlobStore
from lianhu.nameko_ext import Database, rpc
from services.registry import (
    aggregates,
    audit,
    documents,
    editing,
    exporter,
    importer,
    jurisdiction,
    liaisons,
    queries,
    records,
    search,
)
from services.registry.config import registry_settings
from services.registry.jurisdiction import Refused
from services.registry.models import Household, OrgUnit
from services.registry.protection import Protector
from services.registry.schemas import Actor, HouseholdIn

log = logging.getLogger(__name__)

# One RPC message should stay small; whole files go through the importer, not through this call.
MAX_ITEMS_PER_CALL = 5000
MAX_REASON_CHARS = 1000
# Who may read the audit trail itself: it names every clear read of an ID number.
AUDIT_READERS = frozenset({"county_command", "governance_centre"})
# A whole county's household spreadsheet; larger files are split by township.
MAX_IMPORT_BYTES = 50 * 1024 * 1024
EXPORT_MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class Protection(DependencyProvider):
    """The Protector for ID numbers, built once per container from the registry's keys."""

    def setup(self) -> None:
        self.protector = Protector(*registry_settings().protection_keys())

    def get_dependency(self, worker_ctx) -> Protector:
        return self.protector


class DocumentStore(DependencyProvider):
    """Certificate scans, sealed with the registry's key, in the ``registry`` blob area."""

    def setup(self) -> None:
        settings = registry_settings()
        sealer = Protector(*settings.protection_keys())
        self.store = FilesystemBlobStore(settings.blob_root("registry"), sealer=sealer)

    def get_dependency(self, worker_ctx) -> FilesystemBlobStore:
        return self.store


def _id_or_none(value: Any) -> int | None:
    return value if queries.valid_id(value) else None


def _actor(value: Any) -> Actor | None:
    try:
        return Actor.model_validate(value)
    except ValidationError:
        return None


def _reason(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip()[:MAX_REASON_CHARS] or None


def _refused(field: str, message_zh: str, message_en: str) -> dict[str, Any]:
    return {"errors": [records.RecordError(field, message_zh, message_en).as_dict()]}


def _unauthenticated() -> dict[str, Any]:
    return {"refused": "forbidden", "detail": "a valid actor (username, role) is required"}


def _answer(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The outcome of a checked request: its answer, or why it was refused, in the RPC's shapes."""
    try:
        return work()
    except Refused as refusal:
        return {"refused": refusal.code, "detail": refusal.detail}
    except records.RecordError as error:
        return {"errors": [problem.as_dict() for problem in error.problems]}
    except IntegrityError:
        # Only a constraint the checks cannot see (a concurrent writer on another engine without
        # the lock) gets here; the message names no value.
        log.warning("a registry write was refused by a database constraint")
        return _refused(
            "items", "数据与现有记录冲突，请重试", "the data conflicts with stored records; retry"
        )


def _decoded(content_b64: Any, limit: int) -> bytes | None:
    if not isinstance(content_b64, str) or len(content_b64) > (limit + 2) // 3 * 4:
        return None
    try:
        return base64.b64decode(content_b64, validate=True)
    except (binascii.Error, ValueError):
        return None


def _in_transaction(sessions, work: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``work(session)`` in one transaction, committed only when it answered without a refusal."""
    with sessions() as session:
        answer = _answer(lambda: work(session))
        if "errors" in answer or "refused" in answer:
            session.rollback()
        else:
            session.commit()
        return answer


class RegistryService:
    name = "registry"

    db = Database("registry")
    protector = Protection()
    blobs = DocumentStore()

    # ------------------------------------------------------------------- the org tree, for routing

    @rpc
    def chain_above(self, unit_id: int) -> list[dict]:
        if not queries.valid_id(unit_id):
            return []
        with self.db() as session:
            return queries.chain_above(session, unit_id)

    @rpc
    def handler_of(self, unit_id: int) -> dict | None:
        if not queries.valid_id(unit_id):
            return None
        with self.db() as session:
            return queries.handler_of(session, unit_id)

    @rpc
    def governance_centre(self) -> dict | None:
        with self.db() as session:
            return queries.governance_centre(session)

    @rpc
    def department(self, code: str) -> dict | None:
        if not isinstance(code, str):
            return None
        with self.db() as session:
            return queries.department(session, code)

    @rpc
    def position_of(self, person_id: int, org_unit_id: int) -> dict | None:
        """The position an account would be bound to: role, title, person, unit and township."""
        with self.db() as session:
            return queries.position_of(session, person_id, org_unit_id)

    @rpc
    def get_household(self, household_id: int) -> dict | None:
        if not queries.valid_id(household_id):
            return None
        with self.db() as session:
            return queries.get_household(session, household_id)

    @rpc
    def reporter_context(self, org_unit_id: int | None, household_id: int | None = None) -> dict:
        # A malformed id counts as unknown: the report still gets a context (and the centre) back.
        with self.db() as session:
            return queries.reporter_context(session, _id_or_none(org_unit_id), _id_or_none(household_id))

    # --------------------------------------------------------------------- households, by people

    @rpc
    def search_households(
        self,
        actor: dict,
        q: str | None = None,
        unit_id: int | None = None,
        flags: list[str] | None = None,
        page: int = 1,
        page_size: int = search.DEFAULT_PAGE_SIZE,
    ) -> dict:
        """A ranked page of households in the actor's area: ``{"items", "total", "page", ...}``."""
        who = _actor(actor)
        if who is None:
            return _unauthenticated()
        if q is not None and not isinstance(q, str):
            return _refused("q", "查询内容必须是文字", "q must be text")
        if flags is not None and (not isinstance(flags, list) or not all(isinstance(f, str) for f in flags)):
            return _refused("flag", "标记必须是文字列表", "flags must be a list of text")
        with self.db() as session:
            unit = jurisdiction.unit_in_scope(session, who, unit_id)
            if unit is None:
                return {"refused": "not_found", "detail": f"no unit {unit_id} in your area"}
            # The whole county needs no subtree filter, and its plans are the faster ones.
            path = unit.path if jurisdiction.scope_path(session, who) or unit_id is not None else None
            try:
                return search.search_households(
                    session, q, self.protector, path, flags or (), page, page_size
                )
            except ValueError as error:
                return _refused("query", "查询参数无效", str(error))

    @rpc
    def household_detail(self, household_id: int, actor: dict, reason: str | None = None) -> dict | None:
        """The household as ``actor`` may see it; None when unknown, out of their area, or malformed."""
        who = _actor(actor)
        if who is None or not queries.valid_id(household_id):
            return None
        why = _reason(reason)
        if not (why and records.can_see_sensitive(who.role)):
            with self.db() as session:
                return records.household_detail(session, household_id, who, self.protector, why)

        # A clear read writes its audit row before the answer leaves: a write, so off the hub.
        def clear_read(sessions):
            with sessions.begin() as session:
                return records.household_detail(session, household_id, who, self.protector, why)

        return self.db.off_hub(clear_read)

    @rpc
    def household_history(self, household_id: int, actor: dict) -> list[dict] | None:
        """Every recorded change, oldest first; None when unknown or out of the actor's area."""
        who = _actor(actor)
        if who is None or not queries.valid_id(household_id):
            return None
        with self.db() as session:
            path = session.scalar(
                select(OrgUnit.path)
                .join(Household, Household.liaison_unit_id == OrgUnit.id)
                .where(Household.id == household_id)
            )
            if path is None or not jurisdiction.may_see(session, who, path):
                return None
            return records.household_history(session, household_id, self.protector)

    @rpc
    def create_household(self, values: dict, actor: dict, reason: str | None = None) -> dict:
        who = _actor(actor)
        if who is None:
            return _unauthenticated()

        def create(sessions):
            return _in_transaction(
                sessions,
                lambda session: editing.create_household(
                    session, values, who, _reason(reason), self.protector
                ),
            )

        return self.db.off_hub(create)

    @rpc
    def update_household(
        self,
        household_id: int,
        changes: dict,
        actor: dict,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> dict:
        who = _actor(actor)
        if who is None:
            return _unauthenticated()
        if not queries.valid_id(household_id):
            return {"refused": "not_found", "detail": f"no household {household_id}"}
        if expected_version is not None and not queries.valid_id(expected_version):
            return _refused("version", "版本号无效", "expected_version must be a positive integer")

        def update(sessions):
            return _in_transaction(
                sessions,
                lambda session: editing.update_household(
                    session, household_id, changes, expected_version, who, _reason(reason), self.protector
                ),
            )

        return self.db.off_hub(update)

    @rpc
    def add_document(self, household_id: int, fields: dict, content_b64: str, actor: dict) -> dict:
        """Store a scanned certificate: its record (``created`` false when the file was already there)."""
        who = _actor(actor)
        if who is None:
            return _unauthenticated()
        if not queries.valid_id(household_id):
            return {"refused": "not_found", "detail": f"no household {household_id}"}
        try:
            document = documents.DocumentIn.model_validate(fields)
        except ValidationError as error:
            return {"errors": [problem.as_dict() for problem in records.validation_problems(error)]}
        data = _decoded(content_b64, documents.MAX_DOCUMENT_BYTES)
        if data is None:
            return _refused("file", "文件无效或超过10MB", "the file is not base64 or is larger than 10 MB")

        def add(sessions):
            return _in_transaction(
                sessions,
                lambda session: documents.add_document(
                    session, household_id, document, data, who, self.protector, self.blobs
                ),
            )

        return self.db.off_hub(add)

    @rpc
    def open_document(self, document_id: int, actor: dict, reason: str | None = None) -> dict:
        """``{"document", "content_b64"}`` for a role that may see ID numbers and states why."""
        who = _actor(actor)
        if who is None:
            return _unauthenticated()
        if not queries.valid_id(document_id):
            return {"refused": "not_found", "detail": f"no document {document_id}"}

        def open_(session):
            record, data = documents.open_document(session, document_id, who, _reason(reason), self.blobs)
            return {"document": record, "content_b64": base64.b64encode(data).decode()}

        return self.db.off_hub(lambda sessions: _in_transaction(sessions, open_))

    @rpc
    def apply_households(self, items: list[dict], actor: dict, reason: str | None = None) -> dict:
        """Create or update households county-wide: the counts, or ``{"errors": [...]}``."""
        who = _actor(actor)
        if who is None:
            return _refused("actor", "缺少有效的操作人", "a valid actor (username, role) is required")
        if who.role not in jurisdiction.BULK_ROLES or who.role not in records.COUNTY_WIDE_ROLES:
            return {"refused": "forbidden", "detail": "only the county may write households in bulk"}
        if not isinstance(items, list) or not items:
            return _refused("items", "没有要保存的户", "items must be a non-empty list of households")
        if len(items) > MAX_ITEMS_PER_CALL:
            return _refused(
                "items",
                f"一次最多{MAX_ITEMS_PER_CALL}户，请用导入功能",
                f"at most {MAX_ITEMS_PER_CALL} households per call; use the importer for files",
            )
        households: list[HouseholdIn] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                households.append(HouseholdIn.model_validate(item))
            except ValidationError as error:
                errors.extend(problem.as_dict() for problem in records.validation_problems(error, index))
        if errors:
            return {"errors": errors}

        def apply(sessions):
            return _in_transaction(
                sessions,
                lambda session: records.apply_households(
                    session, households, who, _reason(reason), self.protector
                ),
            )

        return self.db.off_hub(apply)

    # ------------------------------------------------------------------------- whole files

    @rpc
    def import_template(self, fmt: str = "xlsx") -> dict:
        if fmt not in EXPORT_MEDIA_TYPES:
            return _refused("format", "格式只能是csv或xlsx", "format must be csv or xlsx")
        data = exporter.template_xlsx() if fmt == "xlsx" else exporter.template_csv()
        return {
            "content_b64": base64.b64encode(data).decode(),
            "media_type": EXPORT_MEDIA_TYPES[fmt],
            "filename": f"household-template.{fmt}",
        }

    @rpc
    def import_file(self, content_b64: str, filename: str, actor: dict, reason: str | None = None) -> dict:
        """All rows or none: ``{"imported": true, "rows", "counts"}`` or ``{"imported": false, "errors"}``."""
        who = _actor(actor)
        if who is None:
            return _unauthenticated()
        if who.role not in jurisdiction.BULK_ROLES:
            return {"refused": "forbidden", "detail": "your role may not import households"}
        if not isinstance(filename, str) or len(filename) > 255:
            return _refused("filename", "文件名无效", "filename must be text of at most 255 characters")
        data = _decoded(content_b64, MAX_IMPORT_BYTES)
        if data is None:
            return _refused("file", "文件无效或超过50MB", "the file is not base64 or is larger than 50 MB")

        def run(sessions):
            with sessions() as session:
                scope = jurisdiction.scope_path(session, who)
                session.rollback()
                if scope is None:
                    return {"refused": "forbidden", "detail": "your account has no place in the org tree"}
                return importer.import_file(
                    session, data, filename, who, _reason(reason), self.protector, scope=scope
                )

        return self.db.off_hub(run)

    @rpc
    def export_households(
        self, actor: dict, unit_id: int | None = None, fmt: str = "xlsx", reason: str | None = None
    ) -> dict:
        """The households of a unit in the actor's area as a file; ID numbers masked unless a role
        that may see them states a reason (audited)."""
        who = _actor(actor)
        if who is None:
            return _unauthenticated()
        if who.role not in jurisdiction.BULK_ROLES:
            return {"refused": "forbidden", "detail": "your role may not export households"}
        if fmt not in EXPORT_MEDIA_TYPES:
            return _refused("format", "格式只能是csv或xlsx", "format must be csv or xlsx")
        why = _reason(reason)

        def run(sessions):
            with sessions.begin() as session:
                unit = jurisdiction.unit_in_scope(session, who, unit_id)
                if unit is None:
                    return {"refused": "not_found", "detail": f"no unit {unit_id} in your area"}
                clear = bool(why) and records.can_see_sensitive(who.role)
                data = exporter.export_households(session, unit.path, fmt, self.protector, clear)
                if clear:
                    audit_fields = {"unit_id": unit.id, "format": fmt}
                    audit.record(session, who, "read_sensitive", "export", None, audit_fields, why)
                return {
                    "content_b64": base64.b64encode(data).decode(),
                    "media_type": EXPORT_MEDIA_TYPES[fmt],
                    "filename": f"households-{unit.id}.{fmt}",
                    "id_numbers": "clear" if clear else "masked",
                }

        return self.db.off_hub(run)

    @rpc
    def audit_entries(
        self, actor: dict, filters: dict | None = None, page: int = 1, page_size: int = 50
    ) -> dict:
        """The registry's audit trail, newest first, for the county staff who answer for it."""
        who = _actor(actor)
        if who is None or who.role not in AUDIT_READERS:
            return {
                "refused": "forbidden",
                "detail": "only the county command and the centre read the audit trail",
            }
        if not queries.valid_id(page) or not queries.valid_id(page_size):
            return _refused("page", "页码无效", "page and page_size must be positive integers")
        try:
            criteria = audit.AuditFilters.model_validate(filters or {})
        except ValidationError as error:
            return {"errors": [problem.as_dict() for problem in records.validation_problems(error)]}
        with self.db() as session:
            return audit.entries(session, criteria, page, page_size)

    # --------------------------------------------------------------------------- the figures

    @rpc
    def summary_for_unit(self, unit_id: int | None, actor: dict) -> dict | None:
        """Households, people, liaison workers, livestock, flags under a unit in the actor's area."""
        who = _actor(actor)
        if who is None:
            return None
        with self.db() as session:
            unit = jurisdiction.unit_in_scope(session, who, unit_id)
            return None if unit is None else aggregates.summary_for_unit(session, unit.id)

    @rpc
    def units_in_area(
        self, actor: dict, kinds: list[str] | None = None, parent_id: int | None = None
    ) -> list | None:
        """The org units of the actor's area, optionally of some kinds or under one parent."""
        who = _actor(actor)
        asked = frozenset(kinds) & jurisdiction.ALL_KINDS if isinstance(kinds, list) else frozenset()
        wanted = asked or jurisdiction.ALL_KINDS
        if who is None or (parent_id is not None and not queries.valid_id(parent_id)):
            return None
        with self.db() as session:
            return jurisdiction.units_in_scope(session, who, wanted, parent_id)

    @rpc
    def summary(self) -> dict:
        with self.db() as session:
            return queries.summary(session)

    @rpc
    def health(self) -> dict:
        return {"service": self.name, "status": "ok"}

    # ----------------------------------------------------------------- tasks down (routing asks)

    @rpc
    def liaison_units_under(self, actor: dict, unit_ids: list) -> dict:
        """Every liaison unit beneath ``unit_ids`` (each in the actor's area), with the paths and the
        townships and villages above them; ``{"refused": "not_found", "unit_id"}`` names the first
        target that is unknown or outside the actor's area."""
        who = _actor(actor)
        if who is None:
            return _unauthenticated()
        if not isinstance(unit_ids, list):
            return {"refused": "not_found", "detail": "unit_ids must be a list of unit ids"}
        with self.db() as session:
            try:
                return liaisons.liaison_units_under(session, who, unit_ids)
            except liaisons.UnknownTarget as unknown:
                return {"refused": unknown.code, "detail": unknown.detail, "unit_id": unknown.unit_id}
            except Refused as refusal:
                return {"refused": refusal.code, "detail": refusal.detail}
