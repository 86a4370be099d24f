"""Registry search: one box for names (Chinese, Tibetan), ID numbers, household-book numbers and phones.

What ``q`` looks like decides what runs, always on an index:

- 17 digits and a check character: the national ID number, as an equality on the keyed blind index
  (the clear number is never stored, so never compared); and an exact book number.
- digits only: a phone number (exact, or its last 4-11 digits) and a book number (exact or prefix).
- other ASCII (``632623-JQ-00012``): a book number, exact or prefix.
- anything else: a name, against every member's and the head's Chinese and Tibetan name. Chinese
  matches by characters (扎西 finds 扎西, 扎西才让 and 才让扎西); Tibetan by whole syllables, as it
  is written (བཀྲ་ཤིས finds བཀྲ་ཤིས་ཚེ་རིང and ཚེ་རིང་བཀྲ་ཤིས, not བཀྲ་ཤིསX; a query ending
  mid-syllable finds no more than that syllable would).

Results are households, best rank first, then by book number (byte order on both engines):
0 an exact ID number, book number or phone; 1 a whole name equal to ``q``; 2 a name starting with
``q`` (or a book-number prefix, a phone's last digits); 3 ``q`` later in a name.

Each rank is a set of *search keys* (``=扎西``, ``^扎西``, ``~扎西``, see migration 0003), so a
lookup costs what it finds, not what its letters have in common with everyone else's. A query with
at most ``MATERIALISE_LIMIT`` hits is ranked in memory from one fetch. Otherwise each rank in turn:
one with at most ``TIER_LIMIT`` households is fetched whole and sorted; a denser one is paged by
walking the ``(scope, book_no)`` index in book order and testing each household's search document,
which stops after a page. Totals are exact up to ``TOTAL_CAP``; above it ``total_is_estimate`` is
true, ``total`` is ``TOTAL_CAP`` (a lower bound), and pages past it are not served: narrow the query.

Flags and ID numbers are returned as the caller may see them: flags by name, ID numbers only ever
masked. Hiding flags from a role, and auditing the read, is the service's business.
"""

from __future__ import annotations

import re
import time
import unicodedata
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from services.registry.models import FLAGS, Household, Member, OrgUnit
from services.registry.protection import Protector

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# Totals are counted exactly up to here, and results are served up to here (50 pages): a search box
# is for finding someone, and counting every 扎西 in a county (half its households) would cost more
# than the search itself. The registry's aggregates are the place for counts.
TOTAL_CAP = 1_000
# A query with at most this many hits is ranked in memory from one fetch of their documents (twice
# as many on PostgreSQL, where counting them would read the same heap rows as fetching them).
MATERIALISE_LIMIT = 500
# A rank with at most this many hits is fetched (ids and book numbers) and sorted; a denser one is
# paged by walking book order, which then meets a hit every N_scope / TIER_LIMIT rows or sooner.
# Both cost about TIER_LIMIT rows at the crossing: sqrt(rows wanted x households) for 10^6 people.
TIER_LIMIT = 2_000

RANK_KEY, RANK_EXACT, RANK_PREFIX, RANK_INSIDE = 0, 1, 2, 3

# The markers around every name (and phone) in the search document; see migration 0003.
START, END, PHONE_END = "\x02", "\x03", "\x04"
TSHEG = "\u0f0b"
MAX_SYLLABLES = 8  # longest run of Tibetan syllables the index holds as one key
MAX_PG_CHARACTERS = 16  # longest Chinese prefix or substring PostgreSQL holds as one key
_ID_NUMBER = re.compile(r"\d{17}[\dX]")
_UNIT_PATH = re.compile(r"/(?:\d+/)+")
_TIBETAN = re.compile(r"[\u0f00-\u0fff]")
# Full-width digits and letters (from phones and spreadsheets) become ASCII; separators go.
_KEY_SEPARATORS = str.maketrans("", "", " -\u3000")
# A Tibetan query typed with a leading or closing tsheg, shad or space means the same name.
_TIBETAN_EDGES = " \u0f0b\u0f0c\u0f0d\u0f0e"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class _Key:
    token: str
    # SQLite: a prefix query on the token (^才让多 * finds ^才让多杰); PostgreSQL holds every prefix.
    prefix: bool = False


@dataclass(frozen=True)
class _Text:
    """Households holding any of ``keys``, as substrings of the search document: holding one of
    ``needles`` (the same set: for testing rows one by one) and none of ``not_needles`` (a better
    rank's: always tested on the document, as a household-wide "but not")."""

    keys: tuple[_Key, ...]
    needles: tuple[str, ...] = ()
    not_needles: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Selection:
    """A set of households: a text match, or book-number prefix and/or explicit ids, or all."""

    text: _Text | None = None
    book_prefix: str | None = None
    keys: frozenset[int] = frozenset()
    exclude_keys: frozenset[int] = frozenset()
    everything: bool = False

    def matches(self, household_id: int, book_no: str, doc: str) -> bool:
        if household_id in self.exclude_keys:
            return False
        if self.everything or household_id in self.keys:
            return True
        if self.book_prefix is not None and book_no.startswith(self.book_prefix):
            return True
        if self.text is not None:
            found = any(n in doc for n in self.text.needles)
            return found and not any(n in doc for n in self.text.not_needles)
        return False


@dataclass(frozen=True)
class _Tier:
    rank: int
    selection: _Selection


@dataclass(frozen=True)
class _Scope:
    unit_id: int
    depth: int  # ids in the path: 1 county, 2 township or department, 3 village, 4 liaison unit
    path: str


@dataclass(frozen=True)
class _Filters:
    scope: _Scope | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class _Plan:
    """What a query string became: ranked tiers (disjoint), their union, and how to explain a hit."""

    tiers: tuple[_Tier, ...]
    union: _Selection
    name: str | None = None  # the name searched for, when q is a name
    tibetan: bool = False
    id_index: str | None = None
    phone: str | None = None
    book: str | None = None


def search_households(
    session: Session,
    q: str | None,
    protector: Protector | None,
    unit_path: str | None = None,
    flags: Iterable[str] = frozenset(),
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> dict[str, Any]:
    """Households matching ``q`` within ``unit_path``'s subtree and holding every one of ``flags``.

    An empty ``q`` browses the subtree in book order. Raises ValueError for a bad page, page size,
    flag or path, and for an ID-number query without a ``protector`` (its blind index needs the key).
    """
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValueError("page must be a positive integer")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    wanted_flags = tuple(sorted(set(flags)))
    unknown = set(wanted_flags) - set(FLAGS)
    if unknown:
        raise ValueError(f"unknown flags: {', '.join(sorted(unknown))}")

    empty = {"items": [], "total": 0, "page": page, "page_size": page_size, "total_is_estimate": False}
    scope = None
    if unit_path:
        scope = _resolve_scope(session, unit_path)
        if scope is None:
            return empty
    filters = _Filters(scope, wanted_flags)
    plan = _plan(session, q, protector)
    if plan is None:
        return empty

    engine = _engine_for(session)
    offset = (page - 1) * page_size
    ranked, total, estimate = _rank(engine, plan, filters, offset, page_size)
    return {
        "items": _items(session, plan, ranked),
        "total": total,
        "page": page,
        "page_size": page_size,
        "total_is_estimate": estimate,
    }


# ----------------------------------------------------------------------------------------- planning


def _resolve_scope(session: Session, unit_path: str) -> _Scope | None:
    path = unit_path.strip()
    if not path.endswith("/"):
        path += "/"
    if not _UNIT_PATH.fullmatch(path):
        raise ValueError("unit_path must be an org unit's path, like /1/5/23/")
    unit_id = session.scalar(select(OrgUnit.id).where(OrgUnit.path == path))
    if unit_id is None:
        return None  # no such unit: nothing lies under it
    return _Scope(unit_id, path.count("/") - 1, path)


def _plan(session: Session, q: str | None, protector: Protector | None) -> _Plan | None:
    raw = (q or "").strip()
    if not raw:
        everything = _Selection(everything=True)
        return _Plan((_Tier(RANK_KEY, everything),), everything)
    folded = unicodedata.normalize("NFKC", raw)
    compact = folded.translate(_KEY_SEPARATORS).upper()
    if _ID_NUMBER.fullmatch(compact):
        return _key_plan(session, protector, book=folded, id_number=compact)
    if compact.isascii() and compact.isdigit():
        return _key_plan(session, protector, book=folded, phone=compact)
    if folded.isascii() and folded.isprintable():
        return _key_plan(session, protector, book=folded)
    return _name_plan(raw)


def _name_plan(raw: str) -> _Plan | None:
    text = _CONTROL.sub("", raw)
    if _TIBETAN.search(text):
        return _tibetan_plan(text.strip(_TIBETAN_EDGES))
    # Chinese names carry no spaces: 扎西 才让 is 扎西才让 (the index strips them from names too).
    name = re.sub(r"\s+", "", text)
    if not name:
        return None
    # One or two characters are keys of their own; a longer query is a prefix of keys (SQLite).
    longer = len(name) > 2
    exact, prefix, inside = _Key(f"={name}"), _Key(f"^{name}", longer), _Key(f"~{name}", longer)
    tiers = (
        _Tier(RANK_EXACT, _Selection(text=_Text((exact,), needles=(f"{START}{name}{END}",)))),
        _Tier(RANK_PREFIX, _Selection(text=_Text((prefix,), (f"{START}{name}",), (f"{START}{name}{END}",)))),
        _Tier(RANK_INSIDE, _Selection(text=_Text((inside,), (name,), (f"{START}{name}",)))),
    )
    union = _Selection(text=_Text((exact, prefix, inside), needles=(name,)))
    return _Plan(tiers, union, name=name)


def _tibetan_plan(name: str) -> _Plan | None:
    if not name:
        return None
    exact = _Key(f"={name}")
    exact_needle = f"{START}{name}{END}"
    exact_tier = _Tier(RANK_EXACT, _Selection(text=_Text((exact,), needles=(exact_needle,))))
    if name.count(TSHEG) >= MAX_SYLLABLES:
        # Runs longer than the index keys: only the whole name can be looked up.
        return _Plan((exact_tier,), exact_tier.selection, name=name, tibetan=True)
    prefix, inside = _Key(f"^{name}"), _Key(f"~{name}")
    starts = (f"{START}{name}{TSHEG}", exact_needle)
    later = (f"{TSHEG}{name}{TSHEG}", f"{TSHEG}{name}{END}")
    tiers = (
        exact_tier,
        _Tier(RANK_PREFIX, _Selection(text=_Text((prefix,), starts[:1], (exact_needle,)))),
        _Tier(RANK_INSIDE, _Selection(text=_Text((inside,), later, starts))),
    )
    union = _Selection(text=_Text((exact, prefix, inside), needles=starts + later))
    return _Plan(tiers, union, name=name, tibetan=True)


def _key_plan(
    session: Session,
    protector: Protector | None,
    book: str,
    id_number: str | None = None,
    phone: str | None = None,
) -> _Plan:
    exact_ids: set[int] = set()
    id_index = None
    if id_number is not None:
        if protector is None:
            raise ValueError("searching by ID number needs the registry's Protector (its blind-index key)")
        id_index = protector.blind_index(id_number)
        exact_ids.update(
            session.scalars(select(Member.household_id).where(Member.id_number_index == id_index))
        )
    exact_ids.update(session.scalars(select(Household.id).where(Household.book_no == book)))
    tail_ids: set[int] = set()
    if phone is not None:
        phone_ids = set(session.scalars(select(Member.household_id).where(Member.phone == phone)))
        exact_ids.update(phone_ids)
        # A whole number found as typed needs no tail search (which finds it again).
        if 4 <= len(phone) <= 11 and not (phone_ids and len(phone) == 11):
            # The index holds each phone's last four digits; longer tails are checked on the document.
            tail = _Text((_Key(f"#{phone[-4:]}"),), needles=(f"{phone}{PHONE_END}",))
            tail_ids = set(_engine_for(session).text_ids(tail, TOTAL_CAP))
    keys = frozenset(exact_ids)
    # An 18-character ID number is no one's book-number prefix worth ranking.
    partial = _Selection(
        book_prefix=None if id_number is not None else book,
        keys=frozenset(tail_ids - exact_ids),
        exclude_keys=keys,
    )
    tiers = (_Tier(RANK_KEY, _Selection(keys=keys)), _Tier(RANK_PREFIX, partial))
    union = _Selection(book_prefix=partial.book_prefix, keys=keys | partial.keys)
    return _Plan(tiers, union, id_index=id_index, phone=phone, book=book)


# ----------------------------------------------------------------------------------------- ranking


def _rank(
    engine: _Engine, plan: _Plan, filters: _Filters, offset: int, limit: int
) -> tuple[list[tuple[int, int]], int, bool]:
    """The page as (rank, household id) pairs, the total, and whether the total is an estimate."""
    total, rows = engine.union(plan.union, filters)
    if rows is not None:
        # Few enough to rank in memory: one fetch answers the page, and the total is exact.
        ranked = sorted((_rank_of(plan, row), row[1], row[0]) for row in rows)
        return [(rank, hid) for rank, _, hid in ranked[offset : offset + limit]], len(ranked), False

    estimate = total > TOTAL_CAP
    total = min(total, TOTAL_CAP)
    page: list[tuple[int, int]] = []
    if offset >= TOTAL_CAP:
        return page, total, estimate
    skip, need = offset, min(limit, TOTAL_CAP - offset)
    for tier in plan.tiers:
        if need == 0:
            break
        first = engine.first(tier.selection, filters, TIER_LIMIT + 1, skip + need)
        if first is None:
            # Dense. A later page is only worth walking to if the rank reaches it.
            if skip:
                count = engine.count(tier.selection, filters, skip + 1)
                if count <= skip:
                    skip -= count
                    continue
            # Walk the scope in book order, testing each document, until the page is full.
            ids = engine.walk(tier.selection, filters, skip, need)
        else:
            rows, count = first
            if count is not None and count <= skip:
                skip -= count
                continue
            ids = [row[0] for row in rows[skip : skip + need]]
        page.extend((tier.rank, hid) for hid in ids)
        need -= len(ids)
        skip = 0
    return page, total, estimate


def _rank_of(plan: _Plan, row: tuple[int, str, str]) -> int:
    household_id, book_no, doc = row
    for tier in plan.tiers:
        if tier.selection.matches(household_id, book_no, doc):
            return tier.rank
    return RANK_INSIDE  # unreachable: the union is the tiers' union


# ----------------------------------------------------------------------------------------- engines


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (code-point order,
    which is UTF-8 byte order: SQLite's BINARY and PostgreSQL's "C"), or None if there is none."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code == 0xD800:  # surrogates are not characters
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


class _Engine(ABC):
    """The four questions ranking asks, answered with each engine's own index structures."""

    def __init__(self, session: Session):
        self.session = session

    @abstractmethod
    def fetch(
        self, selection: _Selection, filters: _Filters, limit: int, with_doc: bool = False
    ) -> list[tuple[Any, ...]]:
        """Up to ``limit`` matching (id, book_no[, doc]), in no particular order."""
        raise NotImplementedError

    @abstractmethod
    def count(self, selection: _Selection, filters: _Filters, cap: int) -> int:
        """How many match, counting no further than ``cap``."""
        raise NotImplementedError

    def union(self, selection: _Selection, filters: _Filters) -> tuple[int, list[tuple[Any, ...]] | None]:
        """How many match (up to TOTAL_CAP + 1), and their (id, book_no, doc) if no more than
        MATERIALISE_LIMIT."""
        total = self.count(selection, filters, TOTAL_CAP + 1)
        if total > MATERIALISE_LIMIT:
            return total, None
        return total, self.fetch(selection, filters, MATERIALISE_LIMIT + 1, with_doc=True)

    def first(
        self, selection: _Selection, filters: _Filters, limit: int, wanted: int
    ) -> tuple[list[tuple[Any, ...]], int | None] | None:
        """The first ``wanted`` matches in book order, and how many match in all if fewer than
        ``wanted`` (else None); or None when ``limit`` or more match (walk book order instead)."""
        rows = self.fetch(selection, filters, limit)
        if len(rows) >= limit:
            return None
        rows.sort(key=lambda row: row[1])
        return rows[:wanted], len(rows) if len(rows) < wanted else None

    def text_ids(self, match: _Text, limit: int) -> list[int]:
        """Ids of households holding ``match``'s keys and needles, unfiltered (phone tails: a handful)."""
        rows = self.fetch(_Selection(text=match), _Filters(None, ()), limit, with_doc=True)
        return [row[0] for row in rows if any(n in row[2] for n in match.needles)]

    # Shared SQL pieces over the document table ``d``; ``params`` collects the bound values.

    @staticmethod
    def _bind(params: dict[str, Any], value: Any) -> str:
        name = f"p{len(params)}"
        params[name] = value
        return f":{name}"

    @abstractmethod
    def _contains(self, params: dict[str, Any], needle: str) -> str:
        raise NotImplementedError

    def _book_range(self, params: dict[str, Any], prefix: str) -> str:
        parts = [f"d.book_no{self._collate} >= {self._bind(params, prefix)}"]
        upper = _successor(prefix)
        if upper is not None:
            parts.append(f"d.book_no{self._collate} < {self._bind(params, upper)}")
        return "(" + " AND ".join(parts) + ")"

    _collate = ""

    def _scan_conditions(self, selection: _Selection, params: dict[str, Any]) -> list[str]:
        """The selection as plain row tests (no text index): for walking book order."""
        conditions: list[str] = []
        if selection.exclude_keys:
            conditions.append(f"d.household_id NOT IN ({_ints(selection.exclude_keys)})")
        if selection.everything:
            return conditions
        alternatives = []
        if selection.keys:
            alternatives.append(f"d.household_id IN ({_ints(selection.keys)})")
        if selection.book_prefix is not None:
            alternatives.append(self._book_range(params, selection.book_prefix))
        if selection.text is not None:
            alternatives.append(self._needle_test(selection.text, params))
        conditions.append("(" + (" OR ".join(alternatives) or "0 = 1") + ")")
        return conditions

    def _needle_test(self, text_match: _Text, params: dict[str, Any]) -> str:
        """The text match as substring tests on the document (no index)."""
        found = " OR ".join(self._contains(params, n) for n in text_match.needles)
        absent = "".join(f" AND NOT {self._contains(params, n)}" for n in text_match.not_needles)
        return f"(({found}){absent})"

    def _scope_condition(self, scope: _Scope, params: dict[str, Any]) -> str:
        if scope.depth <= 3:
            return f"d.ancestor_{scope.depth} = {self._bind(params, scope.unit_id)}"
        if scope.depth == 4:
            return f"d.liaison_unit_id = {self._bind(params, scope.unit_id)}"
        return self._path_prefix(scope.path, params)

    @abstractmethod
    def _path_prefix(self, path: str, params: dict[str, Any]) -> str:
        raise NotImplementedError

    def _walk_sql(self, selection: _Selection, filters: _Filters, params: dict[str, Any]) -> tuple[str, str]:
        """FROM-clause source and WHERE conditions for walking the scope's book-ordered index."""
        conditions = self._scan_conditions(selection, params) + self._flag_conditions(filters.flags, params)
        if filters.scope is not None:
            conditions.insert(0, self._scope_condition(filters.scope, params))
        return self._ordered_source(filters.scope), " AND ".join(conditions) or "1 = 1"

    @abstractmethod
    def _flag_conditions(self, flags: Sequence[str], params: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def _ordered_source(self, scope: _Scope | None) -> str:
        return "search_households d"

    def walk(self, selection: _Selection, filters: _Filters, offset: int, limit: int) -> list[int]:
        """Matching ids in book order, by walking the book-ordered index of the scope."""
        params: dict[str, Any] = {}
        source, where = self._walk_sql(selection, filters, params)
        sql = (
            f"SELECT d.household_id FROM {source} WHERE {where} "
            f"ORDER BY d.book_no{self._collate} LIMIT {int(limit)} OFFSET {int(offset)}"
        )
        return list(self.session.scalars(text(sql), params))


def _ints(values: Iterable[int]) -> str:
    # Ids read back from the database: integers by construction, safe to inline (and no bound
    # parameter limit to meet for a long list).
    return ", ".join(str(int(v)) for v in sorted(values))


class _Sqlite(_Engine):
    """FTS5 over the keys for counting and fetching; ``search_households`` for walking book order."""

    @staticmethod
    def _token(key: _Key) -> str:
        return '"' + key.token.replace('"', '""') + '"' + (" *" if key.prefix else "")

    def _match(self, selection: _Selection, filters: _Filters) -> str | None:
        """The selection as an FTS5 query over the keys, when the index can answer it: a text
        match, or all households with flags (scattered: a table walk would read them all). Every
        string is one token (only control characters part tokens): nothing in ``q`` is FTS syntax."""
        terms = [f'"@{int(filters.scope.unit_id)}"'] if filters.scope is not None else []
        terms += [f'"!{flag}"' for flag in filters.flags]
        if selection.everything and not selection.exclude_keys and filters.flags:
            return " AND ".join(terms)
        match = selection.text
        if match is None or selection.keys or selection.book_prefix is not None:
            return None
        return " AND ".join(["(" + " OR ".join(self._token(k) for k in match.keys) + ")", *terms])

    # An FTS row is a member (rowid: its id) or a household's head (rowid: minus the household's id).
    _HOUSEHOLD = (
        "CASE WHEN f.rowid < 0 THEN -f.rowid "
        "ELSE (SELECT m.household_id FROM members m WHERE m.id = f.rowid) END"
    )

    def _hits(
        self, selection: _Selection, filters: _Filters, params: dict[str, Any], columns: str
    ) -> str | None:
        """SELECT DISTINCT ``columns`` (over ``d``, the household's search_households row) of the
        households the index finds, less those holding a better rank's needle."""
        expression = self._match(selection, filters)
        if expression is None:
            return None
        params["expression"] = expression
        excluded = ""
        if selection.text is not None and selection.text.not_needles:
            excluded = (
                " AND NOT ("
                + " OR ".join(self._contains(params, n) for n in selection.text.not_needles)
                + ")"
            )
        return (
            f"SELECT DISTINCT {columns} FROM search_households_keys f "
            f"CROSS JOIN search_households d ON d.household_id = {self._HOUSEHOLD} "
            f"WHERE search_households_keys MATCH :expression{excluded}"
        )

    def first(
        self, selection: _Selection, filters: _Filters, limit: int, wanted: int
    ) -> tuple[list[tuple[Any, ...]], int | None] | None:
        # Index rows (members and heads) bound the households from above and cost no lookups to
        # count: ``limit`` of them means walking. Otherwise SQLite sorts the few and keeps the first.
        params: dict[str, Any] = {}
        hits = self._hits(selection, filters, params, "d.household_id, d.book_no")
        if hits is None:
            return super().first(selection, filters, limit, wanted)
        bound = self.session.scalar(
            text(
                "SELECT count(*) FROM (SELECT rowid FROM search_households_keys "
                f"WHERE search_households_keys MATCH :expression LIMIT {int(limit)})"
            ),
            {"expression": params["expression"]},
        )
        if bound >= limit:
            return None
        rows = [
            tuple(row) for row in self.session.execute(text(f"{hits} ORDER BY 2 LIMIT {int(wanted)}"), params)
        ]
        return rows, len(rows) if len(rows) < wanted else None

    def _contains(self, params: dict[str, Any], needle: str) -> str:
        return f"instr(d.doc, {self._bind(params, needle)}) > 0"

    def _path_prefix(self, path: str, params: dict[str, Any]) -> str:
        return f"substr(d.unit_path, 1, {len(path)}) = {self._bind(params, path)}"

    def _flag_conditions(self, flags: Sequence[str], params: dict[str, Any]) -> list[str]:
        return [f"instr(d.flags, {self._bind(params, ' ' + flag)}) > 0" for flag in flags]

    def _ordered_source(self, scope: _Scope | None) -> str:
        # Walking must follow the scope's (scope, book_no) index; SQLite's planner would sometimes
        # rather sort, which reads the whole scope.
        if scope is None or scope.depth > 4:
            return "search_households d INDEXED BY search_households_book_no"
        if scope.depth == 4:
            return "search_households d INDEXED BY search_households_liaison"
        return f"search_households d INDEXED BY search_households_ancestor_{scope.depth}"

    def _filtered(self, selection: _Selection, filters: _Filters, params: dict[str, Any]) -> tuple[str, str]:
        """Source and conditions for probing and counting a non-text selection."""
        conditions = self._scan_conditions(selection, params) + self._flag_conditions(filters.flags, params)
        if filters.scope is not None:
            conditions.append(self._scope_condition(filters.scope, params))
        return "search_households d", " AND ".join(conditions) or "1 = 1"

    def fetch(
        self, selection: _Selection, filters: _Filters, limit: int, with_doc: bool = False
    ) -> list[tuple[Any, ...]]:
        params: dict[str, Any] = {}
        columns = "d.household_id, d.book_no" + (", d.doc" if with_doc else "")
        hits = self._hits(selection, filters, params, columns)
        if hits is not None:
            sql = f"{hits} LIMIT {int(limit)}"
        else:
            source, where = self._filtered(selection, filters, params)
            sql = f"SELECT {columns} FROM {source} WHERE {where} LIMIT {int(limit)}"
        return [tuple(row) for row in self.session.execute(text(sql), params)]

    def count(self, selection: _Selection, filters: _Filters, cap: int) -> int:
        params: dict[str, Any] = {}
        hits = self._hits(selection, filters, params, "d.household_id")
        if hits is not None:
            inner = hits
        else:
            source, where = self._filtered(selection, filters, params)
            inner = f"SELECT 1 FROM {source} WHERE {where}"
        return int(self.session.scalar(text(f"SELECT count(*) FROM ({inner} LIMIT {int(cap)})"), params))


# Above this share of households, reading a key's posting list costs more than testing documents in
# scope order until enough are found (measured at 10^6 people: ~0.3 us per posting, ~1.5 us per row).
DENSE_SHARE = 0.15
# Most rows walking may test rather than fetch a rank's hits through the index.
WALK_ROWS = 20_000
_STATS_SECONDS = 300.0


@dataclass
class _PgStats:
    taken: float
    rows: float = 0.0
    keys: dict[str, float] = field(default_factory=dict)
    unlisted_key: float = 0.0  # a key rarer than any listed: half the rarest listed, as PostgreSQL guesses
    flags: dict[str, float] = field(default_factory=dict)
    # column -> (frequency of each common value, frequency of any other value)
    columns: dict[str, tuple[dict[str, float], float]] = field(default_factory=dict)


_pg_stats: weakref.WeakKeyDictionary[Any, _PgStats] = weakref.WeakKeyDictionary()


class _Postgres(_Engine):
    """One table, ``search_households``: GIN over its keys for sparse matches, the document tested
    row by row in scope order for dense ones, btree for walking book order."""

    _collate = ' COLLATE "C"'

    def __init__(self, session: Session):
        super().__init__(session)
        # Starting parallel workers costs more (~15 ms) than any of these statements; only this
        # transaction is affected.
        session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))

    def _statistics(self) -> _PgStats:
        """Frequencies from ANALYZE (pg_stats), cached a few minutes per engine."""
        engine = self.session.get_bind().engine
        cached = _pg_stats.get(engine)
        if cached is not None and time.monotonic() - cached.taken < _STATS_SECONDS:
            return cached
        stats = _PgStats(time.monotonic())
        row = self.session.execute(
            text(
                "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
                "WHERE tablename = 'search_households_keys' AND attname = 'search_household_keys'"
            )
        ).first()
        if row is not None and row[0] is not None:
            # The frequencies end with the lowest and highest listed one (and the null share).
            stats.keys = dict(zip(row[0], row[1], strict=False))
            stats.unlisted_key = row[1][len(row[0])] / 2 if len(row[1]) > len(row[0]) else 0.0
        stats.rows = float(
            self.session.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'search_households'"))
            or 0
        )
        for name, values, freqs, distinct in self.session.execute(
            text(
                "SELECT attname, most_common_vals::text::text[], most_common_freqs, n_distinct FROM pg_stats "
                "WHERE tablename = 'search_households' AND (attname LIKE 'flag\\_%' "
                "OR attname LIKE 'ancestor\\_%' OR attname = 'liaison_unit_id')"
            )
        ):
            common = dict(zip(values or (), freqs or (), strict=False))
            if name.startswith("flag_"):
                stats.flags[name.removeprefix("flag_")] = common.get("t", 0.0)  # booleans read as t/f
            else:
                # n_distinct < 0 is a share of the rows; the values not listed share what is left.
                distinct = -distinct * stats.rows if distinct < 0 else distinct
                rest = max(0.0, 1.0 - sum(common.values())) / max(1.0, distinct - len(common))
                stats.columns[name] = (common, rest)
        _pg_stats[engine] = stats
        return stats

    def _share(self, selection: _Selection, filters: _Filters) -> float:
        """The share of a scope's households the selection probably holds (scope and match assumed
        independent). Without statistics it is 0: everything then goes through the indexes."""
        if selection.keys or selection.book_prefix is not None:
            return 0.0
        stats = self._statistics()
        share = 1.0
        if selection.text is not None:
            tokens = [self._pg_token(k) for k in selection.text.keys]
            share = min(1.0, sum(stats.keys.get(token, stats.unlisted_key) for token in tokens))
        for flag in filters.flags:
            share *= stats.flags.get(flag, 0.0)
        return share

    def _scope_rows(self, scope: _Scope | None) -> float:
        stats = self._statistics()
        if scope is None:
            return stats.rows
        column = f"ancestor_{scope.depth}" if scope.depth <= 3 else "liaison_unit_id"
        common, rest = stats.columns.get(column, ({}, 0.0))
        return stats.rows * common.get(str(scope.unit_id), rest)

    @staticmethod
    def _like(value: str) -> str:
        return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    @staticmethod
    def _pg_token(key: _Key) -> str:
        # Chinese prefixes and substrings are held up to MAX_PG_CHARACTERS; a longer query looks up
        # its first characters and the document test keeps only true matches.
        return key.token[: 1 + MAX_PG_CHARACTERS] if key.prefix else key.token

    def _contains(self, params: dict[str, Any], needle: str) -> str:
        return f"strpos(d.doc, {self._bind(params, needle)}) > 0"

    def _path_prefix(self, path: str, params: dict[str, Any]) -> str:
        return f"d.unit_path LIKE {self._bind(params, self._like(path) + '%')}"

    def _flag_conditions(self, flags: Sequence[str], params: dict[str, Any]) -> list[str]:
        return [f"d.flag_{flag}" for flag in flags if flag in FLAGS]

    def _where(self, selection: _Selection, filters: _Filters, params: dict[str, Any]) -> str:
        """A sparse text match goes to the key index; a dense one (and the rest) tests rows."""
        conditions: list[str] = []
        match = selection.text
        if match is not None and not selection.keys and selection.book_prefix is None:
            if self._share(selection, filters) >= DENSE_SHARE:
                conditions.append(self._needle_test(match, params))
                params["tested"] = True
            else:
                params["keys"] = [self._pg_token(k) for k in match.keys]
                conditions.append("search_household_keys(d.doc) && CAST(:keys AS text[])")
                if match.not_needles or any(self._pg_token(k) != k.token for k in match.keys):
                    # "None of the better ranks' keys", or a truncated key's check, on the document.
                    conditions.append(self._needle_test(match, params))
        else:
            conditions += self._scan_conditions(selection, params)
        if filters.scope is not None:
            conditions.append(self._scope_condition(filters.scope, params))
        conditions += self._flag_conditions(filters.flags, params)
        return " AND ".join(conditions) or "TRUE"

    def fetch(
        self, selection: _Selection, filters: _Filters, limit: int, with_doc: bool = False
    ) -> list[tuple[Any, ...]]:
        params: dict[str, Any] = {}
        where = self._where(selection, filters, params)
        columns = "d.household_id, d.book_no" + (", d.doc" if with_doc else "")
        sql = (
            f"SELECT {columns} FROM search_households d WHERE {where}{self._order(params)} LIMIT {int(limit)}"
        )
        return [tuple(row) for row in self.session.execute(text(sql), params)]

    def first(
        self, selection: _Selection, filters: _Filters, limit: int, wanted: int
    ) -> tuple[list[tuple[Any, ...]], int | None] | None:
        # Walking meets the first ``wanted`` within wanted / share rows, in scope order (close to the
        # heap's order); fetching reads up to ``limit`` scattered heap pages to find out the count.
        share = self._share(selection, filters)
        if share > 0 and wanted / share <= WALK_ROWS:
            expected = share * self._scope_rows(filters.scope)
            if expected >= limit or wanted / share <= limit / 10:
                return None
        return super().first(selection, filters, limit, wanted)

    def count(self, selection: _Selection, filters: _Filters, cap: int) -> int:
        params: dict[str, Any] = {}
        where = self._where(selection, filters, params)
        inner = f"SELECT 1 FROM search_households d WHERE {where}{self._order(params)} LIMIT {int(cap)}"
        return int(self.session.scalar(text(f"SELECT count(*) FROM ({inner}) hits"), params))

    def _order(self, params: dict[str, Any]) -> str:
        """Documents tested one by one are read along the scope's book-ordered index: with a bare
        LIMIT the planner may scan the table from the start, and a township's households may all
        lie at its end."""
        return f" ORDER BY d.book_no{self._collate}" if params.pop("tested", False) else ""

    def union(self, selection: _Selection, filters: _Filters) -> tuple[int, list[tuple[Any, ...]] | None]:
        # Counting reads the same heap rows as fetching them: unless many are expected, fetch up to
        # the cap at once and rank whatever fits in memory (the ranks need not be counted apart).
        in_memory = min(TOTAL_CAP, 2 * MATERIALISE_LIMIT)
        if self._share(selection, filters) * self._scope_rows(filters.scope) <= 2 * in_memory:
            rows = self.fetch(selection, filters, in_memory + 1, with_doc=True)
            if len(rows) <= in_memory:
                return len(rows), rows
            if in_memory == TOTAL_CAP:
                return len(rows), None
        return self.count(selection, filters, TOTAL_CAP + 1), None


def _engine_for(session: Session) -> _Engine:
    return _Postgres(session) if session.get_bind().dialect.name == "postgresql" else _Sqlite(session)


# ----------------------------------------------------------------------------------------- results


_HOUSEHOLD_COLUMNS = (
    Household.id,
    Household.book_no,
    Household.head_name,
    Household.head_name_bo,
    Household.liaison_unit_id,
    *(getattr(Household, f"flag_{flag}") for flag in FLAGS),
)
_MEMBER_COLUMNS = (
    Member.id,
    Member.household_id,
    Member.name,
    Member.name_bo,
    Member.phone,
    Member.id_number_index,
    Member.id_number_masked,
)


def _items(session: Session, plan: _Plan, ranked: list[tuple[int, int]]) -> list[dict[str, Any]]:
    ids = [hid for _, hid in ranked]
    if not ids:
        return []
    # Plain rows, not ORM objects: a page of results should not pay for identity maps.
    household_rows = session.execute(select(*_HOUSEHOLD_COLUMNS).where(Household.id.in_(ids)))
    households = {row.id: row for row in household_rows}
    members: dict[int, list[Any]] = {hid: [] for hid in ids}
    member_rows = session.execute(
        select(*_MEMBER_COLUMNS).where(Member.household_id.in_(ids)).order_by(Member.id)
    )
    for row in member_rows:
        members[row.household_id].append(row)
    items = []
    for hid in ids:
        household = households.get(hid)
        if household is None:
            continue  # deleted since it was ranked (another transaction committed in between)
        items.append(
            {
                "id": household.id,
                "book_no": household.book_no,
                "head_name": household.head_name,
                "head_name_bo": household.head_name_bo,
                "liaison_unit_id": household.liaison_unit_id,
                "matched": _matched(plan, household, members[hid]),
                "flags": [flag for flag in FLAGS if getattr(household, f"flag_{flag}")],
                "members": len(members[hid]),
            }
        )
    return items


def _name_matches(plan: _Plan, value: str | None) -> bool:
    """The same test as the keys, on one stored name."""
    name = plan.name
    if not value or not name:
        return False
    if plan.tibetan:
        value = value.strip(" " + TSHEG)
        return (
            value == name
            or value.startswith(name + TSHEG)
            or f"{TSHEG}{name}{TSHEG}" in value
            or value.endswith(TSHEG + name)
        )
    return name in re.sub(r"[ \u3000]", "", value)


def _matched(plan: _Plan, household: Any, members: list[Any]) -> list[dict[str, Any]]:
    """Which fields made this household a hit: names, the book number, a phone, an ID number (masked)."""
    matched: list[dict[str, Any]] = []
    if plan.name is not None:
        # A Tibetan query is about the Tibetan names, a Chinese one about the Chinese names.
        head_field, member_field = ("head_name_bo", "name_bo") if plan.tibetan else ("head_name", "name")
        value = getattr(household, head_field)
        if _name_matches(plan, value):
            matched.append({"field": head_field, "value": value})
        for member in members:
            for field_name in (member_field,):
                value = getattr(member, field_name)
                if _name_matches(plan, value):
                    matched.append({"field": field_name, "value": value, "member_id": member.id})
        return matched
    if plan.book is not None and household.book_no.startswith(plan.book):
        matched.append({"field": "book_no", "value": household.book_no})
    for member in members:
        if plan.id_index is not None and member.id_number_index == plan.id_index:
            # Only ever the masked form: the clear number is not stored, and not for every eye.
            matched.append({"field": "id_number", "value": member.id_number_masked, "member_id": member.id})
        if plan.phone is not None and member.phone:
            phone = member.phone.translate(_KEY_SEPARATORS)
            if phone == plan.phone or (len(plan.phone) >= 4 and phone.endswith(plan.phone)):
                matched.append({"field": "phone", "value": member.phone, "member_id": member.id})
    return matched
