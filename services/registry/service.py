"""The registry as a nameko service: thin RPC over the plain modules beside it.

Callers may be a gateway relaying phone input, so arguments are checked here: a wrong type answers
None / [] like an unknown id, and bad input to a write answers ``{"errors": [...]}``, instead of a
remote exception the caller would have to special-case.
"""

from __future__ import annotations

import logging
from typing import Any

from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from lianhu.nameko_ext import Database
from services.registry import aggregates, queries, records
from services.registry.config import registry_settings
from services.registry.protection import Protector
from services.registry.schemas import Actor, HouseholdIn

log = logging.getLogger(__name__)

# One RPC message should stay small; whole files go through the importer, not through this call.
MAX_ITEMS_PER_CALL = 5000
MAX_REASON_CHARS = 1000


class Protection(DependencyProvider):
    """The Protector for ID numbers, built once per container from the registry's keys."""

    def setup(self) -> None:
        self.protector = Protector(*registry_settings().protection_keys())

    def get_dependency(self, worker_ctx) -> Protector:
        return self.protector


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


class RegistryService:
    name = "registry"

    db = Database("registry")
    protector = Protection()

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

    @rpc
    def household_detail(self, household_id: int, actor: dict, reason: str | None = None) -> dict | None:
        """The household as ``actor`` may see it; None when unknown, out of their area, or malformed."""
        who = _actor(actor)
        if who is None or not queries.valid_id(household_id):
            return None
        # A transaction: a clear read of ID numbers writes its audit row before the answer leaves.
        with self.db.begin() as session:
            return records.household_detail(session, household_id, who, self.protector, _reason(reason))

    @rpc
    def household_history(self, household_id: int) -> list[dict]:
        if not queries.valid_id(household_id):
            return []
        with self.db() as session:
            return records.household_history(session, household_id, self.protector)

    @rpc
    def apply_households(self, items: list[dict], actor: dict, reason: str | None = None) -> dict:
        """Create or update households: the counts, or ``{"errors": [...]}`` with one entry per problem."""
        who = _actor(actor)
        if who is None:
            return _refused("actor", "缺少有效的操作人", "a valid actor (username, role) is required")
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
        try:
            with self.db.begin() as session:
                return records.apply_households(session, households, who, _reason(reason), self.protector)
        except records.RecordError as error:
            return {"errors": [problem.as_dict() for problem in error.problems]}
        except IntegrityError:
            # Only a constraint the checks above cannot see (a concurrent writer on another engine
            # without the lock) gets here; the message names no value.
            log.warning("apply_households refused by a database constraint")
            return _refused(
                "items", "数据与现有记录冲突，请重试", "the data conflicts with stored records; retry"
            )

    @rpc
    def summary_for_unit(self, unit_id: int) -> dict | None:
        if not queries.valid_id(unit_id):
            return None
        with self.db() as session:
            return aggregates.summary_for_unit(session, unit_id)

    @rpc
    def summary(self) -> dict:
        with self.db() as session:
            return queries.summary(session)

    @rpc
    def health(self) -> dict:
        return {"service": self.name, "status": "ok"}
