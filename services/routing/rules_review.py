"""Reviewing a rules file before it goes live: is it valid, what differs from the rules in force,
and what would change for the reports already stored ("what would change if these rules went live").

``lianhu rules validate|diff|dry-run`` (registered by routing's plugin) prints these; nothing here
writes anywhere.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lianhu.config import KitSettings
from lianhu.db import make_engine, make_read_session_factory
from services.routing.classify import CategoryRule, Rules, RulesError, classify, load_rules
from services.routing.config import routing_settings
from services.routing.models import Case

EXAMPLES_PER_CHANGE = 3


def _terms(rule: CategoryRule) -> set[str]:
    bo = {"".join(syllables) for syllables in (*rule.keywords_bo, *rule.weak_keywords_bo)}
    return {*rule.keywords_zh, *rule.weak_keywords_zh, *bo}


def diff_rules(live: Rules, candidate: Rules) -> list[str]:
    """One line per difference that changes a decision: categories, their urgency, deadlines and
    departments, their keywords, the urgent and general terms, the clock."""
    lines = []
    if live.version != candidate.version:
        lines.append(f"version: {live.version} -> {candidate.version}")
    for code in sorted(live.categories.keys() - candidate.categories.keys()):
        lines.append(f"category removed: {code}")
    for code in sorted(candidate.categories.keys() - live.categories.keys()):
        lines.append(f"category added: {code} ({candidate.categories[code].name_zh})")
    for code in sorted(live.categories.keys() & candidate.categories.keys()):
        old, new = live.categories[code], candidate.categories[code]
        for name in ("default_urgency", "deadline_hours", "department", "name_zh", "name_bo"):
            if getattr(old, name) != getattr(new, name):
                lines.append(f"{code}.{name}: {getattr(old, name)} -> {getattr(new, name)}")
        added, removed = _terms(new) - _terms(old), _terms(old) - _terms(new)
        if added:
            lines.append(f"{code} keywords added: {', '.join(sorted(added))}")
        if removed:
            lines.append(f"{code} keywords removed: {', '.join(sorted(removed))}")
    for name in ("urgent_terms_zh", "urgent_exceptions_zh", "general_terms_zh"):
        old_terms, new_terms = set(getattr(live, name)), set(getattr(candidate, name))
        if old_terms != new_terms:
            lines.append(
                f"{name}: +{sorted(new_terms - old_terms)} -{sorted(old_terms - new_terms)}".replace("'", "")
            )
    if live.default_deadline_hours != candidate.default_deadline_hours:
        lines.append(
            f"default_deadline_hours: {live.default_deadline_hours} -> {candidate.default_deadline_hours}"
        )
    if live.clock != candidate.clock:
        lines.append(f"clock: {live.clock} -> {candidate.clock}")
    return lines


@dataclass
class DryRun:
    """What re-reading the stored reports under the candidate rules would change."""

    reports: int = 0
    changed: int = 0
    categories: Counter = field(default_factory=Counter)
    urgencies: Counter = field(default_factory=Counter)
    departments: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict]] = field(default_factory=dict)

    def as_json(self) -> dict:
        def pairs(counter: Counter) -> list[dict]:
            return [{"from": old, "to": new, "reports": n} for (old, new), n in counter.most_common()]

        return {
            "reports": self.reports,
            "changed": self.changed,
            "categories": pairs(self.categories),
            "urgencies": pairs(self.urgencies),
            "departments": pairs(self.departments),
            "examples": self.examples,
        }


def dry_run(session: Session, live: Rules, candidate: Rules, limit: int | None = None) -> DryRun:
    """Classify every stored report's words (text and transcript) again under ``candidate`` and
    compare with what its case holds now, newest first; departments as ``live`` and ``candidate``
    name them for the case's category before and after."""
    found = DryRun()
    query = (
        select(Case.report_id, Case.category, Case.urgency, Case.text, Case.transcript, Case.summary)
        .order_by(Case.routed_at.desc())
        .limit(limit)
        .execution_options(yield_per=1000)
    )
    for row in session.execute(query):
        found.reports += 1
        words = " ".join(part for part in (row.text or "", row.transcript or "") if part)
        now = classify(words, candidate)
        moved = []
        if now.category != row.category:
            found.categories[(row.category, now.category)] += 1
            moved.append(f"{row.category}->{now.category}")
        before = live.categories[row.category].department if row.category in live.categories else None
        after = candidate.department_for(now.category)
        if before != after:
            found.departments[(before or "-", after or "-")] += 1
            moved.append(f"department {before or '-'}->{after or '-'}")
        if now.urgency != row.urgency:
            found.urgencies[(row.urgency, now.urgency)] += 1
            moved.append(f"{row.urgency}->{now.urgency}")
        if moved:
            found.changed += 1
            shown = found.examples.setdefault(" ".join(moved), [])
            if len(shown) < EXAMPLES_PER_CHANGE:
                shown.append({"report_id": row.report_id, "summary": row.summary})
    return found


# --- the command line -------------------------------------------------------------------------------


def _load(path: str) -> Rules | None:
    try:
        return load_rules(path)
    except RulesError as error:
        print(f"invalid: {error}", file=sys.stderr)
        return None


def _live() -> Rules:
    return load_rules(routing_settings().rules_path)


def cmd_validate(args, settings: KitSettings) -> int:
    rules = _load(args.path)
    if rules is None:
        return 1
    terms = sum(len(_terms(rule)) for rule in rules.categories.values())
    print(f"valid: version {rules.version}, {len(rules.categories)} categories, {terms} keywords")
    return 0


def cmd_diff(args, settings: KitSettings) -> int:
    candidate = _load(args.path)
    if candidate is None:
        return 1
    lines = diff_rules(_live(), candidate)
    print("\n".join(lines) if lines else "no difference from the rules in force")
    return 0


def cmd_dry_run(args, settings: KitSettings) -> int:
    candidate = _load(args.path)
    if candidate is None:
        return 1
    engine = make_engine(settings.database_url("routing"))
    try:
        with make_read_session_factory(engine)() as session:
            found = dry_run(session, _live(), candidate, args.limit)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(found.as_json(), ensure_ascii=False))
        return 0
    print(f"{found.changed} of {found.reports} stored reports would change under {candidate.version}")
    for title, counter in (("category", found.categories), ("urgency", found.urgencies)):
        for (old, new), count in counter.most_common():
            print(f"  {title} {old} -> {new}: {count}")
    for (old, new), count in found.departments.most_common():
        print(f"  department {old} -> {new}: {count}")
    for change, shown in found.examples.items():
        for example in shown:
            print(f"  e.g. {change}: {example['report_id']} {example['summary']}")
    return 0


def register(commands: Any) -> None:
    """``lianhu rules validate|diff|dry-run PATH``."""
    rules = commands.add_parser("rules", help="review a rules file before it goes live").add_subparsers(
        dest="rules_command", required=True
    )
    validate = rules.add_parser("validate", help="check a rules file")
    validate.set_defaults(run=cmd_validate)
    diff = rules.add_parser("diff", help="what differs from the rules in force (LIANHU_RULES_PATH)")
    diff.set_defaults(run=cmd_diff)
    dry = rules.add_parser("dry-run", help="what would change for the stored reports")
    dry.add_argument("--limit", type=int, default=None, help="only the newest N reports")
    dry.add_argument("--json", action="store_true", help="one JSON object")
    dry.set_defaults(run=cmd_dry_run)
    for parser in (validate, diff, dry):
        parser.add_argument("path", type=Path, help="the candidate rules file (YAML)")
