"""How the ``lianhu`` CLI finds the registry's migrations and seeder (entry point ``lianhu.services``)."""

from __future__ import annotations

from pathlib import Path

from lianhu.plugins import ServicePlugin
from services.registry.seed import seed_if_empty

# seed_order 10: the registry builds the county before other seeders (intake's accounts) read it.
plugin = ServicePlugin(
    name="registry",
    migrations_dir=Path(__file__).parent / "migrations",
    seed_order=10,
    seed=seed_if_empty,
)
