"""Bulk INSERT and UPDATE at driver speed, inside the session's own transaction.

A county import writes around a million rows (households, members, livestock). SQLAlchemy's generic
executemany builds and type-processes a parameter dict per row, which costs more than the database
does; these helpers hand the driver its native form directly:

- PostgreSQL (psycopg2): rows stream in with ``COPY ... FROM STDIN``; updates go out with
  ``execute_values``, one ``UPDATE ... FROM (VALUES ...)`` statement for hundreds of rows. psycopg2
  refuses COPY while a wait callback is set, as eventlet sets one in every nameko process to make
  the driver cooperative: there rows go in as multi-row INSERTs (``execute_values``).
- SQLite: one ``executemany`` of tuples, each column type-processed by SQLAlchemy's own bind
  processor (so values are stored exactly as the ORM would store them), repeated values processed once.
- Any other engine: SQLAlchemy Core executemany.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

# Rows per UPDATE statement on PostgreSQL.
UPDATE_PAGE_SIZE = 500


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ``rows`` (dicts with the same keys) into ``table``."""
    if not rows:
        return
    connection = session.connection()
    columns = list(rows[0])
    if _is_psycopg2(connection.dialect):
        from psycopg2.extensions import get_wait_callback

        if get_wait_callback() is None:
            _copy_in(connection, table, columns, rows)
        else:
            _insert_values(connection, table, columns, rows)
    elif connection.dialect.name == "sqlite":
        names = ", ".join(_quoted(connection.dialect, name) for name in columns)
        marks = ", ".join("?" for _ in columns)
        statement = f"INSERT INTO {_quoted(connection.dialect, table.name)} ({names}) VALUES ({marks})"
        _sqlite_executemany(connection, table, statement, columns, rows)
    else:
        connection.execute(insert(table), list(rows))


def update_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE ``table`` by primary key ``id``: each row is ``{"id": ..., column: new value, ...}``, each
    id once."""
    if not rows:
        return
    connection = session.connection()
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(name for name in row if name != "id")].append(row)
    dialect = connection.dialect
    for columns, group in groups.items():
        if _is_psycopg2(dialect):
            from psycopg2.extras import execute_values

            # One statement per page, not one per row: the search triggers (migration 0003) run once
            # per statement. Each value is cast to its column's type (a VALUES column of NULLs is text).
            names = ["id", *columns]
            values = ", ".join(
                f"CAST(%({name})s AS {table.c[name].type.compile(dialect=dialect)})" for name in names
            )
            assignments = ", ".join(
                f"{_quoted(dialect, name)} = v.{_quoted(dialect, name)}" for name in columns
            )
            statement = (
                f"UPDATE {_quoted(dialect, table.name)} AS t SET {assignments} FROM (VALUES %s) "
                f"AS v ({', '.join(_quoted(dialect, name) for name in names)}) WHERE t.id = v.id"
            )
            with connection.connection.dbapi_connection.cursor() as cursor:
                execute_values(cursor, statement, group, template=f"({values})", page_size=UPDATE_PAGE_SIZE)
        elif dialect.name == "sqlite":
            assignments = ", ".join(f"{_quoted(dialect, name)} = ?" for name in columns)
            statement = f"UPDATE {_quoted(dialect, table.name)} SET {assignments} WHERE id = ?"
            _sqlite_executemany(connection, table, statement, [*columns, "id"], group)
        else:
            # The key is renamed: a bind parameter may not share its name with a SET column.
            statement = (
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values({name: bindparam(name) for name in columns})
            )
            connection.execute(statement, [{**row, "row_id": row["id"]} for row in group])


def _insert_values(
    connection: Connection, table: Table, columns: list[str], rows: Sequence[dict[str, Any]]
) -> None:
    from psycopg2.extras import execute_values

    names = ", ".join(_quoted(connection.dialect, name) for name in columns)
    statement = f"INSERT INTO {_quoted(connection.dialect, table.name)} ({names}) VALUES %s"
    with connection.connection.dbapi_connection.cursor() as cursor:
        execute_values(
            cursor, statement, [tuple(row[name] for name in columns) for row in rows], page_size=1000
        )


def _is_psycopg2(dialect: Dialect) -> bool:
    return dialect.name == "postgresql" and dialect.driver == "psycopg2"


def _quoted(dialect: Dialect, name: str) -> str:
    return dialect.identifier_preparer.quote(name)


def _sqlite_executemany(
    connection: Connection,
    table: Table,
    statement: str,
    columns: list[str],
    rows: Sequence[dict[str, Any]],
) -> None:
    dialect = connection.dialect
    # dialect_impl: the engine's own variant of each type (SQLite's DATETIME renders its own string).
    processors = [
        _memoised(table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in columns
    ]
    values = [
        tuple(
            row[name] if process is None else process(row[name])
            for name, process in zip(columns, processors, strict=True)
        )
        for row in rows
    ]
    connection.exec_driver_sql(statement, values)


def _memoised(process: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """The processor, remembering its answers: one import stamps every row with the same time."""
    if process is None:
        return None
    seen: dict[Any, Any] = {}

    def cached(value: Any) -> Any:
        if value is None:
            return process(value)
        try:
            return seen[value]
        except KeyError:
            seen[value] = result = process(value)
            return result
        except TypeError:  # unhashable: nothing to remember
            return process(value)

    return cached


_COPY_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]").search


def _copy_strings(values: Iterable[Any]) -> list[str]:
    # Names and ciphertexts almost never hold a tab or backslash: escape only those that do.
    return [
        _COPY_NULL if value is None else value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE(value) else value
        for value in values
    ]


def _copy_scalars(values: Iterable[Any]) -> list[str]:
    """Numbers, booleans, dates and times in COPY's text format; repeated values formatted once."""
    seen: dict[Any, str] = {}
    out = []
    for value in values:
        if value is None:
            out.append(_COPY_NULL)
            continue
        text = seen.get(value)
        if text is None:
            if isinstance(value, bool):
                text = "t" if value else "f"
            elif isinstance(value, datetime | date):
                text = value.isoformat()
            else:
                text = repr(value) if isinstance(value, float) else str(value)
            seen[value] = text
        out.append(text)
    return out


def _copy_in(
    connection: Connection, table: Table, columns: list[str], rows: Sequence[dict[str, Any]]
) -> None:
    # Formatted column by column: one tight loop per column instead of a type test per value.
    formatted = [
        (_copy_strings if table.c[name].type.python_type is str else _copy_scalars)(row[name] for row in rows)
        for name in columns
    ]
    buffer = io.StringIO()
    buffer.writelines(f"{line}\n" for line in map("\t".join, zip(*formatted, strict=True)))
    buffer.seek(0)
    names = ", ".join(_quoted(connection.dialect, name) for name in columns)
    with connection.connection.dbapi_connection.cursor() as cursor:
        cursor.copy_expert(f"COPY {_quoted(connection.dialect, table.name)} ({names}) FROM STDIN", buffer)
