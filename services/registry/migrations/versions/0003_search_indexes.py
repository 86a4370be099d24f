"""registry search: a search document per household and search keys, kept by triggers

Revision ID: 0003_search_indexes
Revises: 0002_household_registry

Search answers households, ranked (exact name, then name prefix, then later in a name) and then by
book number, filtered by org subtree and flags. Indexes on the member columns cannot do that at 10^6
people: a common name part (扎西) matches half of all households, and deduplicating, filtering and
ordering 10^5 member hits took 0.5-1 s; trigram indexes (pg_trgm, FTS5 ``trigram``) were measured
too, and a Tibetan name is a dozen very common trigrams: 30-400 ms. So each household gets:

- a **search document**, one row in ``search_households``: ``\\x02\\x02<name>\\x03\\x03`` for the
  head's and every member's Chinese and Tibetan name, ``\\x02\\x02<digits>\\x04\\x04`` for each
  phone; beside it the book number, the liaison unit, its ancestors at depths 1-3 (county,
  township, village) and the flags, with a ``(scope, book_no)`` index for each scope. A query that
  matches many households is paged by walking that index in book order and testing documents.
- **search keys**, whole tokens, so a lookup costs what it finds, not what its letters have in
  common with everyone else's: ``=name`` (the whole name); Chinese ``^`` + the name and ``~`` + each
  later suffix, each also cut to its first one and two characters (SQLite finds longer queries by
  token prefix), or ``^`` + every prefix and ``~`` + every later substring up to 16 characters
  (PostgreSQL, whose GIN has no prefix search); Tibetan by whole syllables, ``^`` + the name's first
  syllables and ``~`` + every run of syllables after the first; ``#`` + a phone's last 4 digits.

SQLite: ``search_households_keys``, a contentless FTS5 table (``detail=none``) with one row per
member (rowid: the member's id) and per household head (minus the household's id), holding its keys
and its household's ``scope_keys`` (``@<unit id>`` for each unit on the path, ``!<flag>``). Row
triggers keep it: a member write touches its own row and appends to its household's document; only
a household's head, flags or liaison unit, or a unit's path, re-key the rows under it. A contentless
table forgets a row only when told its tokens word for word, so deletes replay them from the old
values (and from ``scope_keys`` before it is rebuilt).

PostgreSQL: the keys are ``search_household_keys(doc)``, an immutable function behind a GIN
expression index, so they take no room in the table; statement-level triggers with transition
tables refresh each touched household once per statement.

None of this is in the models: every object is named ``search_*``, which the model comparison and
autogenerate skip (``lianhu.db.include_modelled``).
"""

from __future__ import annotations

from alembic import op

revision = "0003_search_indexes"
down_revision = "0002_household_registry"
branch_labels = None
depends_on = None

FLAGS = ("low_income", "disability", "five_guarantee", "left_behind_elderly")
# Longest run of Tibetan syllables (and, on PostgreSQL, of Chinese characters) made into a key.
MAX_UNITS = 8
TSHEG = "\u0f0b"

# Names as the document and the keys hold them: Chinese without spaces, Tibetan without the tsheg or
# spaces it may start or end with, phones as digits only.
_SQLITE_ZH = "replace(replace({}, ' ', ''), '\u3000', '')"
_SQLITE_BO = f"trim({{}}, ' {TSHEG}')"
_SQLITE_TEL = "replace(replace(replace({}, ' ', ''), '-', ''), '\u3000', '')"


def _sqlite_item(value: str, end: str = "3") -> str:
    return f"iif(coalesce({value}, '') = '', '', char(2, 2) || {value} || char({end}, {end}))"


# One member's part of the document (``{m}``: the members alias or new/old).
_MEMBER_ITEMS = (
    f"{_sqlite_item(_SQLITE_ZH.format('{m}.name'))} || {_sqlite_item(_SQLITE_BO.format('{m}.name_bo'))}"
    f" || {_sqlite_item(_SQLITE_TEL.format('{m}.phone'), end='4')}"
)
_SQLITE_DOC = f"""
    {_sqlite_item(_SQLITE_ZH.format("h.head_name"))} || {_sqlite_item(_SQLITE_BO.format("h.head_name_bo"))}
    || coalesce((
        SELECT group_concat({_MEMBER_ITEMS.format(m="m")}, '') FROM members m WHERE m.household_id = h.id
    ), '')
"""

# The household's row in search_households, from the source tables. ``scope_keys`` are the tokens
# every FTS row of the household carries: @<id> for each unit on its liaison unit's path, !<flag>.
SQLITE_SOURCE_VIEW = f"""
CREATE VIEW search_households_source AS
SELECT
    h.id AS household_id,
    h.book_no AS book_no,
    h.liaison_unit_id AS liaison_unit_id,
    coalesce(u.path, '') AS unit_path,
    json_extract('[' || trim(replace(u.path, '/', ','), ',') || ']', '$[0]') AS ancestor_1,
    json_extract('[' || trim(replace(u.path, '/', ','), ',') || ']', '$[1]') AS ancestor_2,
    json_extract('[' || trim(replace(u.path, '/', ','), ',') || ']', '$[2]') AS ancestor_3,
    {" || ".join(f"iif(h.flag_{flag}, ' {flag}', '')" for flag in FLAGS)} AS flags,
    coalesce('@' || replace(trim(u.path, '/'), '/', char(31) || '@'), '')
        {"".join(f" || iif(h.flag_{flag}, char(31) || '!{flag}', '')" for flag in FLAGS)} AS scope_keys,
    {_SQLITE_DOC} AS doc
FROM households h LEFT JOIN org_units u ON u.id = h.liaison_unit_id
"""

_SQLITE_COLUMNS = (
    "household_id, book_no, liaison_unit_id, unit_path, ancestor_1, ancestor_2, ancestor_3, flags, "
    "scope_keys, doc"
)
_FLAG_COLUMNS = tuple(f"flag_{flag}" for flag in FLAGS)


def _sqlite_keys(zh: str, bo: str, tel: str) -> str:
    """The keys (tokens joined by \\x1f) of one member or household head, from its Chinese name
    ``zh``, Tibetan name ``bo`` and phone ``tel`` (SQL expressions: the values before or after a
    change, as the trigger needs), followed by its household's ``sh.scope_keys``."""
    # Each arm normalises the values once (v), not once per position it tries.
    v = (
        f"(SELECT {_SQLITE_ZH.format(zh)} AS z, {_SQLITE_BO.format(bo)} AS b, "
        f"{_SQLITE_TEL.format(tel)} AS t) v"
    )
    end = f"(e.n = length(v.b) + 1 OR substr(v.b, e.n, 1) = '{TSHEG}')"
    arms = [
        f"SELECT '=' || v.z AS t FROM {v} WHERE v.z <> ''",
        f"SELECT '^' || v.z FROM {v} WHERE v.z <> ''",
        f"SELECT '~' || substr(v.z, e.n) FROM {v} JOIN search_numbers e ON e.n BETWEEN 2 AND length(v.z)",
        # The first one and two characters of the name and of each suffix, as their own keys: a
        # one- or two-character query (王, 扎西) then reads one posting list instead of merging many.
        f"SELECT '^' || substr(v.z, 1, e.n) FROM {v} JOIN search_numbers e ON e.n <= min(2, length(v.z) - 1)",
        f"SELECT '~' || substr(v.z, s.n, e.n) FROM {v} JOIN search_numbers e ON e.n <= 2 "
        f"JOIN search_numbers s ON s.n BETWEEN 2 AND length(v.z) - e.n",
        f"SELECT '=' || v.b FROM {v} WHERE v.b <> ''",
        # Tibetan: the name's first 1..n syllables, and every run of syllables after the first.
        f"SELECT '^' || substr(v.b, 1, e.n - 1) FROM {v} "
        f"JOIN search_numbers e ON e.n BETWEEN 2 AND length(v.b) + 1 WHERE {end}",
        f"SELECT '~' || substr(v.b, s.n, e.n - s.n) FROM {v} "
        f"JOIN search_numbers s ON s.n BETWEEN 2 AND length(v.b) "
        f"JOIN search_numbers e ON e.n > s.n AND e.n <= length(v.b) + 1 "
        f"WHERE substr(v.b, s.n - 1, 1) = '{TSHEG}' AND {end}",
        f"SELECT '#' || substr(v.t, -4) FROM {v} WHERE length(v.t) >= 4",
        "SELECT sh.scope_keys",
    ]
    return "(SELECT group_concat(t, char(31)) FROM (" + " UNION ALL ".join(arms) + "))"


_ADD = "INSERT INTO search_households_keys(rowid, tokens)"
_FORGET = "INSERT INTO search_households_keys(search_households_keys, rowid, tokens) SELECT 'delete',"


def _members(verb: str, where: str) -> str:
    """Add (``_ADD``) or forget (``_FORGET``) the FTS rows of the members ``m`` joined to their
    household's row ``sh`` ``where``. A contentless FTS5 table forgets a row only when told its
    tokens word for word, so forgetting runs while ``sh`` still holds the scope keys they got."""
    select = "" if verb == _FORGET else "SELECT"
    return (
        f"{verb} {select} m.id, {_sqlite_keys('m.name', 'm.name_bo', 'm.phone')} "
        f"FROM members m JOIN search_households sh ON sh.household_id = m.household_id WHERE {where};"
    )


def _heads(verb: str, where: str) -> str:
    """The same for household heads (rowid: minus the household's id), households ``h``."""
    select = "" if verb == _FORGET else "SELECT"
    return (
        f"{verb} {select} -h.id, {_sqlite_keys('h.head_name', 'h.head_name_bo', 'NULL')} "
        f"FROM households h JOIN search_households sh ON sh.household_id = h.id WHERE {where};"
    )


def _member(verb: str, row: str) -> str:
    """Add or forget the FTS row of ``row`` (``new`` or ``old`` in a members trigger)."""
    select = "" if verb == _FORGET else "SELECT"
    keys = _sqlite_keys(f"{row}.name", f"{row}.name_bo", f"{row}.phone")
    return (
        f"{verb} {select} {row}.id, {keys} "
        f"FROM search_households sh WHERE sh.household_id = {row}.household_id;"
    )


def _head(verb: str, row: str) -> str:
    select = "" if verb == _FORGET else "SELECT"
    keys = _sqlite_keys(f"{row}.head_name", f"{row}.head_name_bo", "NULL")
    return f"{verb} {select} -{row}.id, {keys} FROM search_households sh WHERE sh.household_id = {row}.id"


def _document(where: str) -> str:
    """The households' rows in search_households (``where`` over ``household_id``), rebuilt."""
    return f"""
        DELETE FROM search_households WHERE {where};
        INSERT INTO search_households ({_SQLITE_COLUMNS})
            SELECT {_SQLITE_COLUMNS} FROM search_households_source WHERE {where};"""


_HOUSEHOLD_FIELDS = ("id", "liaison_unit_id", "book_no", "head_name", "head_name_bo") + _FLAG_COLUMNS
_MEMBER_FIELDS = ("household_id", "name", "name_bo", "phone")


def _sqlite_triggers() -> list[str]:
    # A member's keys are its own names and phone plus its household's scope keys, so a member write
    # touches one FTS row (and its household's document); only a household's new head, flags or
    # liaison unit, or a unit's new path, re-key the rows under it. Members written before their
    # household (deferred foreign keys) are indexed when it arrives.
    head_changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in ("id", "head_name", "head_name_bo"))
    scope_changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in ("id", "liaison_unit_id", *_FLAG_COLUMNS))
    held = "IN (SELECT id FROM households WHERE liaison_unit_id = new.id)"
    triggers = {
        "household_insert": (
            "AFTER INSERT ON households",
            _document("household_id = new.id")
            + f"{_head(_ADD, 'new')};"
            + _members(_ADD, "m.household_id = new.id"),
        ),
        "household_update": (
            f"AFTER UPDATE OF {', '.join(_HOUSEHOLD_FIELDS)} ON households",
            f"{_head(_FORGET, 'old')} AND ({head_changed} OR {scope_changed});"
            + _members(_FORGET, f"m.household_id = old.id AND ({scope_changed})")
            + _document("household_id IN (old.id, new.id)")
            + f"{_head(_ADD, 'new')} AND ({head_changed} OR {scope_changed});"
            + _members(_ADD, f"m.household_id = new.id AND ({scope_changed})"),
        ),
        "household_delete": (
            "AFTER DELETE ON households",
            f"{_head(_FORGET, 'old')};"
            + _members(_FORGET, "m.household_id = old.id")
            + "DELETE FROM search_households WHERE household_id = old.id;",
        ),
        "member_insert": (
            "AFTER INSERT ON members",
            # A new member only adds to the document (an import adds households member by member).
            _member(_ADD, "new")
            + f"""UPDATE search_households SET doc = doc || {_MEMBER_ITEMS.format(m="new")}
                WHERE household_id = new.household_id;""",
        ),
        "member_update": (
            f"AFTER UPDATE OF {', '.join(_MEMBER_FIELDS)} ON members",
            _member(_FORGET, "old")
            + _member(_ADD, "new")
            + _document("household_id IN (old.household_id, new.household_id)"),
        ),
        "member_delete": (
            "AFTER DELETE ON members",
            _member(_FORGET, "old") + _document("household_id = old.household_id"),
        ),
        # A unit moved in the tree: the households it holds get new ancestors and scope keys.
        "unit_move": (
            "AFTER UPDATE OF path ON org_units",
            _heads(_FORGET, f"h.id {held}")
            + _members(_FORGET, f"m.household_id {held}")
            + _document(f"household_id {held}")
            + _heads(_ADD, f"h.id {held}")
            + _members(_ADD, f"m.household_id {held}"),
        ),
    }
    return [
        f"CREATE TRIGGER search_households_{name} {event} BEGIN {body} END"
        for name, (event, body) in triggers.items()
    ]


SQLITE_UP = [
    "CREATE TABLE search_numbers (n INTEGER PRIMARY KEY)",
    # Positions in a name, for cutting keys out of it in plain SQL (no loops in a trigger).
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1024) "
    "INSERT INTO search_numbers (n) SELECT n FROM r",
    """CREATE TABLE search_households (
        household_id INTEGER PRIMARY KEY,
        book_no TEXT NOT NULL,
        liaison_unit_id INTEGER NOT NULL,
        unit_path TEXT NOT NULL,
        ancestor_1 INTEGER,
        ancestor_2 INTEGER,
        ancestor_3 INTEGER,
        flags TEXT NOT NULL,
        scope_keys TEXT NOT NULL,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX search_households_book_no ON search_households (book_no)",
    "CREATE INDEX search_households_ancestor_1 ON search_households (ancestor_1, book_no)",
    "CREATE INDEX search_households_ancestor_2 ON search_households (ancestor_2, book_no)",
    "CREATE INDEX search_households_ancestor_3 ON search_households (ancestor_3, book_no)",
    "CREATE INDEX search_households_liaison ON search_households (liaison_unit_id, book_no)",
    # One row per member (rowid: the member's id) and per household head (minus the household's
    # id). One token per key: only control characters separate tokens (a space or a tsheg is part of
    # a key) and nothing is folded but letter case. detail=none keeps rowids only, so a delete need
    # not list the keys in the order they were added.
    "CREATE VIRTUAL TABLE search_households_keys USING fts5(tokens, content='', detail=none, "
    "tokenize=\"unicode61 remove_diacritics 0 categories 'L* M* N* P* S* Z* Co Cf'\")",
    SQLITE_SOURCE_VIEW,
    *_sqlite_triggers(),
    f"INSERT INTO search_households ({_SQLITE_COLUMNS}) "
    f"SELECT {_SQLITE_COLUMNS} FROM search_households_source",
    _heads(_ADD, "1 = 1").rstrip(";"),
    _members(_ADD, "1 = 1").rstrip(";"),
]


def _sqlite_down() -> list[str]:
    names = [statement.split()[2] for statement in _sqlite_triggers()]
    return [
        *(f"DROP TRIGGER {name}" for name in names),
        "DROP VIEW search_households_source",
        "DROP TABLE search_households_keys",
        "DROP TABLE search_households",
        "DROP TABLE search_numbers",
    ]


# ---------------------------------------------------------------------------------------------
# PostgreSQL

_PG_ZH = "replace(replace({}, ' ', ''), U&'\\3000', '')"
_PG_BO = "btrim({}, U&' \\0F0B')"
_PG_TEL = "replace(replace(replace({}, ' ', ''), '-', ''), U&'\\3000', '')"


_PG_NAME_END = "\\x03\\x03"
_PG_PHONE_END = "\\x04\\x04"


def _pg_item(value: str, end: str = _PG_NAME_END) -> str:
    return f"CASE WHEN coalesce({value}, '') = '' THEN '' ELSE E'\\x02\\x02' || {value} || E'{end}' END"


POSTGRESQL_UP = [
    f"""CREATE TABLE search_households (
        household_id integer PRIMARY KEY,
        book_no varchar(32) NOT NULL,
        liaison_unit_id integer NOT NULL,
        unit_path varchar(255) NOT NULL,
        ancestor_1 integer,
        ancestor_2 integer,
        ancestor_3 integer,
        {", ".join(f"flag_{flag} boolean NOT NULL" for flag in FLAGS)},
        doc text NOT NULL
    )""",
    # The keys of a document (see the module docstring). Immutable, so a GIN expression index can
    # hold them without the table storing them; costly, so the planner never runs it per row.
    f"""CREATE FUNCTION search_household_keys(doc text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE COST 100000 AS $$
    DECLARE
        piece text;
        item text;
        units text[];
        keys text[] := '{{}}';
        n integer;
        tibetan boolean;
        width integer;
        sep text;
    BEGIN
        FOREACH piece IN ARRAY string_to_array(doc, E'\\x02\\x02') LOOP
            CONTINUE WHEN length(piece) < 3;
            item := left(piece, -2);
            IF right(piece, 2) = E'\\x04\\x04' THEN
                IF length(item) >= 4 THEN
                    keys := keys || ('#' || right(item, 4));
                END IF;
                CONTINUE;
            END IF;
            keys := keys || ('=' || item);
            tibetan := item ~ '[\\u0F00-\\u0FFF]';
            IF tibetan THEN
                sep := U&'\\0F0B';
                units := string_to_array(item, sep);
                width := {MAX_UNITS};
            ELSE
                sep := '';
                units := regexp_split_to_array(item, '');
                width := 2 * {MAX_UNITS};
            END IF;
            n := array_length(units, 1);
            FOR j IN 1 .. least(n, width) LOOP
                keys := keys || ('^' || array_to_string(units[1 : j], sep));
            END LOOP;
            FOR i IN 2 .. n LOOP
                FOR j IN i .. least(n, i + width - 1) LOOP
                    keys := keys || ('~' || array_to_string(units[i : j], sep));
                END LOOP;
            END LOOP;
        END LOOP;
        RETURN ARRAY(SELECT DISTINCT unnest(keys));
    END $$""",
    "CREATE INDEX search_households_keys ON search_households USING gin (search_household_keys(doc))",
    # Byte order ("C"), as SQLite's BINARY: both engines page the same ties the same way.
    'CREATE INDEX search_households_book_no ON search_households (book_no COLLATE "C")',
    'CREATE INDEX search_households_ancestor_1 ON search_households (ancestor_1, book_no COLLATE "C")',
    'CREATE INDEX search_households_ancestor_2 ON search_households (ancestor_2, book_no COLLATE "C")',
    'CREATE INDEX search_households_ancestor_3 ON search_households (ancestor_3, book_no COLLATE "C")',
    'CREATE INDEX search_households_liaison ON search_households (liaison_unit_id, book_no COLLATE "C")',
    "CREATE INDEX search_households_unit_path ON search_households (unit_path text_pattern_ops)",
    *(
        f"CREATE INDEX search_households_flag_{flag} ON search_households (household_id) WHERE flag_{flag}"
        for flag in FLAGS
    ),
    f"""CREATE FUNCTION search_households_refresh(ids integer[]) RETURNS void LANGUAGE sql AS $$
        DELETE FROM search_households WHERE household_id = ANY(ids);
        INSERT INTO search_households
        SELECT
            h.id, h.book_no, h.liaison_unit_id, coalesce(u.path, ''),
            nullif(split_part(u.path, '/', 2), '')::integer,
            nullif(split_part(u.path, '/', 3), '')::integer,
            nullif(split_part(u.path, '/', 4), '')::integer,
            {", ".join(f"h.flag_{flag}" for flag in FLAGS)},
            {_pg_item(_PG_ZH.format("h.head_name"))} || {_pg_item(_PG_BO.format("h.head_name_bo"))}
            || coalesce((
                SELECT string_agg(
                    {_pg_item(_PG_ZH.format("m.name"))} || {_pg_item(_PG_BO.format("m.name_bo"))}
                    || {_pg_item(_PG_TEL.format("m.phone"), end=_PG_PHONE_END)}, '' ORDER BY m.id)
                FROM members m WHERE m.household_id = h.id
            ), '')
        FROM households h LEFT JOIN org_units u ON u.id = h.liaison_unit_id
        WHERE h.id = ANY(ids);
    $$""",
    # One function for every trigger: the transition tables are named alike on each.
    """CREATE FUNCTION search_households_members_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM search_households_refresh(ARRAY(SELECT DISTINCT household_id FROM new_rows));
        ELSIF TG_OP = 'DELETE' THEN
            PERFORM search_households_refresh(ARRAY(SELECT DISTINCT household_id FROM old_rows));
        ELSE
            PERFORM search_households_refresh(ARRAY(
                SELECT o.household_id FROM old_rows o JOIN new_rows n ON n.id = o.id
                WHERE (o.household_id, o.name, o.name_bo, o.phone)
                      IS DISTINCT FROM (n.household_id, n.name, n.name_bo, n.phone)
                UNION
                SELECT n.household_id FROM old_rows o JOIN new_rows n ON n.id = o.id
                WHERE o.household_id IS DISTINCT FROM n.household_id
            ));
        END IF;
        RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION search_households_households_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM search_households_refresh(ARRAY(SELECT id FROM new_rows));
        ELSIF TG_OP = 'DELETE' THEN
            DELETE FROM search_households WHERE household_id IN (SELECT id FROM old_rows);
        ELSE
            DELETE FROM search_households WHERE household_id IN (
                SELECT id FROM old_rows EXCEPT SELECT id FROM new_rows);
            PERFORM search_households_refresh(ARRAY(
                SELECT n.id FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id
                WHERE ({", ".join(f"o.{c}" for c in _HOUSEHOLD_FIELDS)})
                      IS DISTINCT FROM ({", ".join(f"n.{c}" for c in _HOUSEHOLD_FIELDS)})
            ));
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION search_households_units_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM search_households_refresh(ARRAY(
            SELECT h.id FROM households h
            JOIN new_rows n ON n.id = h.liaison_unit_id
            JOIN old_rows o ON o.id = n.id
            WHERE o.path IS DISTINCT FROM n.path
        ));
        RETURN NULL;
    END $$""",
    *(
        f"""CREATE TRIGGER search_households_after_{table}_{verb.lower()} AFTER {verb} ON {table}
        REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION search_households_{table}_changed()"""
        for table in ("members", "households")
        for verb, tables in (
            ("INSERT", "NEW TABLE AS new_rows"),
            ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("DELETE", "OLD TABLE AS old_rows"),
        )
    ),
    """CREATE TRIGGER search_households_after_org_units_update AFTER UPDATE ON org_units
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION search_households_units_changed()""",
    "SELECT search_households_refresh(ARRAY(SELECT id FROM households))",
]

POSTGRESQL_DOWN = [
    "DROP TRIGGER search_households_after_org_units_update ON org_units",
    *(
        f"DROP TRIGGER search_households_after_{table}_{verb} ON {table}"
        for table in ("members", "households")
        for verb in ("insert", "update", "delete")
    ),
    "DROP FUNCTION search_households_units_changed()",
    "DROP FUNCTION search_households_households_changed()",
    "DROP FUNCTION search_households_members_changed()",
    "DROP FUNCTION search_households_refresh(integer[])",
    "DROP TABLE search_households",
    "DROP FUNCTION search_household_keys(text)",
]


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_UP if postgresql else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DOWN if postgresql else _sqlite_down():
        op.execute(statement)
