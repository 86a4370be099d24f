"""Database engines and migrations: the same code on the embedded SQLite default and on PostgreSQL."""

from __future__ import annotations

import threading
import weakref
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import sessionmaker
from sqlalchemy.types import TypeDecorator

READ_ONLY_OPTION = "lianhu_read_only"

# Stable constraint names, so migrations can alter constraints on both engines.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator):
    """A timestamp that is always timezone-aware UTC in Python: SQLite keeps no zone, PostgreSQL does."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC time")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


# Search structures the models cannot describe (SQLite FTS5 tables and their shadow tables,
# PostgreSQL trigram indexes, trigger-maintained search tables) are created by migration SQL
# under this prefix, and model comparisons and autogenerate leave them alone.
UNMODELLED_PREFIX = "search_"


def include_modelled(name: str | None, type_: str, parent_names: dict) -> bool:
    """Alembic ``include_name`` hook: False for the unmodelled ``search_*`` tables and indexes."""
    if type_ in ("table", "index") and name is not None:
        return not name.startswith(UNMODELLED_PREFIX)
    return True


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def normalise_url(url: str) -> URL:
    """A bare ``postgresql://`` URL means psycopg2: SQLAlchemy 2.1 would pick psycopg 3, which does
    not cooperate with eventlet in the nameko services."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def make_engine(url: str, **kwargs) -> Engine:
    url = normalise_url(url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    database = url.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        # pysqlite's own implicit BEGIN would fight the explicit one below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer; synchronous=FULL makes a commit survive power
        # loss, which a 201 promises.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        # A writing transaction takes the write lock at BEGIN: a deferred one that reads then writes
        # can fail with "database is locked" instead of waiting for its turn. Readers (WAL) need no
        # lock and must not queue behind writers.
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker:
    """Sessions that only read: on SQLite they never take (or wait for) the write lock."""
    return sessionmaker(engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False)


_write_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_write_locks_guard = threading.Lock()


def write_lock(engine: Engine) -> AbstractContextManager:
    """Serialises one process's writers to a SQLite file on a Python lock.

    SQLite's own busy handler sleeps in growing steps (up to 100 ms) while another writer holds the
    lock; waiting on a Python lock wakes the next writer the moment the last one commits.
    PostgreSQL needs none.
    """
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _write_locks_guard:
        return _write_locks.setdefault(engine, threading.Lock())


def _alembic_config(migrations_dir: Path, url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["database_url"] = url
    return config


def migrate(migrations_dir: Path, url: str, revision: str = "head") -> None:
    """Upgrade one service's database to ``revision`` with its own Alembic scripts."""
    from alembic import command

    command.upgrade(_alembic_config(migrations_dir, url), revision)


def autogenerate_revision(migrations_dir: Path, message: str, scratch_dir: Path) -> None:
    """Write a new revision for model changes, diffed against a scratch SQLite at head."""
    from alembic import command

    url = f"sqlite:///{scratch_dir / 'autogenerate.db'}"
    config = _alembic_config(migrations_dir, url)
    command.upgrade(config, "head")
    command.revision(config, message=message, autogenerate=True)


def run_migrations_from_env(target_metadata: MetaData, service: str) -> None:
    """Body of every service's ``migrations/env.py``: online migrations only, batch mode for SQLite.

    Each service keeps its own version table, so two services pointed at one PostgreSQL database
    (a small deployment) never read each other's migration state.
    """
    from alembic import context

    url = context.config.attributes["database_url"]
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=is_sqlite(url),
            version_table=f"alembic_version_{service}",
            include_name=include_modelled,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
