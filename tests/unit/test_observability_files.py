"""The Prometheus rules and Grafana dashboards, checked against the code that makes the metrics.

A rule or panel naming a metric no code exposes would stay silent for ever: every metric named must
be one the kit or a service defines (``lianhu.metrics``, ``services.speech.metrics``, the gauge specs
the services fill, among them the figures routing owes: ``CASE_GAUGES`` and the counters beside
them), a recording rule of ours, or one Prometheus makes itself. Every query must parse as PromQL
(``promtool``), and the rules must pass their own unit tests (``promtool test rules``).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import PROCESS_COLLECTOR
from prometheus_client.metrics import MetricWrapperBase

import lianhu.metrics
import services.speech.metrics
from tests.unit.test_deploy_files import _tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules/lianhu.rules.yml"
RULE_TESTS = sorted((ROOT / "deploy/prometheus/tests").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"

SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
# Series Prometheus makes itself.
PROMETHEUS_OWN = {"up", "ALERTS"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
PROMQL_WORDS |= {"and", "or", "unless"}
PROMQL_FUNCTIONS = {
    "sum", "max", "min", "avg", "count", "topk", "bottomk", "quantile", "rate", "increase", "irate",
    "delta", "histogram_quantile", "sort_desc", "sort", "label_values", "absent", "clamp_min", "vector",
}  # fmt: skip
GRAFANA_VARIABLES = {"__range", "__rate_interval", "__interval"}


def recording_rules() -> set[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def known_series() -> set[str]:
    names = set(PROMETHEUS_OWN) | recording_rules()
    families = list(PROCESS_COLLECTOR.collect())
    for module in (lianhu.metrics, services.speech.metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                families += value.describe()
            elif isinstance(value, tuple) and value and isinstance(value[0], lianhu.metrics.GaugeSpec):
                names |= {spec.name for spec in value}
    for family in families:
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The series a PromQL expression reads; an unknown function or word fails the test."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings (label values, regexes)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b\d+(ms|[smhdwy])\b", " ", bare)  # matchers, ranges, offsets
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        word = match.group()
        if bare[match.end() :].lstrip().startswith("("):
            assert word in PROMQL_FUNCTIONS, f"unknown function {word} in {expr}"
        elif word not in PROMQL_WORDS:
            names.add(word)
    return names


def alert_and_record_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def dashboard_exprs(dashboard: dict) -> list[str]:
    exprs = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    # A variable's query is Grafana's label_values(<series>, <label>): its series is PromQL.
    for variable in dashboard["templating"]["list"]:
        exprs.append(re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"]["query"]).group(1))
    return exprs


@pytest.fixture(scope="module", params=[path.name for path in DASHBOARDS])
def dashboard(request) -> dict:
    return json.loads((ROOT / "deploy/grafana/dashboards" / request.param).read_text(encoding="utf-8"))


def test_there_is_a_dashboard_for_operations_and_one_for_the_governance_centre():
    uids = {json.loads(path.read_text(encoding="utf-8"))["uid"] for path in DASHBOARDS}
    assert uids == {"lianhu-operations", "lianhu-governance"}


def test_rules_name_only_series_that_exist():
    known = known_series()
    for expr in alert_and_record_exprs():
        assert metric_names(expr) <= known, f"{expr} reads {metric_names(expr) - known}"


def test_dashboards_name_only_series_that_exist(dashboard):
    known = known_series()
    for expr in dashboard_exprs(dashboard):
        assert metric_names(expr) <= known, f"{dashboard['uid']}: {expr} reads {metric_names(expr) - known}"


def test_governance_dashboard_shows_what_the_centre_asks_for():
    governance = json.loads((ROOT / "deploy/grafana/dashboards/governance.json").read_text(encoding="utf-8"))
    exprs = " ".join(dashboard_exprs(governance))
    for series in (
        "lianhu_reports_routed_total",  # reports per hour by category
        "lianhu_cases_resolved_total",  # resolution and on-time rates
        "township:lianhu_cases_overdue:sum",  # overdue by township
        "lianhu_case_escalations_total",
    ):
        assert series in exprs


def test_dashboard_panels_are_well_formed(dashboard):
    (datasource,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {variable["name"] for variable in dashboard["templating"]["list"]} | GRAFANA_VARIABLES
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no query"
        assert len({target["refId"] for target in targets}) == len(targets)
        for target in targets:
            assert target["datasource"] == panel["datasource"]
            for name in re.findall(r"\$(\w+)", target["expr"]):
                assert name in variables, f"{panel['title']} uses ${name}, which is not defined"


def _check_promql(promtool: str, exprs: list[str], tmp_path: Path) -> None:
    """promtool parses expressions only inside rule files: each one becomes a recording rule."""
    substituted = [re.sub(r"\$\w+", ".*", re.sub(r"\$__range", "1h", expr)) for expr in exprs]
    rules = {
        "groups": [
            {
                "name": "check",
                "rules": [{"record": f"check:{n}", "expr": e} for n, e in enumerate(substituted)],
            }
        ]
    }
    path = tmp_path / "check.rules.yml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(dashboard, tmp_path):
    promtool = _tool("promtool", "prometheus")
    _check_promql(promtool, dashboard_exprs(dashboard), tmp_path)


def test_rules_pass_promtool_check_and_their_unit_tests():
    promtool = _tool("promtool", "prometheus")
    assert RULE_TESTS, "deploy/prometheus/tests holds the rules' unit tests"
    for command in (["check", "rules", str(RULES)], ["test", "rules", *map(str, RULE_TESTS)]):
        result = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested():
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == tested, f"alerts without a firing test: {alerts - tested}"
