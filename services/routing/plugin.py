from pathlib import Path

from lianhu.plugins import ServicePlugin
from services.routing.rules_review import register

plugin = ServicePlugin(name="routing", migrations_dir=Path(__file__).parent / "migrations", commands=register)
