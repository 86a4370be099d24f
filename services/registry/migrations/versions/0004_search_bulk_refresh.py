"""registry search: a large write rebuilds its households' search rows once, set-based, at its end

Revision ID: 0004_search_bulk_refresh
Revises: 0003_search_indexes

The triggers of 0003 index a write as it goes: row by row on SQLite, statement by statement on
PostgreSQL. For a county-sized import that was most of the write. 100,000 members on SQLite: 9 of
13 s for new households (set-based: 5 s), 25 of 32 s when every household changes (set-based: 11 s);
on PostgreSQL, when its bulk updates were one statement per row, 92 of 104 s. So a write may take
households out of the triggers' care and rebuild them itself, once, in its own transaction:

- ``search_households_pending``: the households the current transaction will rebuild. The triggers
  skip them: on SQLite each households/members trigger gets a ``WHEN``; on PostgreSQL
  ``search_households_refresh`` (which every trigger calls) leaves them out, and the unconditional
  rebuild is now ``search_households_rebuild``.
- ``search_households_bulk``, a command table (always empty): inserting ``forget`` drops the pending
  households' FTS rows on SQLite, which a contentless table forgets only when told their tokens, so
  it must run before the write changes the values they came from (PostgreSQL stores no keys: nothing
  to do); inserting ``refresh`` rebuilds their documents and keys and empties the pending list. The
  statements are 0003's own, so the triggers and the bulk path cannot disagree on a key.

While households are pending, a write keeps members in their households and moves no unit (the
registry's bulk write does neither). Everything is transactional: a rollback restores the pending
list and the forgotten keys with the data.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0004_search_bulk_refresh"
down_revision = "0003_search_indexes"
branch_labels = None
depends_on = None


def _search_indexes() -> ModuleType:
    # Alembic's versions directory is not a package: load the sibling revision by its path.
    path = Path(__file__).with_name("0003_search_indexes.py")
    spec = importlib.util.spec_from_file_location("registry_0003_search_indexes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_0003 = _search_indexes()

_TABLES = [
    "CREATE TABLE search_households_pending (household_id integer PRIMARY KEY)",
    "CREATE TABLE search_households_bulk (step text NOT NULL CHECK (step IN ('forget', 'refresh')))",
]
_DROP_TABLES = ["DROP TABLE search_households_bulk", "DROP TABLE search_households_pending"]

# ---------------------------------------------------------------------------------------------
# SQLite

_PENDING = "(SELECT household_id FROM search_households_pending)"
# Each households/members trigger of 0003, and the household ids it would index.
_INDEXED = {
    "household_insert": ("new.id",),
    "household_update": ("old.id", "new.id"),
    "household_delete": ("old.id",),
    "member_insert": ("new.household_id",),
    "member_update": ("old.household_id", "new.household_id"),
    "member_delete": ("old.household_id",),
}


def _row_triggers() -> dict[str, str]:
    """0003's households/members triggers by name (not its unit trigger: a bulk write moves no unit)."""
    triggers = {statement.split()[2]: statement for statement in _0003._sqlite_triggers()}
    return {f"search_households_{name}": triggers[f"search_households_{name}"] for name in _INDEXED}


def _skipping_pending(name: str, statement: str) -> str:
    head, begin, body = statement.partition(" BEGIN ")
    assert begin, f"{name}: not a CREATE TRIGGER ... BEGIN ... END"
    ids = _INDEXED[name.removeprefix("search_households_")]
    return f"{head} WHEN {' AND '.join(f'{i} NOT IN {_PENDING}' for i in ids)} BEGIN {body}"


def _bulk_trigger(step: str, body: str) -> str:
    return (
        f"CREATE TRIGGER search_households_bulk_{step} AFTER INSERT ON search_households_bulk "
        f"WHEN new.step = '{step}' BEGIN {body} DELETE FROM search_households_bulk; END"
    )


_HEADS = f"h.id IN {_PENDING}"
_MEMBERS = f"m.household_id IN {_PENDING}"
SQLITE_BULK_TRIGGERS = [
    _bulk_trigger("forget", _0003._heads(_0003._FORGET, _HEADS) + _0003._members(_0003._FORGET, _MEMBERS)),
    _bulk_trigger(
        "refresh",
        _0003._document(f"household_id IN {_PENDING}")
        + _0003._heads(_0003._ADD, _HEADS)
        + _0003._members(_0003._ADD, _MEMBERS)
        + "DELETE FROM search_households_pending;",
    ),
]


def _sqlite_up() -> list[str]:
    triggers = _row_triggers()
    return [
        *_TABLES,
        *(f"DROP TRIGGER {name}" for name in triggers),
        *(_skipping_pending(name, statement) for name, statement in triggers.items()),
        *SQLITE_BULK_TRIGGERS,
    ]


def _sqlite_down() -> list[str]:
    triggers = _row_triggers()
    return [
        "DROP TRIGGER search_households_bulk_forget",
        "DROP TRIGGER search_households_bulk_refresh",
        *(f"DROP TRIGGER {name}" for name in triggers),
        *triggers.values(),
        *_DROP_TABLES,
    ]


# ---------------------------------------------------------------------------------------------
# PostgreSQL

POSTGRESQL_UP = [
    *_TABLES,
    # Every trigger function calls search_households_refresh: it now leaves the pending out.
    "ALTER FUNCTION search_households_refresh(integer[]) RENAME TO search_households_rebuild",
    """CREATE FUNCTION search_households_refresh(ids integer[]) RETURNS void LANGUAGE sql AS $$
        SELECT search_households_rebuild(ARRAY(
            SELECT t.id FROM unnest(ids) AS t(id)
            WHERE NOT EXISTS (SELECT FROM search_households_pending p WHERE p.household_id = t.id)));
    $$""",
    """CREATE FUNCTION search_households_bulk_step() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- 'forget' has nothing to do: no keys are stored, the GIN index follows each document.
        IF NEW.step = 'refresh' THEN
            PERFORM search_households_rebuild(ARRAY(SELECT household_id FROM search_households_pending));
            DELETE FROM search_households_pending;
        END IF;
        DELETE FROM search_households_bulk;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER search_households_bulk_step AFTER INSERT ON search_households_bulk
    FOR EACH ROW EXECUTE FUNCTION search_households_bulk_step()""",
]

POSTGRESQL_DOWN = [
    "DROP TRIGGER search_households_bulk_step ON search_households_bulk",
    "DROP FUNCTION search_households_bulk_step()",
    "DROP FUNCTION search_households_refresh(integer[])",
    "ALTER FUNCTION search_households_rebuild(integer[]) RENAME TO search_households_refresh",
    *_DROP_TABLES,
]


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_UP if postgresql else _sqlite_up():
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DOWN if postgresql else _sqlite_down():
        op.execute(statement)
