"""The monitoring assets in deploy/: well-formed, complete, and accepted by promtool.

What PromQL means is not judged here but by Prometheus itself: promtool checks the
rules and runs their unit tests (alerts_test.yaml) below, and
tests/integration/test_prometheus.py evaluates every dashboard query and alert
expression on a real Prometheus scraping a real multi-worker gateway. What stays
here is what neither can see: the dashboard's structure (importable, no overlapping
panels, a panel for every metric the gateway declares), the rules' completeness
(severity, summary, description, a promtool test for each required alert), and
label values the code enumerates but the integration test cannot all produce (an
alert on ``code="conn_timeout"`` would select nothing forever).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gateway.auth.verifier import REASONS
from gateway.config.throttle import CALLER_CLASSES
from gateway.metrics import KNOWN_METHODS, Metrics
from gateway.metrics_families import CounterFamily, HistogramFamily
from gateway.upstream.connection import UpstreamError
from tests.monitoring_assets import (
    ALERTS, ALERTS_TEST, SCRAPE, all_panels, dashboard_queries, grafana_variables, load_dashboard,
    load_rules, matchers, selectors, substitute, thresholds_as_bool, variable_values,
)
from tests.prometheus_server import promtool

TARGET_LABELS = frozenset({"job", "instance"})
"""Labels Prometheus attaches to every scraped series."""

REQUIRED_ALERTS = frozenset({
    "GatewayHigh5xxRatio",
    "GatewayUpstreamTargetDown",
    "GatewayUpstreamNoHealthyTarget",
    "GatewayHighLatencyP99",
    "GatewayUpstreamErrors",
    "GatewayConfigReloadFailed",
    "GatewayStoreErrors",
})
SEVERITIES = frozenset({"critical", "warning", "info"})
_DURATION = re.compile(r"(?:\d+(?:ms|[smhdwy]))+")


def _error_kinds() -> set[str]:
    kinds, todo = set(), [UpstreamError]
    while todo:
        cls = todo.pop()
        kinds.add(cls.code)
        todo.extend(cls.__subclasses__())
    return kinds | {"aborted"}  # gateway/upstream/forwarder.py: the client's body was too large


_STATUS = re.compile(r"[1-5][0-9][0-9]")

# Label values the code produces, where it enumerates them: a matcher for any other
# value selects nothing. Plain words only; regex matchers like code=~"5.." are not checked.
KNOWN_VALUES: dict[tuple[str, str], set[str] | re.Pattern[str]] = {
    ("gateway_requests_total", "method"): set(KNOWN_METHODS) | {"OTHER"},
    ("gateway_requests_total", "code"): _STATUS,
    ("gateway_upstream_requests_total", "code"): _error_kinds(),  # or a status, matched by _STATUS
    ("gateway_auth_failures_total", "reason"): set(REASONS),
    ("gateway_throttled_total", "caller"): set(CALLER_CLASSES),
    ("gateway_store_errors_total", "operation"): {"take", "connect"},  # gateway/store/redis.py
    ("gateway_config_reloads_total", "result"): {"success", "failure"},  # server.py, supervisor.py
}


# -- what the gateway exposes ----------------------------------------------------------


def exposed_series() -> dict[str, tuple[str, frozenset[str]]]:
    """Every series name a gateway's /metrics can carry -> (family, labels).

    prometheus-client names a counter's family without ``_total``; its samples are
    ``_total`` (``_created`` is dropped by the worker merge, gateway/metrics_merge.py).
    A histogram's samples are ``_bucket`` (plus ``le``), ``_count`` and ``_sum``."""
    metrics = Metrics()
    families = {family.name: family.type for family in metrics.registry.collect()}
    labelnames: dict[str, frozenset[str]] = {}
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, MetricWrapperBase):  # the gauges
            labelnames[wrapper._name] = frozenset(wrapper._labelnames)  # noqa: SLF001 - prometheus-client keeps them here
        elif isinstance(wrapper, (CounterFamily, HistogramFamily)):
            labelnames[wrapper.name] = frozenset(wrapper.labelnames)
    assert set(labelnames) == set(families), "a metric registered outside a Metrics attribute"
    series: dict[str, tuple[str, frozenset[str]]] = {}
    for name, kind in families.items():
        labels = labelnames[name]
        if kind == "counter":
            series[f"{name}_total"] = (name, labels)
        elif kind == "histogram":
            series[f"{name}_bucket"] = (name, labels | {"le"})
            series[f"{name}_count"] = (name, labels)
            series[f"{name}_sum"] = (name, labels)
        else:
            series[name] = (name, labels)
    return series


EXPOSED = exposed_series()
RULES = load_rules()
DASHBOARD_QUERIES = dashboard_queries(load_dashboard())


def test_the_registry_is_what_this_test_expects() -> None:
    """A guard on exposed_series() itself: if prometheus-client changed how it names
    families, every check below would compare against the wrong names."""
    assert EXPOSED["gateway_requests_total"] == ("gateway_requests", {"route", "method", "code"})
    assert EXPOSED["gateway_request_duration_seconds_bucket"][1] == {"route", "le"}
    assert "gateway_upstream_target_healthy" in EXPOSED
    assert {"connect_error", "timeout", "reset", "bad_response"} <= _error_kinds()


def unknown_values(selector: str) -> list[str]:
    """Plain label values in ``selector`` that the code never produces for that label."""
    name, found = matchers(selector)
    problems = []
    for label, op, value in found:
        known = KNOWN_VALUES.get((name, label))
        if known is None or "$" in value:
            continue
        if op in ("=~", "!~"):
            if not re.fullmatch(r"[\w|]+", value):
                continue  # a real regex (5.., [0-9]+): Prometheus judges it
            values = value.split("|")
        else:
            values = [value]
        for word in values:
            ok = word in known if isinstance(known, set) else bool(known.fullmatch(word))
            if name == "gateway_upstream_requests_total" and label == "code":
                ok = ok or bool(_STATUS.fullmatch(word))
            if not ok:
                problems.append(f"{selector}: the gateway never sets {label}={word!r}")
    return problems


@pytest.mark.parametrize(("selector", "bad"), [
    ('gateway_config_reloads_total{result="failed"}', "'failed'"),
    ('gateway_upstream_requests_total{code=~"connect_error|conn_timeout"}', "'conn_timeout'"),
    ('gateway_throttled_total{caller="anon"}', "'anon'"),
    ('gateway_requests_total{code="5xx"}', "'5xx'"),
])
def test_unknown_label_values_are_caught(selector: str, bad: str) -> None:
    problems = unknown_values(selector)
    assert len(problems) == 1 and bad in problems[0], problems


@pytest.mark.parametrize("selector", [
    'gateway_upstream_requests_total{code=~"connect_error|connect_timeout|timeout|reset|bad_response"}',
    'gateway_upstream_requests_total{code="503"}',
    'gateway_requests_total{route=~"$route",code=~"5.."}',
    'gateway_auth_failures_total{reason="expired"}',
])
def test_known_label_values_pass(selector: str) -> None:
    assert unknown_values(selector) == []


# -- the Prometheus rules -----------------------------------------------------------------


def rule_id(rule: dict[str, Any]) -> str:
    return str(rule.get("alert") or rule.get("record"))


def test_rule_groups_are_named_and_not_empty() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    names = [group.get("name") for group in document["groups"]]
    assert all(names) and len(names) == len(set(names)), names
    assert all(group.get("rules") for group in document["groups"])


def test_every_required_alert_is_there_once() -> None:
    names = [rule["alert"] for rule in RULES if "alert" in rule]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert REQUIRED_ALERTS <= set(names), f"missing alerts: {sorted(REQUIRED_ALERTS - set(names))}"


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_alert_rule_is_complete(rule: dict[str, Any]) -> None:
    assert "alert" in rule, "only alerting rules here (recording rules would need their own checks)"
    assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, sorted(rule)
    assert isinstance(rule.get("expr"), str) and rule["expr"].strip()
    assert selectors(rule["expr"]), "an alert on no gateway metric"
    assert not grafana_variables(rule["expr"]), "Grafana variables mean nothing to Prometheus"
    assert re.fullmatch(rf"0|{_DURATION.pattern}", str(rule.get("for", ""))), f"for: {rule.get('for')!r}"
    assert rule.get("labels", {}).get("severity") in SEVERITIES, rule.get("labels")
    annotations = rule.get("annotations", {})
    assert annotations.get("summary", "").strip(), "annotations.summary is required"
    assert annotations.get("description", "").strip(), "annotations.description is required"


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_alert_label_values_are_ones_the_gateway_produces(rule: dict[str, Any]) -> None:
    assert [p for s in selectors(rule["expr"]) for p in unknown_values(s)] == []


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in done.stdout, done.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(ALERTS_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout


@pytest.mark.parametrize(("mutation", "command", "complaint"), [
    # a typo in a function: the rule file no longer parses
    (("rate(gateway_requests_total{code", "rtae(gateway_requests_total{code"), "check", "rtae"),
    # a changed threshold: the file is valid, but the 5xx alert no longer fires at 10%
    ((") > 0.05\n          and\n          sum by (route) (rate(gateway_requests_total",
      ") > 0.5\n          and\n          sum by (route) (rate(gateway_requests_total"), "test", "GatewayHigh5xxRatio"),
], ids=["check-rules-catches-a-typo", "test-rules-catches-a-changed-threshold"])
def test_promtool_fails_on_broken_rules(
    tmp_path: Path, mutation: tuple[str, str], command: str, complaint: str
) -> None:
    """The two promtool tests above can fail: a broken copy of the rules is refused."""
    old, new = mutation
    text = ALERTS.read_text()
    assert text.count(old) == 1, f"the mutation no longer applies: {old!r}"
    (tmp_path / "alerts.yaml").write_text(text.replace(old, new))
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yaml")
    target = "alerts.yaml" if command == "check" else "alerts_test.yaml"
    done = promtool(command, "rules", target, cwd=tmp_path)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "FAILED" in done.stdout + done.stderr and complaint in done.stdout + done.stderr, done.stdout + done.stderr


def test_promtool_rule_tests_use_real_series() -> None:
    """The series in alerts_test.yaml must be real, with every label of their metric,
    or the promtool tests prove nothing about the gateway's alerts."""
    document = yaml.safe_load(ALERTS_TEST.read_text())
    assert document["rule_files"] == ["alerts.yaml"]
    tested = set()
    for test in document["tests"]:
        for item in test["input_series"]:
            name, found = matchers(item["series"])
            assert name in EXPOSED, f"{item['series']}: {name} is not a series the gateway exposes"
            given = {label for label, _, _ in found}
            needed = EXPOSED[name][1] | TARGET_LABELS
            assert given == needed, f"{item['series']}: labels {sorted(given)}, the gateway's are {sorted(needed)}"
            assert unknown_values(item["series"]) == []
        tested.update(case["alertname"] for case in test.get("alert_rule_test", []))
    assert REQUIRED_ALERTS <= tested, f"alerts without a promtool test: {sorted(REQUIRED_ALERTS - tested)}"


def test_scrape_config_scrapes_the_admin_listener_with_the_token() -> None:
    document = yaml.safe_load(SCRAPE.read_text())
    assert document["rule_files"] == ["alerts.yaml"]
    (job,) = [job for job in document["scrape_configs"] if job["job_name"] == "gateway"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["authorization"]["credentials_file"]
    assert "credentials" not in job["authorization"], "never a token inline"
    assert job["static_configs"][0]["targets"]


def test_promtool_accepts_the_scrape_config(tmp_path: Path) -> None:
    """scrape.yaml is a whole prometheus.yml. Checked in full (not --syntax-only): with
    its credentials_file pointing at a file that exists, as on a real Prometheus host,
    and with the rule file it loads next to it."""
    document = yaml.safe_load(SCRAPE.read_text())
    token = tmp_path / "gateway-admin-token"
    token.write_text("a-token\n")
    for job in document["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(document))
    shutil.copy(ALERTS, tmp_path / "alerts.yaml")
    done = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in done.stdout, done.stdout


# -- the Grafana dashboard -----------------------------------------------------------------


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard.get("id") is None, "an exported id would clash on import"
    assert 36 <= dashboard["schemaVersion"] <= 41
    panels = all_panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r} target {target.get('refId')}: no expr"
            assert target.get("refId")
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    cells = set()
    for panel in panels:
        g = panel["gridPos"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, f"panel {panel['title']!r} overlaps another"
        cells |= area


def test_dashboard_datasource_is_a_variable() -> None:
    """Importable into any Grafana: no datasource uid of the exporting instance."""
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            continue
        refs = [panel.get("datasource"), *(t.get("datasource") for t in panel["targets"])]
        for ref in refs:
            assert ref == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, f"{panel['title']!r}: {ref}"


def test_dashboard_template_variables_come_from_real_labels() -> None:
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"route", "upstream"} <= set(variables)
    for variable in variables.values():
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"variable {variable['name']}: {query!r}"
        metric, label = match.groups()
        assert metric in EXPOSED, f"variable {variable['name']}: {metric} does not exist"
        assert label in EXPOSED[metric][1], f"variable {variable['name']}: {metric} has no label {label}"


def test_dashboard_queries_use_only_defined_variables_and_known_label_values() -> None:
    dashboard = load_dashboard()
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    builtins = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}
    problems = []
    for query in DASHBOARD_QUERIES:
        if not selectors(query.expr):
            problems.append(f"{query.where}: no gateway metric")
        undefined = grafana_variables(query.expr) - defined - builtins
        if undefined:
            problems.append(f"{query.where}: undefined variables {sorted(undefined)}")
        problems.extend(f"{query.where}: {p}" for s in selectors(query.expr) for p in unknown_values(s))
    assert problems == []


def test_every_metric_the_gateway_declares_is_on_the_dashboard() -> None:
    used = {
        EXPOSED[name][0]
        for query in DASHBOARD_QUERIES for name, _ in map(matchers, selectors(query.expr)) if name in EXPOSED
    }
    declared = {family for family, _ in EXPOSED.values()}
    assert declared - used == set(), "metrics without a panel"


# -- what tests/integration/test_prometheus.py does to a query before Prometheus sees it ---


@pytest.mark.parametrize(("expr", "expected"), [
    ("gateway_upstream_target_healthy == 0", "gateway_upstream_target_healthy == bool 0"),
    ("(a / b) > 0.05\nand\nc > .1", "(a / b) > bool 0.05\nand\nc > bool .1"),
    ('x{code!="200",code=~"5.."} >= 1', 'x{code!="200",code=~"5.."} >= bool 1'),
    ("a > bool 1", "a > bool 1"),
    ("a > b", "a > b"),
])
def test_thresholds_become_bool_comparisons_and_nothing_else(expr: str, expected: str) -> None:
    assert thresholds_as_bool(expr) == expected


def test_grafana_variables_are_replaced_as_grafana_does() -> None:
    dashboard = {"templating": {"list": [
        {"name": "DS", "type": "datasource"},
        {"name": "route", "type": "query", "multi": True, "includeAll": True, "allValue": ".*"},
        {"name": "upstream", "type": "query", "multi": False},
        {"name": "step", "type": "interval", "query": "auto,30s,5m"},
    ]}}
    values = variable_values(dashboard, lambda variable: f"first-{variable['name']}")
    expr = ('label_replace(rate(m{route=~"$route",upstream="${upstream}"}[$__rate_interval]), '
            '"class", "${1}xx", "code", "([0-9])..") + rate(m[$step])')
    assert substitute(expr, values) == (
        'label_replace(rate(m{route=~".*",upstream="first-upstream"}[1m]), '
        '"class", "${1}xx", "code", "([0-9])..") + rate(m[30s])'
    )
    with pytest.raises(AssertionError, match=r"undefined Grafana variable \$nope"):
        substitute("m{a=~\"$nope\"}", values)
