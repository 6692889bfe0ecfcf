"""deploy/monitoring/: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), each alert is tested firing and silent, and every query of the rules
and of the Grafana dashboard parses and names only metrics a running gateway exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient

from tests.deploy.manifests import DEPLOY
from tests.support.paths import ECHO

MONITORING = DEPLOY / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
ALERTS_TEST = MONITORING / "alerts_test.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

# What the alert rules must watch.
ALERTED = {
    "neu_gateway_sign_rejections_total",
    "neu_gateway_breaker_state",
    "neu_gateway_backend_up",
    "neu_gateway_requests_total",
    "neu_gateway_deliveries_total",
    "neu_gateway_clock_offset_seconds",
}
GRAPHED = ALERTED | {
    "neu_gateway_request_duration_seconds_bucket",
    "neu_gateway_upstream_duration_seconds_bucket",
    "neu_gateway_upstream_requests_total",
    "neu_gateway_requests_in_flight",
    "neu_gateway_connections",
    "neu_gateway_token_cache_total",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
}

# PromQL words that are not metric names (functions are told apart by their parenthesis).
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_KEYWORDS |= {"unless", "bool", "offset", "inf", "nan"}


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: ./scripts/test installs it (Debian package prometheus)"
    return subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    return exprs


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables given values, as Grafana sends it."""
    return expr.replace("$__rate_interval", "5m").replace("$job", ".*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    words = re.findall(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", text)
    return {word for word in words if word.lower() not in _KEYWORDS}


def test_metric_names_are_told_from_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, app) (rate(a_bucket{job=~"$job", x="y{z}"}'
        "[$__rate_interval]))) / on (app) group_left b_total > bool 2 and c offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def test_promtool_checks_the_rules() -> None:
    ran = promtool("check", "rules", ALERTS.name)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in ran.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    ran = promtool("test", "rules", ALERTS_TEST.name)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "SUCCESS" in ran.stdout


def test_each_alert_is_tested_firing_and_silent() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case.get("exp_alerts") for case in mine), f"{rule['alert']} never fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{rule['alert']} always fires"


def test_rules_alert_on_what_the_kit_promises() -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    assert used >= ALERTED
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    # promtool parses PromQL only in rule files: each query becomes a recording rule.
    rules = [
        {"record": f"dashboard:query_{index}", "expr": as_promql(expr)}
        for index, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    ran = promtool("check", "rules", str(path), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_dashboard_graphs_what_the_kit_promises() -> None:
    used = set().union(*map(metric_names, dashboard_exprs()))
    assert used >= GRAPHED
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            # the data source is chosen on import, not fixed to someone else's uid
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"]


def exported_names(exposition: str) -> set[str]:
    """Every series name a /metrics page can show: sampled ones, and those its TYPE lines
    declare (a labelled metric shows no sample until a label set is used)."""
    names = {
        re.split(r"[{\s]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        if kind == "counter":
            # the Prometheus text format names a counter's TYPE with its `_total`
            name = name if name.endswith("_total") else name + "_total"
        names |= {name + suffix for suffix in suffixes.get(kind, ("",))}
    return names


async def test_every_query_names_a_metric_the_running_gateway_exports(
    gateway: TestClient[Any, Any],
) -> None:
    # Exercised first: a call through it, answered by the platform double.
    assert (await gateway.get(ECHO, params={"a": "1"})).status == 200
    response = await gateway.get("/metrics")
    assert response.status == 200
    exported = exported_names(await response.text())
    assert "neu_gateway_requests_total" in exported
    queries = dashboard_exprs() + [rule["expr"] for rule in alert_rules()]
    used = set().union(*map(metric_names, queries))
    assert used - exported == set()
