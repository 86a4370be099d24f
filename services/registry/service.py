"""The registry as a nameko service: read-only RPC over :mod:`services.registry.queries`.

Callers may be a gateway relaying phone input, so arguments are checked here: a wrong type answers
None / [] like an unknown id, instead of a remote exception the caller would have to special-case.
"""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from lianhu.nameko_ext import Database
from services.registry import queries


def _id_or_none(value: Any) -> int | None:
    return value if queries.valid_id(value) else None


class RegistryService:
    name = "registry"

    db = Database("registry")

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
    def summary(self) -> dict:
        with self.db() as session:
            return queries.summary(session)

    @rpc
    def health(self) -> dict:
        return {"service": self.name, "status": "ok"}
