from pathlib import Path

from lianhu.plugins import ServicePlugin

plugin = ServicePlugin(name="notify", migrations_dir=Path(__file__).parent / "migrations")
