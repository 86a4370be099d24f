"""How a service plugs into the ``lianhu`` CLI without the kit importing it.

Each service exposes a :class:`ServicePlugin` under the ``lianhu.services`` entry-point group
(see ``pyproject.toml``); ``lianhu migrate`` and ``lianhu seed`` walk them, and a service may add
commands of its own (routing: ``lianhu rules``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from lianhu.config import KitSettings

ENTRY_POINT_GROUP = "lianhu.services"


@dataclass(frozen=True)
class ServicePlugin:
    name: str
    migrations_dir: Path | None = None
    # Seeders run in ascending order: the registry builds the county before intake loads accounts.
    seed_order: int = 100
    seed: Callable[[KitSettings, bool], str] | None = None
    # Adds the service's own subcommands to ``lianhu`` (given argparse's subparsers); each sets
    # ``run(args, settings) -> exit code`` as the built-in ones do.
    commands: Callable[[Any], None] | None = None


def discover() -> list[ServicePlugin]:
    plugins = [ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return sorted(plugins, key=lambda plugin: (plugin.seed_order, plugin.name))
