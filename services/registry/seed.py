"""The demo county: a Gande-like org tree, staff, households and members, built deterministically.

Everything drawn at random comes from seeded ``random.Random`` generators, so two runs with the same seed
give the same names, sizes, ID numbers and ids on any engine (only the account passwords and the ID
ciphertexts differ: secrets and AES-GCM nonces). The org tree goes in with bulk INSERT ... RETURNING;
households go through :func:`records.apply_households`, the same bulk write path (and the same
encryption, blind index and masking) as the API and the importer, so the seed takes seconds.

All people, phones, ID numbers, household-book numbers, herds and coordinates are invented. Unit names
in Tibetan are filled in only where certain; the others are left null for local staff to correct on
import.
"""

from __future__ import annotations

import json
import os
import random
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

from lianhu.config import KitSettings
from lianhu.db import make_engine, make_session_factory
from services.registry import queries, records
from services.registry.config import RegistrySettings
from services.registry.idnumber import check_character
from services.registry.models import LEVEL_OF_KIND, OrgUnit, Person, Position
from services.registry.protection import Protector
from services.registry.schemas import Actor, HouseholdIn, LivestockIn, MemberIn

COUNTY_NAME = "甘德县"
COUNTY_NAME_BO = "གད་སྡེ་རྫོང་"
COUNTY_ADMIN_CODE = "632623"  # GB/T 2260 code of Gande County, the prefix of its household books

DEPARTMENTS = (
    ("emergency", "应急管理局"),
    ("agriculture", "农牧局"),
    ("health", "卫生健康局"),
    ("civil_affairs", "民政局"),
    ("public_security", "公安局"),
    ("natural_resources", "自然资源局"),
    ("forestry_grassland", "林业和草原局"),
    ("housing", "住房和城乡建设局"),
    ("justice", "司法局"),
    ("transport", "交通运输局"),
)


@dataclass(frozen=True)
class TownshipSpec:
    name: str
    slug: str  # ASCII, for unit codes and usernames
    book_prefix: str  # household-book numbers: 632623-<prefix>-000123
    centre: tuple[float, float]  # synthetic lat/lon the demo households scatter around


# Coordinates are invented around the county seat (about 33.97 N, 99.90 E), not surveyed.
TOWNSHIPS = (
    TownshipSpec("柯曲镇", "kequ", "KQ", (33.97, 99.90)),
    TownshipSpec("上贡麻乡", "shanggongma", "SG", (34.10, 99.75)),
    TownshipSpec("下贡麻乡", "xiagongma", "XG", (34.05, 100.05)),
    TownshipSpec("岗龙乡", "ganglong", "GL", (33.80, 99.70)),
    TownshipSpec("青珍乡", "qingzhen", "QZ", (33.85, 100.10)),
    TownshipSpec("江千乡", "jiangqian", "JQ", (33.70, 100.20)),
    TownshipSpec("下藏科乡", "xiazangke", "XZ", (34.20, 99.95)),
)

# Jiangqian's published figures; the demo reproduces them exactly.
JIANGQIAN = "jiangqian"
JIANGQIAN_VILLAGES = 4
JIANGQIAN_LIAISON_WORKERS = 242
JIANGQIAN_HOUSEHOLDS = 1136
JIANGQIAN_PEOPLE = 4292

# Name parts (Chinese transcription, Tibetan script). Pastoral Tibetans carry no surname: a name is
# two parts, and the second part usually marks the sex (卓玛, 拉毛, 措毛 ... are women's names).
PARTS = {
    "扎西": "བཀྲ་ཤིས",
    "卓玛": "སྒྲོལ་མ",
    "才让": "ཚེ་རིང",
    "多杰": "རྡོ་རྗེ",
    "拉毛": "ལྷ་མོ",
    "尼玛": "ཉི་མ",
    "达娃": "ཟླ་བ",
    "索南": "བསོད་ནམས",
    "旦增": "བསྟན་འཛིན",
    "桑杰": "སངས་རྒྱས",
    "更登": "དགེ་འདུན",
    "才旦": "ཚེ་བརྟན",
    "仁青": "རིན་ཆེན",
    "洛桑": "བློ་བཟང",
    "格桑": "སྐལ་བཟང",
    "央金": "དབྱངས་ཅན",
    "措毛": "མཚོ་མོ",
    "吉毛": "སྐྱིད་མོ",
    "白玛": "པད་མ",
    "益西": "ཡེ་ཤེས",
    "江央": "འཇམ་དབྱངས",
    "诺布": "ནོར་བུ",
}


MOBILE_PREFIXES = ("139", "147", "158", "177", "189", "199")


def invented_phone(rng: random.Random, taken: set[str]) -> str:
    """A made-up number in the mobile format (1xx xxxx xxxx), not in ``taken`` (which it joins)."""
    while True:
        number = f"{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"
        if number not in taken:
            taken.add(number)
            return number


def _parts(text: str) -> tuple[str, ...]:
    return tuple(text.split())


MALE_FIRST = _parts("扎西 才让 尼玛 达娃 索南 旦增 桑杰 更登 仁青 洛桑 格桑 益西 江央")
MALE_SECOND = _parts("多杰 尼玛 才旦 扎西 达娃 桑杰 诺布 旦增 仁青")
FEMALE_FIRST = _parts("才让 尼玛 达娃 索南 格桑 白玛 央金 扎西 旦增 益西 仁青")
FEMALE_SECOND = _parts("卓玛 拉毛 措毛 吉毛 央金 白玛")

# Household sizes for the smaller townships (mean about 4); Jiangqian's are then fitted to its total.
SIZE_WEIGHTS = {1: 4, 2: 12, 3: 22, 4: 27, 5: 18, 6: 10, 7: 5, 8: 2}
MAX_HOUSEHOLD_SIZE = 10
CURRENT_YEAR = 2026

CHINESE_ORDINALS = "一二三四五六七八九十"

# Members' details beyond the tree's draws (ID numbers, ethnicity, herds, flags) come from a second
# generator, so adding them left every name, size and id of the original demo as it was.
DETAILS_SEED_SUFFIX = "household-details"
# No demo birth date after this day: the data stays valid whatever day the seed is run on.
LATEST_BIRTH = date(CURRENT_YEAR, 6, 30)
ETHNICITY_WEIGHTS = {"藏族": 96, "汉族": 3, "回族": 1}  # Gande is overwhelmingly Tibetan
# Shares of households carrying each status flag: plausible for a pastoral county, not official figures.
FLAG_SHARES = {"low_income": 0.08, "disability": 0.04, "five_guarantee": 0.01, "left_behind_elderly": 0.05}
ELDERLY_BORN_BY = CURRENT_YEAR - 60
TOWN_SLUG = "kequ"  # the county seat: fewer herds than the grassland townships
SEED_ACTOR = Actor(username="seed", role="county_command")


@dataclass
class _Plan:
    """Rows to insert, referring to one another by list index until the database hands out ids."""

    units: list[dict[str, Any]] = field(default_factory=list)
    unit_parent: list[int | None] = field(default_factory=list)
    persons: list[dict[str, Any]] = field(default_factory=list)
    positions: list[tuple[int, int, str, str, bool]] = field(default_factory=list)  # person, unit, ...
    households: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # liaison unit, row
    members: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # household, row
    # username, role, unit, person, township name
    accounts: list[tuple[str, str, int, int, str]] = field(default_factory=list)

    def unit(self, parent: int | None, kind: str, name: str, code: str, name_bo: str | None = None) -> int:
        self.units.append(
            {"kind": kind, "level": LEVEL_OF_KIND[kind], "name": name, "name_bo": name_bo, "code": code}
        )
        self.unit_parent.append(parent)
        return len(self.units) - 1


class _People:
    """Seeded names, sexes and unique phone numbers."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.phones: set[str] = set()

    def name(self, sex: str) -> tuple[str, str]:
        first_parts, second_parts = (MALE_FIRST, MALE_SECOND) if sex == "M" else (FEMALE_FIRST, FEMALE_SECOND)
        first = self.rng.choice(first_parts)
        second = self.rng.choice([part for part in second_parts if part != first])
        return first + second, f"{PARTS[first]}་{PARTS[second]}"

    def sex(self, male_share: float = 0.5) -> str:
        return "M" if self.rng.random() < male_share else "F"

    def phone(self) -> str:
        return invented_phone(self.rng, self.phones)

    def person(self, plan: _Plan, male_share: float = 0.5) -> int:
        sex = self.sex(male_share)
        name, name_bo = self.name(sex)
        plan.persons.append({"name": name, "name_bo": name_bo, "sex": sex, "phone": self.phone()})
        return len(plan.persons) - 1


def spread(total: int, buckets: int) -> list[int]:
    """Split ``total`` into ``buckets`` near-equal integers, the larger and smaller ones interleaved."""
    return [(i + 1) * total // buckets - i * total // buckets for i in range(buckets)]


def fit_sizes(rng: random.Random, count: int, total: int) -> list[int]:
    """``count`` sizes drawn from SIZE_WEIGHTS, then nudged one person at a time to sum to ``total``."""
    sizes = rng.choices(list(SIZE_WEIGHTS), weights=list(SIZE_WEIGHTS.values()), k=count)
    gap = total - sum(sizes)
    while gap:
        i = rng.randrange(count)
        if gap > 0 and sizes[i] < MAX_HOUSEHOLD_SIZE:
            sizes[i] += 1
            gap -= 1
        elif gap < 0 and sizes[i] > 1:
            sizes[i] -= 1
            gap += 1
    return sizes


def _family(rng: random.Random, people: _People, size: int) -> list[dict[str, Any]]:
    """A household of ``size``: the head first, then spouse, parents, children or grandchildren."""
    head_sex = people.sex(0.8)
    head_born = rng.randint(1950, 1998)
    members = [(head_sex, head_born, "户主")]
    if size >= 2 and rng.random() < 0.85:
        members.append(("F" if head_sex == "M" else "M", head_born + rng.randint(-6, 6), "配偶"))
    if len(members) < size and head_born >= 1975 and rng.random() < 0.35:
        people.sex()  # still drawn, so every later draw stays as it was; the relation decides the sex
        born = head_born - rng.randint(22, 34)
        relation = "父" if rng.random() < 0.4 else "母"
        members.append(("M" if relation == "父" else "F", born, relation))
    while len(members) < size:
        child_sex = people.sex()
        # Older heads' extra dependants are grandchildren; otherwise sons and daughters.
        if head_born < 1968 and len(members) >= 3:
            born = min(head_born + rng.randint(44, 56), CURRENT_YEAR)
            relation = "孙子" if child_sex == "M" else "孙女"
        else:
            born = min(head_born + rng.randint(20, 34), CURRENT_YEAR)
            relation = "子" if child_sex == "M" else "女"
        members.append((child_sex, born, relation))
    rows = []
    for sex, born, relation in members:
        name, name_bo = people.name(sex)
        rows.append({"name": name, "name_bo": name_bo, "sex": sex, "birth_year": born, "relation": relation})
    return rows


def _plan_county(rng: random.Random) -> _Plan:
    plan = _Plan()
    people = _People(rng)

    county = plan.unit(None, "county", COUNTY_NAME, "gande", COUNTY_NAME_BO)
    # One commander holds both county posts here: the platform routes to the 总指挥长, whoever it is.
    commander = people.person(plan, male_share=0.7)
    plan.positions.append((commander, county, "county_command", "县委书记", True))
    plan.positions.append((commander, county, "county_command", "县长", True))
    plan.accounts.append(("county-command", "county_command", county, commander, ""))

    centre = plan.unit(county, "governance_centre", "甘德县综治中心", "governance_centre")
    for n, title in enumerate(("主任", "副主任", "干事"), start=1):
        staff = people.person(plan)
        plan.positions.append((staff, centre, "governance_centre", title, n == 1))
        plan.accounts.append((f"centre-{n}", "governance_centre", centre, staff, ""))

    for code, name in DEPARTMENTS:
        unit = plan.unit(county, "department", name, code)
        head = people.person(plan)
        plan.positions.append((head, unit, "department", "局长", True))
        plan.accounts.append((f"dept-{code.replace('_', '-')}", "department", unit, head, ""))

    for spec in TOWNSHIPS:
        _plan_township(plan, people, rng, county, spec)
    return plan


def _plan_township(plan: _Plan, people: _People, rng: random.Random, county: int, spec: TownshipSpec) -> None:
    # Tibetan township and village names are left null: staff fill them in; a wrong spelling is worse.
    township = plan.unit(county, "township", spec.name, spec.slug)
    commander = people.person(plan)
    plan.positions.append(
        (commander, township, "township_command", "镇长" if spec.name.endswith("镇") else "乡长", True)
    )
    plan.accounts.append((f"{spec.slug}-command", "township_command", township, commander, spec.name))

    is_jiangqian = spec.slug == JIANGQIAN
    if is_jiangqian:
        workers_per_village = spread(JIANGQIAN_LIAISON_WORKERS, JIANGQIAN_VILLAGES)
        # 1,136 households over 242 liaison workers is 4.69 each: no split keeps every worker within
        # 5-12, so 168 cover 5 and 74 cover 4. Those 74 are flagged by summary(), never refused.
        households_per_worker = spread(JIANGQIAN_HOUSEHOLDS, JIANGQIAN_LIAISON_WORKERS)
        sizes = fit_sizes(rng, JIANGQIAN_HOUSEHOLDS, JIANGQIAN_PEOPLE)
    else:
        workers_per_village = [rng.randint(4, 8) for _ in range(rng.randint(2, 3))]
        households_per_worker = [rng.randint(5, 12) for _ in range(sum(workers_per_village))]
        sizes = rng.choices(
            list(SIZE_WEIGHTS), weights=list(SIZE_WEIGHTS.values()), k=sum(households_per_worker)
        )

    short = spec.name[:-1]  # 江千乡 -> 江千
    worker_index = 0
    book_seq = 0
    for v, workers in enumerate(workers_per_village, start=1):
        village_name = f"{short}{CHINESE_ORDINALS[v - 1]}村"
        village = plan.unit(township, "village", village_name, f"{spec.slug}-v{v}")
        grid_head = people.person(plan)
        plan.positions.append((grid_head, village, "village_grid", "网格长", True))
        if is_jiangqian or v == 1:
            plan.accounts.append((f"{spec.slug}-v{v}-grid", "village_grid", village, grid_head, spec.name))

        for w in range(1, workers + 1):
            code = f"{spec.slug}-v{v}-lw{w:03d}"
            group = plan.unit(village, "liaison", f"{village_name}第{w}联户组", code)
            worker = people.person(plan)
            plan.positions.append((worker, group, "liaison_worker", "联户长", True))
            if is_jiangqian or (v == 1 and w <= 2):
                plan.accounts.append((code, "liaison_worker", group, worker, spec.name))

            for _ in range(households_per_worker[worker_index]):
                book_seq += 1
                family = _family(rng, people, sizes[book_seq - 1])
                plan.households.append(
                    (
                        group,
                        {
                            "book_no": f"{COUNTY_ADMIN_CODE}-{spec.book_prefix}-{book_seq:06d}",
                            "head_name": family[0]["name"],
                            "head_name_bo": family[0]["name_bo"],
                            "address": f"{COUNTY_NAME}{spec.name}{village_name}",
                            "lat": round(spec.centre[0] + rng.uniform(-0.08, 0.08), 5),
                            "lon": round(spec.centre[1] + rng.uniform(-0.08, 0.08), 5),
                        },
                    )
                )
                household = len(plan.households) - 1
                plan.members.extend((household, row) for row in family)
            worker_index += 1


def _insert_ids(session: Session, model: type, rows: list[dict[str, Any]]) -> list[int]:
    """Bulk INSERT ... RETURNING id, ids in the order of ``rows``."""
    if not rows:
        return []
    result = session.execute(insert(model).returning(model.id, sort_by_parameter_order=True), rows)
    return list(result.scalars())


def _write(session: Session, plan: _Plan) -> tuple[list[int], list[int]]:
    # Units go in by depth, parents first, so each row's parent id is known when it is inserted
    # (the plan always lists a parent before its children).
    depth: list[int] = []
    for parent in plan.unit_parent:
        depth.append(0 if parent is None else depth[parent] + 1)
    unit_ids: list[int] = [0] * len(plan.units)
    paths: list[str] = [""] * len(plan.units)
    for level in range(max(depth) + 1):
        batch = [i for i, d in enumerate(depth) if d == level]
        rows = []
        for i in batch:
            parent = plan.unit_parent[i]
            rows.append(
                {**plan.units[i], "parent_id": None if parent is None else unit_ids[parent], "path": ""}
            )
        for i, new_id in zip(batch, _insert_ids(session, OrgUnit, rows), strict=True):
            parent = plan.unit_parent[i]
            unit_ids[i] = new_id
            paths[i] = f"{'/' if parent is None else paths[parent]}{new_id}/"
    # The path needs the row's own id, so it is written once all ids are known (bulk UPDATE by pk).
    session.execute(update(OrgUnit), [{"id": i, "path": p} for i, p in zip(unit_ids, paths, strict=True)])

    person_ids = _insert_ids(session, Person, plan.persons)
    session.execute(
        insert(Position),
        [
            {
                "person_id": person_ids[p],
                "org_unit_id": unit_ids[u],
                "role": role,
                "title": title,
                "is_head": is_head,
            }
            for p, u, role, title, is_head in plan.positions
        ],
    )
    return unit_ids, person_ids


class _Details:
    """ID numbers, ethnicity, phones, herds and flags: what the registry knows beyond names."""

    def __init__(self, rng: random.Random, taken_phones: set[str]):
        self.rng = rng
        self.id_numbers: set[str] = set()
        self.phones = set(taken_phones)

    def birth_date(self, year: int) -> date:
        first = date(year, 1, 1)
        last = min(date(year, 12, 31), LATEST_BIRTH)
        return first + timedelta(days=self.rng.randrange((last - first).days + 1))

    def id_number(self, born: date, sex: str) -> str:
        # Region, birth date, a sequence whose last digit is odd for men and even for women, check.
        while True:
            sequence = self.rng.randrange(500) * 2 + (1 if sex == "M" else 0)
            first17 = f"{COUNTY_ADMIN_CODE}{born:%Y%m%d}{sequence:03d}"
            number = first17 + check_character(first17)
            if number not in self.id_numbers:
                self.id_numbers.add(number)
                return number

    def phone(self) -> str:
        return invented_phone(self.rng, self.phones)

    def herd(self, town: bool) -> dict[str, int]:
        """This year's head counts: every herding household keeps yaks; sheep, goats, horses vary."""
        rng = self.rng
        scale = 0.35 if town else 1.0
        return {
            "yak": round(rng.lognormvariate(3.7, 0.55) * scale),
            "sheep": round(rng.lognormvariate(3.6, 0.8) * scale) if rng.random() < 0.6 else 0,
            "goat": rng.randint(3, 30) if rng.random() < 0.3 else 0,
            "horse": rng.randint(1, 4) if rng.random() < 0.6 else 0,
        }

    def last_year(self, herd: dict[str, int]) -> dict[str, int]:
        # Herds move with births, sales and winter losses: last year within about a fifth of this one.
        return {species: max(0, round(count * self.rng.uniform(0.8, 1.2))) for species, count in herd.items()}


def _household_items(plan: _Plan, unit_ids: list[int], rng: random.Random) -> list[HouseholdIn]:
    details = _Details(rng, {person["phone"] for person in plan.persons})
    members_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for household, row in plan.members:
        members_of[household].append(row)
    town_units = {
        i
        for i, unit in enumerate(plan.units)
        if unit["kind"] == "liaison" and unit["code"].startswith(TOWN_SLUG)
    }
    flags = _flags(plan, members_of, rng)

    items = []
    for h, (unit, row) in enumerate(plan.households):
        ethnicity = rng.choices(list(ETHNICITY_WEIGHTS), weights=list(ETHNICITY_WEIGHTS.values()))[0]
        members = []
        for member in members_of[h]:
            born = details.birth_date(member["birth_year"])
            is_head = member["relation"] == "户主"
            members.append(
                MemberIn(
                    name=member["name"],
                    name_bo=member["name_bo"],
                    relation=member["relation"],
                    ethnicity=ethnicity,
                    phone=details.phone() if is_head and rng.random() < 0.8 else None,
                    id_number=details.id_number(born, member["sex"]),
                )
            )
        herd = details.herd(unit in town_units)
        livestock = [
            LivestockIn(year=year, species=species, head_count=count)
            for year, counts in ((CURRENT_YEAR, herd), (CURRENT_YEAR - 1, details.last_year(herd)))
            for species, count in counts.items()
        ]
        items.append(
            HouseholdIn(
                **row,
                liaison_unit_id=unit_ids[unit],
                grassland_area_mu=round(len(members) * rng.uniform(300, 900), 1),
                flags=flags[h],
                members=members,
                livestock=livestock,
            )
        )
    return items


def _flags(plan: _Plan, members_of: dict[int, list[dict[str, Any]]], rng: random.Random) -> list[set[str]]:
    """Exact shares of flagged households; five-guarantee and left-behind go to elderly heads."""
    count = len(plan.households)
    elderly = [h for h in range(count) if members_of[h][0]["birth_year"] <= ELDERLY_BORN_BY]
    alone = [h for h in elderly if len(members_of[h]) <= 2] or elderly
    pools = {
        "low_income": list(range(count)),
        "disability": list(range(count)),
        "five_guarantee": alone,
        "left_behind_elderly": elderly,
    }
    flags: list[set[str]] = [set() for _ in range(count)]
    for flag, share in FLAG_SHARES.items():
        pool = pools[flag]
        for h in rng.sample(pool, min(len(pool), round(share * count))):
            flags[h].add(flag)
    return flags


def _write_accounts(path: Path, accounts: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Created 0600 from the start: the file holds passwords, it must never be readable by others.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(accounts, handle, ensure_ascii=False, indent=1)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def seed_demo(
    session_factory: sessionmaker,
    var_dir: Path,
    rng_seed: int = 2026,
    protector: Protector | None = None,
) -> dict[str, Any]:
    """Build the demo county into an empty registry and write ``var_dir/demo-accounts.json``.

    ID numbers are encrypted with ``protector``, by default the one the registry service itself
    builds from ``LIANHU_REGISTRY_*`` keys or ``var_dir/registry.keys``.
    """
    if protector is None:
        protector = Protector(*RegistrySettings(var_dir=Path(var_dir)).protection_keys())
    plan = _plan_county(random.Random(rng_seed))
    with session_factory.begin() as session:
        unit_ids, person_ids = _write(session, plan)
        items = _household_items(plan, unit_ids, random.Random(f"{rng_seed}-{DETAILS_SEED_SUFFIX}"))
        records.apply_households(session, items, SEED_ACTOR, "demo seed", protector)

    accounts = [
        {
            "username": username,
            "password": secrets.token_urlsafe(12),
            "role": role,
            "org_unit": unit_ids[unit],
            "org_unit_name": plan.units[unit]["name"],
            "township": township,
            "person_id": person_ids[person],
            "name": plan.persons[person]["name"],
        }
        for username, role, unit, person, township in plan.accounts
    ]
    accounts_file = Path(var_dir) / "demo-accounts.json"
    _write_accounts(accounts_file, accounts)

    with session_factory() as session:
        counts = queries.summary(session)
    return {**counts, "accounts": len(accounts), "accounts_file": str(accounts_file)}


def seed_if_empty(settings: KitSettings, demo: bool) -> str:
    """The ``lianhu seed`` hook: build the demo county only into a migrated, empty registry."""
    engine = make_engine(settings.database_url("registry"))
    try:
        if not inspect(engine).has_table(OrgUnit.__tablename__):
            raise RuntimeError("the registry database has no tables: run `lianhu migrate` first")
        sessions = make_session_factory(engine)
        with sessions() as session:
            existing = session.scalar(select(func.count()).select_from(OrgUnit)) or 0
        if existing:
            return f"already has {existing} org units; left as is"
        if not demo:
            return "empty; `lianhu seed --demo` builds the demo county"
        result = seed_demo(sessions, settings.var_dir)
        return (
            f"demo county seeded: {result['townships']} townships, {result['villages']} villages, "
            f"{result['liaison_workers']} liaison workers, {result['households']} households, "
            f"{result['members']} people; {result['accounts']} accounts in {result['accounts_file']}"
        )
    finally:
        engine.dispose()
