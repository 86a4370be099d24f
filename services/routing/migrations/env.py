from lianhu.db import run_migrations_from_env
from services.routing.models import Base

run_migrations_from_env(Base.metadata, "routing")
