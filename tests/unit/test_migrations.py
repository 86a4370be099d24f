"""Every service's migrations build exactly the schema its models describe, on both engines."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from lianhu.db import include_modelled, make_engine, migrate
from lianhu.plugins import discover

PLUGINS = [plugin for plugin in discover() if plugin.migrations_dir is not None]


def test_every_service_has_migrations():
    assert {plugin.name for plugin in PLUGINS} == {"intake", "registry", "routing", "notify"}


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda plugin: plugin.name)
def test_migrations_match_the_models(plugin, database_url):
    migrate(plugin.migrations_dir, database_url)
    migrate(plugin.migrations_dir, database_url)  # a second run changes nothing
    metadata = importlib.import_module(f"services.{plugin.name}.models").Base.metadata
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "version_table": f"alembic_version_{plugin.name}",
                    # Migration-made search structures (search_*) are beyond the models.
                    "include_name": include_modelled,
                },
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
