"""The one write path into the household registry, and a household as staff see it.

``apply_households`` serves the API (a list of one) and the importer (a whole county at once) alike, so
both obey the same rules: upsert by household-book number, history for every changed field, ID numbers
only ever stored encrypted / blind-indexed / masked, and an audit trail. It works in bulk: existing rows
are read in chunks, diffs are computed in Python, and writes go out as a handful of bulk statements
(:mod:`services.registry.bulk`) whatever the number of households; a large write also rebuilds its
households' search rows in bulk (``SEARCH_BULK_ROWS``). The writes are all or nothing, even inside a
caller's transaction (a savepoint). Writers are serialised, so the checks it makes before writing
still hold when it writes.

Partial input: a household field the caller did not send (absent from ``model_fields_set``) is left as
it is, one sent as null is cleared. So an API PATCH can send only what changed, and an import that
sends every column makes the stored household match its row. Members and livestock are never deleted
by input: a member missing from the new data is kept and counted in ``members_not_in_file``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Column, Integer, MetaData, Table, func, or_, select, text
from sqlalchemy.orm import Session

from services.registry import audit, bulk
from services.registry.idnumber import InvalidIdNumber, mask_id_number
from services.registry.models import (
    FLAGS,
    SPECIES,
    Document,
    History,
    Household,
    Livestock,
    Member,
    OrgUnit,
)
from services.registry.protection import Protector, UndecryptableValue
from services.registry.queries import path_ids, valid_id
from services.registry.schemas import Actor, HouseholdIn, MemberIn

log = logging.getLogger(__name__)

# Clear ID numbers: only the county command, the governance centre and township commands, and only
# with a stated reason (each such read is audited). Everyone else sees ``632623**********12``.
SENSITIVE_ROLES = frozenset({"county_command", "governance_centre", "township_command"})
# Roles whose work spans the whole county (a department serves every township); the others see the
# households of their own unit's subtree only.
COUNTY_WIDE_ROLES = frozenset({"county_command", "governance_centre", "department"})

HOUSEHOLD_FIELDS = (
    "liaison_unit_id",
    "head_name",
    "head_name_bo",
    "address",
    "lat",
    "lon",
    "grassland_area_mu",
)
MEMBER_FIELDS = ("name", "name_bo", "sex", "birth_date", "relation", "ethnicity", "phone")
FLAG_COLUMNS = {flag: f"flag_{flag}" for flag in FLAGS}
# What history rows of the ID number hold: ciphertexts, shown masked (or not at all) on the way out.
SENSITIVE_HISTORY_FIELDS = frozenset({"id_number"})

# Well under SQLite's 32,766 bound parameters per statement, and small enough to keep each IN list cheap.
CHUNK = 1000
# A write this large changes the tables' shape enough to refresh the planner's statistics.
ANALYZE_AFTER_ROWS = 10_000
# Any fixed 64-bit number: the key of the PostgreSQL advisory lock that serialises registry writers.
WRITE_LOCK_KEY = 0x6C69616E6875
# A write of this many household and member rows takes its households out of the search triggers'
# care and rebuilds their search rows once, set-based, at its end (migration 0004). The triggers index
# row by row on SQLite, at about twice the cost, and once per statement on PostgreSQL, so there a
# household is indexed again for its members and for each page of updates.
SEARCH_BULK_ROWS = 1_000
# The households whose search rows the current transaction rebuilds (unmodelled, as all search_*).
SEARCH_PENDING = Table(
    "search_households_pending", MetaData(), Column("household_id", Integer, primary_key=True)
)


class RecordError(ValueError):
    """Input the registry refuses, naming the item and field, in Chinese and English.

    ``apply_households`` raises the first problem it finds; ``problems`` on it lists every one, so an
    importer can report them all at once.
    """

    def __init__(self, field: str, message_zh: str, message_en: str, index: int | None = None):
        super().__init__(f"{field}: {message_en}")
        self.field = field
        self.message_zh = message_zh
        self.message_en = message_en
        self.index = index
        self.problems: list[RecordError] = [self]

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "field": self.field,
            "message_zh": self.message_zh,
            "message_en": self.message_en,
        }


def can_see_sensitive(role: str) -> bool:
    return role in SENSITIVE_ROLES


def validation_problems(error: ValidationError, index: int | None = None) -> list[RecordError]:
    """Pydantic's errors as RecordErrors, without the offending input (it may be an ID number)."""
    problems = []
    for detail in error.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in detail["loc"]) or "item"
        cause = (detail.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidIdNumber):
            problems.append(RecordError(location, cause.message_zh, cause.message_en, index))
            continue
        message = detail["msg"].removeprefix("Value error, ")
        # The schema's own checks write "english / 中文"; pydantic's built-in ones are English only.
        en, _, zh = message.partition(" / ")
        problems.append(RecordError(location, zh or f"数据不合规：{en}", en, index))
    return problems


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _text(value: Any) -> str | None:
    """A value as history keeps it: text that reads the same on both engines."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _serialise_writers(session: Session) -> None:
    # The book-number and ID-number checks read before they write; two writers interleaving could both
    # pass them. SQLite already serialises writers (BEGIN IMMEDIATE); PostgreSQL needs a lock for it.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})


def _blind_indexes(items: Sequence[HouseholdIn], protector: Protector) -> list[list[str | None]]:
    return [
        [protector.blind_index(member.id_number) if member.id_number else None for member in item.members]
        for item in items
    ]


def check_households(
    session: Session, items: Sequence[HouseholdIn], protector: Protector
) -> list[RecordError]:
    """Every reason the registry would refuse ``items``, without writing anything."""
    return _problems(session, items, _blind_indexes(items, protector))


def _problems(
    session: Session,
    items: Sequence[HouseholdIn],
    indexes: list[list[str | None]],
    known: dict[str, set[str]] | None = None,
) -> list[RecordError]:
    """``known``: the blind indexes already on file for each book number, which need no lookup."""
    problems: list[RecordError] = []
    known = known or {}

    first_seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.book_no in first_seen:
            problems.append(
                RecordError(
                    "book_no",
                    f"户口簿号与第{first_seen[item.book_no] + 1}条重复",
                    f"the household-book number repeats item {first_seen[item.book_no] + 1}",
                    i,
                )
            )
        else:
            first_seen[item.book_no] = i

    unit_ids = sorted({item.liaison_unit_id for item in items})
    kinds: dict[int, str] = {}
    for chunk in _chunks(unit_ids):
        kinds.update(session.execute(select(OrgUnit.id, OrgUnit.kind).where(OrgUnit.id.in_(chunk))).all())
    for i, item in enumerate(items):
        kind = kinds.get(item.liaison_unit_id)
        if kind is None:
            problems.append(
                RecordError(
                    "liaison_unit_id",
                    f"联户组{item.liaison_unit_id}不存在",
                    f"there is no unit {item.liaison_unit_id}",
                    i,
                )
            )
        elif kind != "liaison":
            problems.append(
                RecordError(
                    "liaison_unit_id",
                    f"单位{item.liaison_unit_id}不是联户组",
                    f"unit {item.liaison_unit_id} is a {kind}, not a liaison unit",
                    i,
                )
            )

    # An ID number names one person, who belongs to one household: in this batch and in the registry.
    owner_in_batch: dict[str, str] = {}
    for i, item in enumerate(items):
        for j, index in enumerate(indexes[i]):
            if index is None:
                continue
            other = owner_in_batch.setdefault(index, item.book_no)
            if other != item.book_no:
                problems.append(_id_taken(i, j, other))
    # A re-import mostly names people already in their own households: only the rest are looked up.
    wanted = [index for index, book_no in owner_in_batch.items() if index not in known.get(book_no, ())]
    stored: dict[str, str] = {}
    for chunk in _chunks(wanted):
        stored.update(
            session.execute(
                select(Member.id_number_index, Household.book_no)
                .join(Household, Household.id == Member.household_id)
                .where(Member.id_number_index.in_(chunk))
            ).all()
        )
    for i, item in enumerate(items):
        for j, index in enumerate(indexes[i]):
            if index is not None and stored.get(index, item.book_no) != item.book_no:
                problems.append(_id_taken(i, j, stored[index]))
    return problems


def _id_taken(index: int, member: int, book_no: str) -> RecordError:
    # The message names the other household, never the number itself.
    return RecordError(
        f"members.{member}.id_number",
        f"该身份证号已登记在另一户（户口簿号{book_no}）",
        f"this ID number already belongs to a member of another household (book {book_no})",
        index,
    )


@dataclass
class _Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    members_added: int = 0
    members_updated: int = 0
    members_not_in_file: int = 0
    history_rows: int = 0


@dataclass
class _Writes:
    """Everything one call will write, gathered before a single statement goes out."""

    now: datetime
    actor: Actor
    reason: str | None
    new_households: list[dict[str, Any]] = field(default_factory=list)
    new_positions: list[int] = field(default_factory=list)  # item index of each new household
    # Rows of new households' members and livestock, keyed by their household's place in new_households.
    new_members: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    new_livestock: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    household_updates: list[dict[str, Any]] = field(default_factory=list)
    member_updates: list[dict[str, Any]] = field(default_factory=list)
    added_members: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (household version, row)
    known_members: dict[int, set[int]] = field(default_factory=dict)  # ids before, where members are added
    livestock_inserts: list[dict[str, Any]] = field(default_factory=list)
    livestock_updates: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    changed: dict[int, dict[str, Any]] = field(default_factory=dict)  # household id -> audit fields

    def history_row(
        self, entity: str, entity_id: int, name: str, old: Any, new: Any, version: int
    ) -> dict[str, Any]:
        row = {
            "entity": entity,
            "entity_id": entity_id,
            "field": name,
            "old_value": _text(old),
            "new_value": _text(new),
            "version": version,
            "changed_at": self.now,
            "changed_by": self.actor.username,
            "reason": self.reason,
        }
        self.history.append(row)
        return row


def _member_row(member: MemberIn, index: str | None, protector: Protector) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(member, name) for name in MEMBER_FIELDS}
    row["birth_year"] = member.birth_date.year if member.birth_date else None
    row.update(_id_columns(member.id_number, index, protector))
    return row


def _id_columns(number: str | None, index: str | None, protector: Protector) -> dict[str, Any]:
    if number is None:
        return {"id_number_cipher": None, "id_number_index": None, "id_number_masked": None}
    return {
        "id_number_cipher": protector.encrypt(number),
        "id_number_index": index,
        "id_number_masked": mask_id_number(number),
    }


def _household_row(item: HouseholdIn) -> dict[str, Any]:
    row: dict[str, Any] = {"book_no": item.book_no}
    row.update({name: getattr(item, name) for name in HOUSEHOLD_FIELDS})
    row.update({column: flag in item.flags for flag, column in FLAG_COLUMNS.items()})
    return row


def _load(session: Session, columns: list[Any], key: Any, values: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows whose ``key`` is in ``values``, as dicts, read in chunks."""
    names = [column.key for column in columns]
    # Core, not ORM, execution: plain rows for a few hundred thousand members, no entity loading.
    connection = session.connection()
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(values):
        result = connection.execute(select(*columns).where(key.in_(chunk)))
        rows.extend(dict(zip(names, row, strict=True)) for row in result.all())
    return rows


HOUSEHOLD_COLUMNS = [
    Household.id,
    Household.book_no,
    Household.version,
    *(getattr(Household, name) for name in HOUSEHOLD_FIELDS),
    *(getattr(Household, column) for column in FLAG_COLUMNS.values()),
]
MEMBER_COLUMNS = [
    Member.id,
    Member.household_id,
    *(getattr(Member, name) for name in MEMBER_FIELDS),
    Member.id_number_cipher,
    Member.id_number_index,
    Member.version,
]
LIVESTOCK_COLUMNS = [
    Livestock.id,
    Livestock.household_id,
    Livestock.year,
    Livestock.species,
    Livestock.head_count,
]


def apply_households(
    session: Session,
    items: list[HouseholdIn],
    actor: Actor,
    reason: str | None,
    protector: Protector,
) -> dict[str, Any]:
    """Create or update ``items`` (upsert by ``book_no``) in the caller's transaction.

    Raises :class:`RecordError` (with every problem in ``problems``) before writing anything when a
    liaison unit is unknown or not a liaison unit, a book number repeats, or an ID number belongs to
    another household. Returns the counts, plus ``household_ids`` in the order of ``items``.
    """
    _serialise_writers(session)
    indexes = _blind_indexes(items, protector)
    existing = {
        row["book_no"]: row
        for row in _load(session, HOUSEHOLD_COLUMNS, Household.book_no, [item.book_no for item in items])
    }
    existing_ids = [row["id"] for row in existing.values()]
    members_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in _load(session, MEMBER_COLUMNS, Member.household_id, existing_ids):
        members_of[row["household_id"]].append(row)
    for members in members_of.values():
        # Oldest first, so two stored namesakes match input in a stable order.
        members.sort(key=lambda row: row["id"])
    known = {
        book_no: {member["id_number_index"] for member in members_of[row["id"]] if member["id_number_index"]}
        for book_no, row in existing.items()
    }
    problems = _problems(session, items, indexes, known)
    if problems:
        first = problems[0]
        first.problems = problems
        raise first

    writes = _Writes(now=datetime.now(UTC), actor=actor, reason=reason)
    counts = _Counts()
    household_ids: list[int | None] = [None] * len(items)
    livestock_of: dict[int, dict[tuple[int, str], dict[str, Any]]] = defaultdict(dict)
    for row in _load(session, LIVESTOCK_COLUMNS, Livestock.household_id, existing_ids):
        livestock_of[row["household_id"]][(row["year"], row["species"])] = row

    for i, item in enumerate(items):
        current = existing.get(item.book_no)
        if current is None:
            _plan_new(writes, counts, i, item, indexes[i], protector)
            continue
        household_ids[i] = current["id"]
        _plan_update(
            writes,
            counts,
            item,
            indexes[i],
            current,
            members_of[current["id"]],
            livestock_of[current["id"]],
            protector,
        )

    new_ids = _write(session, writes)
    for position, new_id in zip(writes.new_positions, new_ids, strict=True):
        household_ids[position] = new_id
    counts.history_rows = len(writes.history)
    _audit(session, writes, counts, items, household_ids)
    return {**counts.__dict__, "household_ids": household_ids}


def _plan_new(
    writes: _Writes,
    counts: _Counts,
    position: int,
    item: HouseholdIn,
    indexes: list[str | None],
    protector: Protector,
) -> None:
    slot = len(writes.new_households)
    writes.new_households.append({**_household_row(item), "version": 1, "updated_at": writes.now})
    writes.new_positions.append(position)
    for member, index in zip(item.members, indexes, strict=True):
        writes.new_members.append(
            (slot, {**_member_row(member, index, protector), "version": 1, "updated_at": writes.now})
        )
    for entry in item.livestock:
        writes.new_livestock.append(
            (slot, {"year": entry.year, "species": entry.species, "head_count": entry.head_count})
        )
    counts.created += 1
    counts.members_added += len(item.members)


def _match_members(
    item: HouseholdIn, indexes: list[str | None], stored: list[dict[str, Any]]
) -> list[dict[str, Any] | None]:
    """The stored member each input member is, by ID number first, then by (name, relation)."""
    matched: list[dict[str, Any] | None] = [None] * len(item.members)
    free = {row["id"]: row for row in stored}
    by_index = {row["id_number_index"]: row for row in stored if row["id_number_index"]}
    for j, index in enumerate(indexes):
        if index is not None and index in by_index:
            matched[j] = free.pop(by_index[index]["id"])
    for j, member in enumerate(item.members):
        if matched[j] is not None:
            continue
        for row in free.values():
            # A stored member with another ID number is another person, whatever the name.
            if (row["name"], row["relation"]) == (member.name, member.relation) and (
                indexes[j] is None or row["id_number_index"] is None
            ):
                matched[j] = free.pop(row["id"])
                break
    return matched


def _plan_update(
    writes: _Writes,
    counts: _Counts,
    item: HouseholdIn,
    indexes: list[str | None],
    current: dict[str, Any],
    stored_members: list[dict[str, Any]],
    stored_livestock: dict[tuple[int, str], dict[str, Any]],
    protector: Protector,
) -> None:
    household_id, version = current["id"], current["version"]
    given = item.model_fields_set
    changes: dict[str, Any] = {}
    for name in HOUSEHOLD_FIELDS:
        if name in given and getattr(item, name) != current[name]:
            changes[name] = getattr(item, name)
    if "flags" in given:
        for flag, column in FLAG_COLUMNS.items():
            if (flag in item.flags) != bool(current[column]):
                changes[column] = flag in item.flags
    for name, value in changes.items():
        writes.history_row("household", household_id, name, current[name], value, version)

    member_fields: dict[str, list[str]] = {}
    added = 0
    if "members" in given:
        matched = _match_members(item, indexes, stored_members)
        for member, index, row in zip(item.members, indexes, matched, strict=True):
            if row is None:
                added += 1
                new_row = {
                    **_member_row(member, index, protector),
                    "household_id": household_id,
                    "version": 1,
                    "updated_at": writes.now,
                }
                writes.added_members.append((version, new_row))
                writes.known_members[household_id] = {row["id"] for row in stored_members}
                continue
            changed = _plan_member(writes, member, index, row, protector)
            if changed:
                member_fields[str(row["id"])] = changed
        counts.members_not_in_file += len(stored_members) - sum(row is not None for row in matched)
    counts.members_added += added
    counts.members_updated += len(member_fields)

    livestock_changed: list[str] = []
    if "livestock" in given:
        for entry in item.livestock:
            key = f"livestock.{entry.year}.{entry.species}"
            row = stored_livestock.get((entry.year, entry.species))
            if row is None:
                writes.livestock_inserts.append(
                    {
                        "household_id": household_id,
                        "year": entry.year,
                        "species": entry.species,
                        "head_count": entry.head_count,
                    }
                )
                writes.history_row("household", household_id, key, None, entry.head_count, version)
            elif row["head_count"] != entry.head_count:
                writes.livestock_updates.append({"id": row["id"], "head_count": entry.head_count})
                writes.history_row(
                    "household", household_id, key, row["head_count"], entry.head_count, version
                )
            else:
                continue
            livestock_changed.append(key)

    if not (changes or member_fields or added or livestock_changed):
        counts.unchanged += 1
        return
    counts.updated += 1
    writes.household_updates.append(
        {"id": household_id, **changes, "version": version + 1, "updated_at": writes.now}
    )
    summary: dict[str, Any] = {}
    if changes:
        summary["household"] = sorted(changes)
    if member_fields:
        summary["members"] = member_fields
    if added:
        summary["members_added"] = added
    if livestock_changed:
        summary["livestock"] = livestock_changed
    writes.changed[household_id] = summary


def _plan_member(
    writes: _Writes, member: MemberIn, index: str | None, row: dict[str, Any], protector: Protector
) -> list[str]:
    """Queue the changes of one matched member; the names of the fields that changed."""
    given = member.model_fields_set
    changes: dict[str, Any] = {}
    for name in MEMBER_FIELDS:
        if name in given and getattr(member, name) != row[name]:
            changes[name] = getattr(member, name)
    for name, value in changes.items():
        writes.history_row("member", row["id"], name, row[name], value, row["version"])
    changed = sorted(changes)
    if "birth_date" in changes:
        # The year follows the date; it is derived, so it gets no history row of its own.
        changes["birth_year"] = member.birth_date.year if member.birth_date else None
    # An input without an ID number never clears a stored one: a blank cell is not a correction.
    if index is not None and index != row["id_number_index"]:
        columns = _id_columns(member.id_number, index, protector)
        old, new = row["id_number_cipher"], columns["id_number_cipher"]
        writes.history_row("member", row["id"], "id_number", old, new, row["version"])
        changes.update(columns)
        changed.append("id_number")
    if changes:
        writes.member_updates.append(
            {"id": row["id"], **changes, "version": row["version"] + 1, "updated_at": writes.now}
        )
    return changed


def _insert(session: Session, model: type, rows: list[dict[str, Any]]) -> None:
    bulk.insert_rows(session, model.__table__, rows)


def _allocate_household_ids(session: Session, count: int) -> list[int]:
    """Ids for ``count`` new households, taken before they are written (no read-back needed)."""
    if not count:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return list(
            session.scalars(
                text(
                    "SELECT nextval(pg_get_serial_sequence('households', 'id')) FROM generate_series(1, :n)"
                ),
                {"n": count},
            )
        )
    # SQLite hands out max(id) + 1 itself; writers are serialised, so nobody else takes these.
    top = session.scalar(select(func.coalesce(func.max(Household.id), 0))) or 0
    return list(range(top + 1, top + 1 + count))


def _write(session: Session, writes: _Writes) -> list[int]:
    """Send every queued row in bulk; the ids of the new households, in order."""
    new_ids = _allocate_household_ids(session, len(writes.new_households))
    households = [{**row, "id": new_id} for row, new_id in zip(writes.new_households, new_ids, strict=True)]
    members = [{**row, "household_id": new_ids[slot]} for slot, row in writes.new_members]
    livestock = [{**row, "household_id": new_ids[slot]} for slot, row in writes.new_livestock]
    indexed = (
        len(households)
        + len(members)
        + len(writes.household_updates)
        + len(writes.member_updates)
        + len(writes.added_members)
    )
    # Every household whose members change is in household_updates too (its version goes up).
    touched = new_ids + [row["id"] for row in writes.household_updates]
    # A savepoint: a write that fails part way leaves nothing behind (no half-written rows, no
    # households left out of the search triggers' care), even if the caller went on to commit.
    with (
        session.begin_nested(),
        _search_rebuilt_at_end(session, touched) if indexed >= SEARCH_BULK_ROWS else contextlib.nullcontext(),
    ):
        _write_rows(session, writes, households, members, livestock)
    return new_ids


@contextlib.contextmanager
def _search_rebuilt_at_end(session: Session, household_ids: list[int]) -> Iterator[None]:
    """The search triggers skip ``household_ids`` inside the block; after it, their search rows are
    rebuilt in a few set-based statements (migration 0004 holds them)."""
    bulk.insert_rows(session, SEARCH_PENDING, [{"household_id": i} for i in household_ids])
    # SQLite's FTS table forgets a row only when told its tokens: this runs while the values they
    # were made from are still there.
    session.execute(text("INSERT INTO search_households_bulk (step) VALUES ('forget')"))
    yield
    session.execute(text("INSERT INTO search_households_bulk (step) VALUES ('refresh')"))


def _write_rows(
    session: Session,
    writes: _Writes,
    households: list[dict[str, Any]],
    members: list[dict[str, Any]],
    livestock: list[dict[str, Any]],
) -> None:
    if households and session.get_bind().dialect.name == "sqlite":
        # The search index's row triggers (migration 0003) index a household once, when its row
        # arrives, if its members are already there; members first cost a fraction of the other order.
        # The foreign keys are checked at COMMIT instead (the pragma ends with the transaction).
        session.execute(text("PRAGMA defer_foreign_keys = ON"))
        _insert(session, Member, members)
        _insert(session, Household, households)
    else:
        _insert(session, Household, households)
        _insert(session, Member, members)
    _insert(session, Livestock, livestock + writes.livestock_inserts)
    bulk.update_rows(session, Household.__table__, writes.household_updates)
    bulk.update_rows(session, Member.__table__, writes.member_updates)
    bulk.update_rows(session, Livestock.__table__, writes.livestock_updates)
    _insert_added_members(session, writes)
    _insert(session, History, writes.history)
    _refresh_statistics(session, len(households) + len(members) + len(livestock))


def _refresh_statistics(session: Session, inserted: int) -> None:
    # Without fresh statistics PostgreSQL plans the next import's `household_id IN (...)` reads over a
    # just-loaded table as sequential scans: minutes instead of seconds. ANALYZE samples, so it costs
    # well under a second, and it runs in this transaction (it sees the rows just written).
    if inserted >= ANALYZE_AFTER_ROWS and session.get_bind().dialect.name == "postgresql":
        for table in (Household.__table__, Member.__table__, Livestock.__table__):
            session.execute(text(f"ANALYZE {table.name}"))


def _insert_added_members(session: Session, writes: _Writes) -> None:
    """New members of existing households, each with a history row naming its new id."""
    if not writes.added_members:
        return
    _insert(session, Member, [row for _, row in writes.added_members])
    households = sorted({row["household_id"] for _, row in writes.added_members})
    # Writers are serialised, so the ids of these households that were not there before are ours,
    # in insertion order.
    fresh: dict[int, list[int]] = defaultdict(list)
    for row in sorted(
        _load(session, [Member.id, Member.household_id], Member.household_id, households),
        key=lambda row: row["id"],
    ):
        if row["id"] not in writes.known_members[row["household_id"]]:
            fresh[row["household_id"]].append(row["id"])
    for version, row in writes.added_members:
        member_id = fresh[row["household_id"]].pop(0)
        writes.history_row("household", row["household_id"], "member_added", None, member_id, version)


def _audit(
    session: Session,
    writes: _Writes,
    counts: _Counts,
    items: Sequence[HouseholdIn],
    household_ids: list[int | None],
) -> None:
    if not (counts.created or counts.updated):
        return  # nothing changed, nothing to account for
    actor, reason, now = writes.actor, writes.reason, writes.now
    if len(items) == 1:
        household_id = household_ids[0]
        if counts.created:
            fields = {"members": len(items[0].members), "livestock": len(items[0].livestock)}
            audit.record_many(
                session, [audit.row(actor, "create", "household", household_id, fields, reason, now)]
            )
        else:
            assert household_id is not None
            fields = writes.changed[household_id]
            audit.record_many(
                session, [audit.row(actor, "update", "household", household_id, fields, reason, now)]
            )
        return
    # A batch: one entry with the counts, and one per household it changed (proportional to the real
    # changes, not to the file: re-importing 100,000 unchanged rows writes nothing at all).
    summary = {**counts.__dict__, "items": len(items)}
    rows = [audit.row(actor, "import", "household", None, summary, reason, now)]
    rows += [
        audit.row(actor, "update", "household", household_id, fields, reason, now)
        for household_id, fields in writes.changed.items()
    ]
    audit.record_many(session, rows)


def _actor_unit_path(session: Session, actor: Actor) -> str | None:
    if actor.org_unit_id is None or not valid_id(actor.org_unit_id):
        return None
    return session.scalar(select(OrgUnit.path).where(OrgUnit.id == actor.org_unit_id))


def may_see_household(session: Session, actor: Actor, unit_path: str) -> bool:
    """County-wide roles see every household; the others only those under their own unit."""
    if actor.role in COUNTY_WIDE_ROLES:
        return True
    own = _actor_unit_path(session, actor)
    return bool(own) and unit_path.startswith(own)


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def household_detail(
    session: Session,
    household_id: int,
    actor: Actor,
    protector: Protector,
    reason: str | None = None,
) -> dict[str, Any] | None:
    """A household as ``actor`` may see it; None when unknown or outside the actor's area.

    ID numbers are shown in clear only to SENSITIVE_ROLES and only with a reason; each such read is
    audited (``read_sensitive``, the member ids and the reason). Status flags are shown to everyone who
    may see the household and their reads are not audited: liaison workers and grid leaders need them
    for their daily work (who gets relief, whom to visit), the org-subtree rule already limits who sees
    them, and auditing every view would bury the rare clear-ID reads the trail exists for.
    """
    if not valid_id(household_id):
        return None
    household = (
        session.execute(select(*Household.__table__.c).where(Household.id == household_id)).mappings().first()
    )
    if household is None:
        return None
    unit_path = session.scalar(select(OrgUnit.path).where(OrgUnit.id == household["liaison_unit_id"])) or ""
    if not may_see_household(session, actor, unit_path):
        return None
    ancestors = {
        row.id: row
        for row in session.execute(
            select(OrgUnit.id, OrgUnit.kind, OrgUnit.name, OrgUnit.name_bo).where(
                OrgUnit.id.in_(path_ids(unit_path))
            )
        )
    }
    by_kind = {
        row.kind: {"id": row.id, "name": row.name, "name_bo": row.name_bo} for row in ancestors.values()
    }

    clear = can_see_sensitive(actor.role) and bool(reason and reason.strip())
    members = []
    shown_clear: list[int] = []
    for row in session.execute(
        select(*Member.__table__.c).where(Member.household_id == household_id).order_by(Member.id)
    ).mappings():
        id_number = row["id_number_masked"]
        if clear and row["id_number_cipher"]:
            try:
                id_number = protector.decrypt(row["id_number_cipher"])
                shown_clear.append(row["id"])
            except UndecryptableValue:
                # Never the value, only which row: a wrong key or a tampered row needs an operator.
                log.warning("member %s: stored ID number cannot be decrypted", row["id"])
        members.append(
            {
                "id": row["id"],
                "name": row["name"],
                "name_bo": row["name_bo"],
                "sex": row["sex"],
                "birth_date": _iso(row["birth_date"]),
                "birth_year": row["birth_year"],
                "relation": row["relation"],
                "ethnicity": row["ethnicity"],
                "phone": row["phone"],
                "id_number": id_number,
                "version": row["version"],
            }
        )
    if shown_clear:
        audit.record(
            session,
            actor,
            "read_sensitive",
            "household",
            household_id,
            {"members.id_number": shown_clear},
            reason.strip() if reason else None,
        )

    documents = [
        {
            "id": row["id"],
            "member_id": row["member_id"],
            "kind": row["kind"],
            "number": row["number_masked"],
            "issued_on": _iso(row["issued_on"]),
            "expires_on": _iso(row["expires_on"]),
            "file_sha256": row["file_sha256"],
            "file_type": row["file_type"],
            "file_size": row["file_size"],
            "original_name": row["original_name"],
            "uploaded_at": _iso(row["uploaded_at"]),
            "uploaded_by": row["uploaded_by"],
        }
        for row in session.execute(
            select(*Document.__table__.c).where(Document.household_id == household_id).order_by(Document.id)
        ).mappings()
    ]
    years: dict[int, dict[str, int]] = defaultdict(dict)
    for year, species, head_count in session.execute(
        select(Livestock.year, Livestock.species, Livestock.head_count).where(
            Livestock.household_id == household_id
        )
    ):
        years[year][species] = head_count
    livestock = [
        {"year": year, **{name: years[year].get(name, 0) for name in SPECIES}}
        for year in sorted(years, reverse=True)
    ]
    return {
        "id": household["id"],
        "book_no": household["book_no"],
        "head_name": household["head_name"],
        "head_name_bo": household["head_name_bo"],
        "address": household["address"],
        "lat": household["lat"],
        "lon": household["lon"],
        "grassland_area_mu": household["grassland_area_mu"],
        "flags": [flag for flag, column in FLAG_COLUMNS.items() if household[column]],
        "version": household["version"],
        "updated_at": _iso(household["updated_at"]),
        "liaison_unit_id": household["liaison_unit_id"],
        "liaison_unit": by_kind.get("liaison"),
        "village": by_kind.get("village"),
        "township": by_kind.get("township"),
        "id_numbers": "clear" if shown_clear else "masked",
        "members": members,
        "documents": documents,
        "livestock": livestock,
    }


def household_history(
    session: Session, household_id: int, protector: Protector | None = None
) -> list[dict[str, Any]]:
    """Every recorded change of the household and its members, oldest first.

    ID-number values rest in history as ciphertexts; they come out masked (with ``protector``) or as
    None, never in clear: reading history is not a way round the sensitive-read rule.
    """
    if not valid_id(household_id):
        return []
    member_ids = select(Member.id).where(Member.household_id == household_id)
    rows = session.scalars(
        select(History)
        .where(
            or_(
                (History.entity == "household") & (History.entity_id == household_id),
                (History.entity == "member") & History.entity_id.in_(member_ids),
            )
        )
        .order_by(History.changed_at, History.id)
    )
    return [
        {
            "entity": row.entity,
            "entity_id": row.entity_id,
            "field": row.field,
            "old_value": _shown(row.field, row.old_value, protector),
            "new_value": _shown(row.field, row.new_value, protector),
            "version": row.version,
            "changed_at": row.changed_at.isoformat(),
            "changed_by": row.changed_by,
            "reason": row.reason,
        }
        for row in rows
    ]


def _shown(name: str, value: str | None, protector: Protector | None) -> str | None:
    if value is None or name not in SENSITIVE_HISTORY_FIELDS:
        return value
    if protector is None:
        return None
    try:
        return mask_id_number(protector.decrypt(value))
    except UndecryptableValue:
        return None
