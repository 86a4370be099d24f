"""Classify a liaison worker's report into a category and an urgency, with the evidence.

Framework-free on purpose: the routing service, the dry-run endpoint and the tests all call
``load_rules`` once and ``classify`` per report. The rules (keywords, urgency, departments,
deadlines) live in ``rules.yaml`` beside this module so county staff can review them.

Chinese is matched as substrings of the space-stripped text (speech transcripts are space-separated
words, and re-segmenting them is less robust than plain substrings). Tibetan is matched on whole
syllables, because a keyword such as ཁ་བ (snow) must not fire inside ཁ་བཏགས (khata).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from lianhu.events import MatchedTerm
from services.routing.clock import URGENCIES, ClockRules, parse_clock_rules

__all__ = [
    "CATEGORY_CODES",
    "DEPARTMENTS",
    "DEFAULT_RULES_PATH",
    "TIE_BREAK_ORDER",
    "URGENCIES",
    "CategoryRule",
    "Classification",
    "Rules",
    "RulesError",
    "classify",
    "load_rules",
    "normalise_tibetan",
]

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.yaml")

CATEGORY_CODES: tuple[str, ...] = (
    "dispute",
    "grassland_boundary",
    "safety_hazard",
    "weather_disaster",
    "house_collapse",
    "illness",
    "livestock",
    "population_movement",
    "ecology",
    "livelihood",
    "infrastructure",
    "policy",
    "suggestion",
    "other",
)

# Equal scores go to whatever threatens life and shelter first: a wrong "house collapse" costs a
# visit, a missed one can cost a family in winter.
TIE_BREAK_ORDER: tuple[str, ...] = (
    "house_collapse",
    "weather_disaster",
    "safety_hazard",
    "illness",
    "dispute",
    "grassland_boundary",
    "livestock",
    "population_movement",
    "infrastructure",
    "livelihood",
    "ecology",
    "policy",
    "suggestion",
    "other",
)

# The county departments the registry knows; a rules file may name no other.
DEPARTMENTS: dict[str, str] = {
    "emergency": "应急管理局",
    "agriculture": "农牧局",
    "health": "卫生健康局",
    "civil_affairs": "民政局",
    "public_security": "公安局",
    "natural_resources": "自然资源局",
    "forestry_grassland": "林业和草原局",
    "housing": "住房和城乡建设局",
    "justice": "司法局",
    "transport": "交通运输局",
}

_TOP_LEVEL_KEYS = {
    "version",
    "default_deadline_hours",
    "urgent_terms",
    "urgent_exceptions",
    "general_terms",
    "categories",
    "clock",
}
_CATEGORY_KEYS = {
    "name_zh",
    "name_bo",
    "default_urgency",
    "deadline_hours",
    "department",
    "keywords",
    "weak_keywords",
}
_LANGUAGES = ("zh", "bo")
_WEAK_WEIGHT = 1


class RulesError(ValueError):
    """The rules file is unreadable or invalid; the message names the file and the problem."""


# --- Tibetan text ------------------------------------------------------------------------------------

_TSHEG = "\u0f0b"
_NBSP_TSHEG = "\u0f0c"
# Characters that belong inside a syllable: letters, vowel signs and marks, subjoined letters,
# digits and the few marks that attach to a letter. Everything else in the block (shad, head marks,
# brackets, the tsheg itself) separates syllables.
_SYLLABLE_CHARS = (
    "\u0f00\u0f20-\u0f33\u0f35\u0f37\u0f39\u0f3e\u0f3f\u0f40-\u0f6c\u0f71-\u0f84\u0f86-\u0fbc\u0fc6"
)
_SYLLABLE_RE = re.compile(f"[{_SYLLABLE_CHARS}]+")
# A stretch of Tibetan (with spaces): a keyword may run across spaces and shad, not across Chinese.
_TIBETAN_RUN_RE = re.compile(r"[\u0f00-\u0fff][\u0f00-\u0fff\s]*")
_TIBETAN_LETTER_RE = re.compile("[\u0f40-\u0f6c\u0f90-\u0fbc]")
_HAN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")

# Case particles that fuse with an open final syllable (ཁ་བ + ས = ཁ་བས "by the snow").
_FUSED_PARTICLES = ("འི", "འོ", "འམ", "འང", "ས", "ར")
_VOWEL_SIGNS = {chr(c) for c in range(0x0F71, 0x0F7E)} | {"\u0f80", "\u0f81"}


def _is_base_letter(char: str) -> bool:
    return "\u0f40" <= char <= "\u0f6c"


def _is_subjoined(char: str) -> bool:
    return "\u0f8d" <= char <= "\u0fbc"


def _is_open_syllable(syllable: str) -> bool:
    """True when a syllable ends without a suffix letter, so ས/ར/འི can fuse onto it.

    Conservative: a closed syllable such as ལུག must never stem from ལུགས (a different word).
    """
    last = syllable[-1]
    if last in _VOWEL_SIGNS or _is_subjoined(last):
        return True
    return sum(1 for char in syllable if _is_base_letter(char)) == 1


def _stem(syllable: str) -> str | None:
    for particle in _FUSED_PARTICLES:
        if len(syllable) > len(particle) and syllable.endswith(particle):
            root = syllable[: -len(particle)]
            if _is_open_syllable(root):
                return root
    return None


def _tibetan_runs(text: str) -> list[list[str]]:
    normalised = unicodedata.normalize("NFC", text).replace(_NBSP_TSHEG, _TSHEG)
    runs = []
    for run in _TIBETAN_RUN_RE.findall(normalised):
        syllables = _SYLLABLE_RE.findall(run)
        if syllables:
            runs.append(syllables)
    return runs


def normalise_tibetan(text: str) -> list[str]:
    """The Tibetan syllables of ``text``: NFC, ༌ read as ་, shad and other punctuation dropped."""
    return [syllable for run in _tibetan_runs(text) for syllable in run]


def _detect_language(text: str) -> str:
    han = len(_HAN_RE.findall(text))
    tibetan = len(_TIBETAN_LETTER_RE.findall(text))
    # A stray character of the other script (a name, a typo) does not make a report mixed.
    if han >= 2 and tibetan >= 2:
        return "mixed"
    if han == 0 and tibetan == 0:
        return "unknown"
    return "zh" if han >= tibetan else "bo"


# --- Rules -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryRule:
    code: str
    name_zh: str
    name_bo: str
    default_urgency: str
    deadline_hours: dict[str, int]
    department: str | None
    keywords_zh: tuple[str, ...]
    keywords_bo: tuple[tuple[str, ...], ...]  # syllable tuples, already normalised
    # Count 1 each: nouns that say where a report happens (房子, 草场), not what happened.
    weak_keywords_zh: tuple[str, ...] = ()
    weak_keywords_bo: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class _Term:
    """One entry of the compiled matcher."""

    kind: str  # "keyword" | "urgent" | "exception" | "general"
    category: str | None
    text: str  # as written in the rules (Tibetan re-joined with ་)
    language: str
    size: int  # characters (zh) or syllables (bo): the span it covers
    weight: int


@dataclass(frozen=True)
class _Hit:
    term: _Term
    start: int
    end: int


class _Matcher:
    """Every term of the rules, indexed by first character / first syllable.

    Built once per ``Rules``; a report then costs one dictionary lookup per character or syllable.
    """

    def __init__(self) -> None:
        self._zh: dict[str, list[_Term]] = {}
        self._bo: dict[str, list[tuple[tuple[str, ...], _Term]]] = {}

    def add_zh(self, text: str, kind: str, category: str | None, weight: int | None = None) -> None:
        term = _Term(kind, category, text, "zh", len(text), len(text) if weight is None else weight)
        self._zh.setdefault(text[0], []).append(term)

    def add_bo(
        self, syllables: tuple[str, ...], kind: str, category: str | None, weight: int | None = None
    ) -> None:
        # One Tibetan syllable carries about as much meaning as two Chinese characters.
        weight = len(syllables) + 1 if weight is None else weight
        term = _Term(kind, category, _TSHEG.join(syllables), "bo", len(syllables), weight)
        self._bo.setdefault(syllables[0], []).append((syllables, term))

    def find(self, text: str) -> list[_Hit]:
        hits: list[_Hit] = []
        compact = "".join(text.split())
        for start, char in enumerate(compact):
            for term in self._zh.get(char, ()):
                if compact.startswith(term.text, start):
                    hits.append(_Hit(term, start, start + term.size))
        offset = 0
        for run in _tibetan_runs(text):
            stems = [_stem(syllable) for syllable in run]
            for index, syllable in enumerate(run):
                for syllables, term in self._bo.get(syllable, ()):
                    if self._matches_at(run, stems, index, syllables):
                        hits.append(_Hit(term, offset + index, offset + index + term.size))
                stem = stems[index]
                if stem is not None:
                    # A fused particle ends the word, so only one-syllable keywords can start here.
                    for syllables, term in self._bo.get(stem, ()):
                        if len(syllables) == 1:
                            hits.append(_Hit(term, offset + index, offset + index + 1))
            offset += len(run) + 1  # the gap keeps runs from touching
        return hits

    @staticmethod
    def _matches_at(run: list[str], stems: list[str | None], index: int, syllables: tuple[str, ...]) -> bool:
        last = index + len(syllables) - 1
        if last >= len(run):
            return False
        for offset in range(1, len(syllables) - 1):
            if run[index + offset] != syllables[offset]:
                return False
        if len(syllables) == 1:
            return True
        return run[last] == syllables[-1] or stems[last] == syllables[-1]


@dataclass(frozen=True)
class Rules:
    version: str
    default_deadline_hours: int
    categories: dict[str, CategoryRule]
    urgent_terms_zh: tuple[str, ...] = ()
    urgent_terms_bo: tuple[tuple[str, ...], ...] = ()
    urgent_exceptions_zh: tuple[str, ...] = ()
    urgent_exceptions_bo: tuple[tuple[str, ...], ...] = ()
    general_terms_zh: tuple[str, ...] = ()
    general_terms_bo: tuple[tuple[str, ...], ...] = ()
    clock: ClockRules = field(default_factory=ClockRules)
    _matcher: _Matcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        matcher = _Matcher()
        for rule in self.categories.values():
            for text in rule.keywords_zh:
                matcher.add_zh(text, "keyword", rule.code)
            for syllables in rule.keywords_bo:
                matcher.add_bo(syllables, "keyword", rule.code)
            for text in rule.weak_keywords_zh:
                matcher.add_zh(text, "keyword", rule.code, weight=_WEAK_WEIGHT)
            for syllables in rule.weak_keywords_bo:
                matcher.add_bo(syllables, "keyword", rule.code, weight=_WEAK_WEIGHT)
        lists = (
            ("urgent", self.urgent_terms_zh, self.urgent_terms_bo),
            ("exception", self.urgent_exceptions_zh, self.urgent_exceptions_bo),
            ("general", self.general_terms_zh, self.general_terms_bo),
        )
        for kind, zh_terms, bo_terms in lists:
            for text in zh_terms:
                matcher.add_zh(text, kind, None)
            for syllables in bo_terms:
                matcher.add_bo(syllables, kind, None)
        object.__setattr__(self, "_matcher", matcher)

    def _category(self, category: str) -> CategoryRule:
        try:
            return self.categories[category]
        except KeyError:
            raise KeyError(f"unknown category {category!r} (rules {self.version})") from None

    def deadline_for(self, category: str, urgency: str) -> timedelta:
        if urgency not in URGENCIES:
            raise ValueError(f"urgency must be one of {', '.join(URGENCIES)}, not {urgency!r}")
        return timedelta(hours=self._category(category).deadline_hours[urgency])

    def department_for(self, category: str) -> str | None:
        return self._category(category).department


@dataclass(frozen=True)
class Classification:
    category: str
    urgency: str
    matched: list[MatchedTerm]
    language: str
    explanation: str


# --- Loading and validation --------------------------------------------------------------------------


def _require_mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RulesError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _reject_unknown_keys(value: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise RulesError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _positive_hours(value: Any, where: str) -> int:
    # bool is an int in Python; `yes` in YAML must not become a one-hour deadline.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RulesError(f"{where}: hours must be a positive whole number, got {value!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RulesError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _term_lists(value: Any, where: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Parse ``{zh: [...], bo: [...]}`` into Chinese strings and Tibetan syllable tuples."""
    if value is None:
        return (), ()
    mapping = _require_mapping(value, where)
    _reject_unknown_keys(mapping, set(_LANGUAGES), where)
    zh_terms: list[str] = []
    for position, raw in enumerate(mapping.get("zh") or ()):
        spot = f"{where}.zh[{position}]"
        term = _string(raw, spot)
        if any(char.isspace() for char in term):
            raise RulesError(f"{spot}: {term!r} contains a space; reports are matched with spaces removed")
        if re.search("[\u0f00-\u0fff]", term):
            raise RulesError(f"{spot}: {term!r} is Tibetan; put it under bo")
        if term in zh_terms:
            raise RulesError(f"{spot}: {term!r} is listed twice")
        zh_terms.append(term)
    bo_terms: list[tuple[str, ...]] = []
    for position, raw in enumerate(mapping.get("bo") or ()):
        spot = f"{where}.bo[{position}]"
        term = _string(raw, spot)
        if re.search(r"[^\u0f00-\u0fff\s]", term):
            raise RulesError(f"{spot}: {term!r} contains non-Tibetan characters")
        syllables = tuple(normalise_tibetan(term))
        if not syllables:
            raise RulesError(f"{spot}: {term!r} has no Tibetan syllable")
        if syllables in bo_terms:
            raise RulesError(f"{spot}: {term!r} is listed twice")
        bo_terms.append(syllables)
    return tuple(zh_terms), tuple(bo_terms)


def _category_rule(code: str, raw: Any, default_hours: int) -> CategoryRule:
    where = f"categories.{code}"
    spec = _require_mapping(raw, where)
    _reject_unknown_keys(spec, _CATEGORY_KEYS, where)
    for key in ("name_zh", "name_bo", "default_urgency", "department", "keywords"):
        if key not in spec:
            raise RulesError(f"{where}: missing {key!r}")
    urgency = spec["default_urgency"]
    if urgency not in URGENCIES:
        raise RulesError(f"{where}.default_urgency: {urgency!r} is not one of {', '.join(URGENCIES)}")
    hours_spec = _require_mapping(spec.get("deadline_hours") or {}, f"{where}.deadline_hours")
    _reject_unknown_keys(hours_spec, set(URGENCIES), f"{where}.deadline_hours")
    general = _positive_hours(hours_spec.get("general", default_hours), f"{where}.deadline_hours.general")
    urgent = _positive_hours(hours_spec.get("urgent", general), f"{where}.deadline_hours.urgent")
    if urgent > general:
        raise RulesError(f"{where}.deadline_hours: urgent ({urgent} h) is longer than general ({general} h)")
    department = spec["department"]
    if department is not None and department not in DEPARTMENTS:
        raise RulesError(
            f"{where}.department: unknown department {department!r}; known: {', '.join(DEPARTMENTS)}"
        )
    keywords_zh, keywords_bo = _term_lists(spec["keywords"], f"{where}.keywords")
    weak_zh, weak_bo = _term_lists(spec.get("weak_keywords"), f"{where}.weak_keywords")
    return CategoryRule(
        code=code,
        name_zh=_string(spec["name_zh"], f"{where}.name_zh"),
        name_bo=_string(spec["name_bo"], f"{where}.name_bo"),
        default_urgency=urgency,
        deadline_hours={"general": general, "urgent": urgent},
        department=department,
        keywords_zh=keywords_zh,
        keywords_bo=keywords_bo,
        weak_keywords_zh=weak_zh,
        weak_keywords_bo=weak_bo,
    )


def _reject_shared_keywords(categories: Iterable[CategoryRule]) -> None:
    # One keyword, two categories: the score would be a coin toss, so make the reviewer choose.
    owner: dict[tuple[str, object], str] = {}
    for rule in categories:
        terms: list[tuple[str, object]] = [("zh", term) for term in rule.keywords_zh + rule.weak_keywords_zh]
        terms += [("bo", term) for term in rule.keywords_bo + rule.weak_keywords_bo]
        for language, term in terms:
            key = (language, term)
            if key in owner:
                shown = term if isinstance(term, str) else _TSHEG.join(term)
                where = (
                    f"both keywords and weak_keywords of {rule.code}"
                    if owner[key] == rule.code
                    else f"both {owner[key]} and {rule.code}"
                )
                raise RulesError(f"keyword {shown!r} ({language}) is listed under {where}")
            owner[key] = rule.code


def _parse_rules(data: Any) -> Rules:
    spec = _require_mapping(data, "rules file")
    _reject_unknown_keys(spec, _TOP_LEVEL_KEYS, "rules file")
    version = spec.get("version")
    if not isinstance(version, str) or not version.strip():
        raise RulesError(f'version: expected a quoted string such as "2026.11-1", got {version!r}')
    default_hours = _positive_hours(spec.get("default_deadline_hours"), "default_deadline_hours")
    raw_categories = _require_mapping(spec.get("categories"), "categories")
    unknown = sorted(str(code) for code in raw_categories if code not in CATEGORY_CODES)
    if unknown:
        raise RulesError(f"categories: unknown category code(s) {', '.join(unknown)}")
    missing = [code for code in CATEGORY_CODES if code not in raw_categories]
    if missing:
        raise RulesError(f"categories: missing category code(s) {', '.join(missing)}")
    categories = {code: _category_rule(code, raw_categories[code], default_hours) for code in CATEGORY_CODES}
    _reject_shared_keywords(categories.values())
    urgent_zh, urgent_bo = _term_lists(spec.get("urgent_terms"), "urgent_terms")
    exceptions_zh, exceptions_bo = _term_lists(spec.get("urgent_exceptions"), "urgent_exceptions")
    general_zh, general_bo = _term_lists(spec.get("general_terms"), "general_terms")
    try:
        clock = parse_clock_rules(spec.get("clock"))
    except ValueError as error:
        raise RulesError(str(error)) from None
    return Rules(
        version=version.strip(),
        default_deadline_hours=default_hours,
        categories=categories,
        urgent_terms_zh=urgent_zh,
        urgent_terms_bo=urgent_bo,
        urgent_exceptions_zh=exceptions_zh,
        urgent_exceptions_bo=exceptions_bo,
        general_terms_zh=general_zh,
        general_terms_bo=general_bo,
        clock=clock,
    )


def load_rules(path: str | Path | None = None) -> Rules:
    """Load and validate a rules file; ``None`` loads the packaged ``rules.yaml``."""
    source = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError(f"{source}: cannot read the rules file: {error}") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RulesError(f"{source}: not valid YAML: {error}") from error
    try:
        return _parse_rules(data)
    except RulesError as error:
        raise RulesError(f"{source}: {error}") from None


# --- Classification ----------------------------------------------------------------------------------


def _drop_covered(hits: list[_Hit], covering: list[_Hit], *, same_span_covers: bool = False) -> list[_Hit]:
    """Drop hits lying inside a longer covering hit: 草场纠纷 speaks for itself, not also as 纠纷.

    With ``same_span_covers`` a covering hit of equal span also drops (an exception phrase that is
    exactly the urgent word). Sorted spans and a running maximum keep a pasted essay from going
    quadratic.
    """
    reach: dict[str, tuple[list[int], list[int]]] = {}
    for language in {other.term.language for other in covering}:
        spans = sorted((other.start, other.end) for other in covering if other.term.language == language)
        furthest, ends = -1, []
        for _, end in spans:
            furthest = max(furthest, end)
            ends.append(furthest)
        reach[language] = ([start for start, _ in spans], ends)
    kept = []
    for hit in hits:
        starts, ends = reach.get(hit.term.language, ([], []))
        before = bisect_left(starts, hit.start)
        if before and ends[before - 1] >= hit.end:
            continue  # a hit starting earlier reaches past this one
        upto = bisect_right(starts, hit.start)
        if upto > before and (ends[upto - 1] > hit.end or (same_span_covers and ends[upto - 1] >= hit.end)):
            continue  # a hit starting here runs further (or, for exceptions, as far)
        kept.append(hit)
    return kept


def _distinct(hits: Iterable[_Hit]) -> list[_Term]:
    # A word repeated in one report is one piece of evidence, not several.
    seen: dict[tuple[str, str], _Term] = {}
    for hit in hits:
        seen.setdefault((hit.term.language, hit.term.text), hit.term)
    return list(seen.values())


def _quoted(terms: Iterable[_Term]) -> str:
    return "、".join(f"「{term.text}」" for term in terms)


def _listed(terms: Iterable[_Term]) -> str:
    return ", ".join(term.text for term in terms)


def classify(text: str, rules: Rules) -> Classification:
    """Category, urgency and the evidence for one report (Chinese, Tibetan or both)."""
    other = rules.categories["other"]
    if not text or not text.strip():
        return Classification(
            category="other",
            urgency=other.default_urgency,
            matched=[],
            language="unknown",
            explanation="空文本，归为「其他」，一般。 / Empty text: other, general.",
        )
    language = _detect_language(text)
    hits = rules._matcher.find(text)
    by_kind: dict[str, list[_Hit]] = {"keyword": [], "urgent": [], "exception": [], "general": []}
    for hit in hits:
        by_kind[hit.term.kind].append(hit)

    keyword_hits = _drop_covered(by_kind["keyword"], by_kind["keyword"])
    urgent_hits = _drop_covered(by_kind["urgent"], by_kind["urgent"])
    # An exception phrase (暂无人员伤亡) cancels the urgent words it contains, even at equal length.
    urgent_hits = _drop_covered(urgent_hits, by_kind["exception"], same_span_covers=True)
    general_hits = _drop_covered(by_kind["general"], by_kind["general"])

    keywords = _distinct(keyword_hits)
    scores: dict[str, int] = {}
    for term in keywords:
        code = term.category or "other"
        scores[code] = scores.get(code, 0) + term.weight
    if scores:
        best = max(scores.values())
        tied = [code for code in TIE_BREAK_ORDER if scores.get(code) == best]
        category = tied[0]
    else:
        tied = []
        category = "other"
    rule = rules.categories[category]

    urgent_terms = _distinct(urgent_hits)
    general_terms = _distinct(general_hits)
    urgency = "urgent" if urgent_terms else rule.default_urgency
    # Question wording only ever confirms "general"; it never lowers a life-and-safety default.
    kept_general = bool(general_terms) and not urgent_terms and rule.default_urgency == "general"

    decisive = sorted((term for term in keywords if term.category == category), key=lambda t: -t.weight)
    # Runners-up stay in the evidence so a reviewer sees what else the text looked like.
    others = sorted(
        (term for term in keywords if term.category != category),
        key=lambda t: (-scores[t.category or "other"], -t.weight),
    )
    matched = [
        MatchedTerm(category=term.category or category, term=term.text, language=term.language)
        for term in decisive + others
    ]
    matched += [
        MatchedTerm(category=category, term=term.text, language=term.language, urgent=True)
        for term in urgent_terms
    ]
    if kept_general:
        listed = {(entry.term, entry.language) for entry in matched}
        matched += [
            MatchedTerm(category=category, term=term.text, language=term.language)
            for term in general_terms
            if (term.text, term.language) not in listed
        ]

    explanation = _explain(rule, decisive, tied, urgency, urgent_terms, general_terms if kept_general else [])
    return Classification(
        category=category, urgency=urgency, matched=matched, language=language, explanation=explanation
    )


def _explain(
    rule: CategoryRule,
    decisive: list[_Term],
    tied: list[str],
    urgency: str,
    urgent_terms: list[_Term],
    general_terms: list[_Term],
) -> str:
    if decisive:
        why_zh = f"依据关键词{_quoted(decisive)}"
        why_en = f"matched {_listed(decisive)}"
        if len(tied) > 1:
            why_zh += f"（与{'、'.join(tied[1:])}同分，按生命安全优先）"
            why_en += f" (tied with {', '.join(tied[1:])}; life-and-safety first)"
    else:
        why_zh, why_en = "未匹配任何类别关键词", "no category keyword matched"
    if urgent_terms:
        urgency_zh = f"紧急，因出现紧急词{_quoted(urgent_terms)}"
        urgency_en = f"urgent because of {_listed(urgent_terms)}"
    elif general_terms:
        urgency_zh = f"一般，咨询用语{_quoted(general_terms)}且无紧急词"
        urgency_en = f"general: question wording ({_listed(general_terms)}) and no urgent term"
    elif urgency == "urgent":
        urgency_zh, urgency_en = "紧急（该类别默认紧急）", "urgent by the category default"
    else:
        urgency_zh, urgency_en = "一般（类别默认，无紧急词）", "general: category default, no urgent term"
    return (
        f"归为「{rule.name_zh}」（{rule.code}），{why_zh}；{urgency_zh}。"
        f" / Category {rule.code}: {why_en}; {urgency_en}."
    )
