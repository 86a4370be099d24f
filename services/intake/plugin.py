from pathlib import Path

from lianhu.plugins import ServicePlugin
from services.intake.accounts import seed_accounts

plugin = ServicePlugin(
    name="intake", migrations_dir=Path(__file__).parent / "migrations", seed_order=20, seed=seed_accounts
)
