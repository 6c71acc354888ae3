"""The monitoring assets in deploy/ must not drift from the metrics the gateway declares.

Every PromQL expression in the Grafana dashboard and the Prometheus rules (and the
series of the promtool rule tests) may only name series that a fresh
:class:`gateway.metrics.Metrics` registry exposes, with labels those metrics have and,
where the code enumerates them, label values the code produces. A renamed metric or
label, or a metric that does not exist yet (``gateway_cache_*``: caching is not
built), fails here instead of leaving an empty panel or an alert that never fires.

promtool is not needed: a small PromQL tokenizer checks what matters here
(names, labels, balanced brackets, no empty selectors). With promtool at hand, also
run ``promtool check rules`` / ``promtool test rules deploy/prometheus/alerts_test.yaml``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gateway.auth.verifier import REASONS
from gateway.config.throttle import CALLER_CLASSES
from gateway.metrics import KNOWN_METHODS, Metrics
from gateway.upstream.connection import UpstreamError

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "gateway-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
SCRAPE = ROOT / "deploy" / "prometheus" / "scrape.yaml"

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
GRAFANA_BUILTINS = frozenset({"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"})


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


@dataclass(frozen=True)
class Series:
    family: str
    kind: str
    labels: frozenset[str]


def exposed_series() -> dict[str, Series]:
    """Every series name a gateway's /metrics can carry -> its family and labels.

    prometheus-client names a counter's family without ``_total``; its samples are
    ``_total`` (``_created`` is dropped by the worker merge, gateway/metrics_merge.py).
    A histogram's samples are ``_bucket`` (plus ``le``), ``_count`` and ``_sum``."""
    metrics = Metrics()
    families = {family.name: family.type for family in metrics.registry.collect()}
    labelnames = {
        wrapper._name: frozenset(wrapper._labelnames)  # noqa: SLF001 - prometheus-client keeps them here
        for wrapper in vars(metrics).values() if isinstance(wrapper, MetricWrapperBase)
    }
    assert set(labelnames) == set(families), "a metric registered outside a Metrics attribute"
    series: dict[str, Series] = {}
    for name, kind in families.items():
        labels = labelnames[name]
        if kind == "counter":
            series[f"{name}_total"] = Series(name, kind, labels)
        elif kind == "histogram":
            series[f"{name}_bucket"] = Series(name, kind, labels | {"le"})
            series[f"{name}_count"] = Series(name, kind, labels)
            series[f"{name}_sum"] = Series(name, kind, labels)
        else:
            series[name] = Series(name, kind, labels)
    return series


EXPOSED = exposed_series()


def test_the_registry_is_what_this_test_expects() -> None:
    """A guard on exposed_series() itself: if prometheus-client changed how it names
    families, every other check here would compare against the wrong names."""
    assert "gateway_requests_total" in EXPOSED
    assert EXPOSED["gateway_requests_total"].labels == {"route", "method", "code"}
    assert EXPOSED["gateway_request_duration_seconds_bucket"].labels == {"route", "le"}
    assert EXPOSED["gateway_upstream_target_healthy"].kind == "gauge"
    assert {"connect_error", "timeout", "reset", "bad_response"} <= _error_kinds()


# -- a small PromQL tokenizer ------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\[\]]*\])
  | (?P<num>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){},])
""", re.VERBOSE)

_GRAFANA_VAR = re.compile(r"\$(?:\{(\w+)(?:[:.][^}]*)?\}|(\w+))")
_DURATION = re.compile(r"(?:\d+(?:ms|[smhdwy]))+")
_LABEL_CLAUSES = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})


@dataclass
class Token:
    kind: str
    text: str


def tokenize(expr: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise AssertionError(f"cannot read PromQL at {expr[pos:pos + 30]!r} in {expr!r}")
        pos = match.end()
        if match.lastgroup != "ws":
            tokens.append(Token(match.lastgroup or "", match.group()))
    return tokens


def _matching(tokens: list[Token], start: int) -> int:
    """Index of the ``)``/``}`` closing the bracket at ``start``."""
    pairs = {"(": ")", "{": "}"}
    stack = []
    for i in range(start, len(tokens)):
        text = tokens[i].text if tokens[i].kind == "op" else ""
        if text in pairs:
            stack.append(pairs[text])
        elif text in (")", "}"):
            assert stack and stack.pop() == text, f"unbalanced {text!r}"
            if not stack:
                return i
    raise AssertionError("unclosed bracket")


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return json.loads('"' + text[1:-1].replace("\\'", "'") + '"') if text[0] == "'" else json.loads(text)


@dataclass
class Matcher:
    metric: str
    label: str
    op: str
    value: str


@dataclass
class Query:
    """What a PromQL expression uses: series names, label matchers, and the labels of
    every by/without/on/... clause with the metric names it applies to."""

    text: str
    metrics: list[str] = field(default_factory=list)
    matchers: list[Matcher] = field(default_factory=list)
    clauses: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    made_labels: set[str] = field(default_factory=set)


def parse(expr: str) -> Query:
    """Check the syntax PromQL needs to be read at all, and collect what it uses.

    Grafana variables may only appear inside strings and ranges (``"$route"``,
    ``[$__rate_interval]``); anywhere else the tokenizer refuses them."""
    tokens = tokenize(expr)
    query = Query(expr)
    depth = {"(": 0, "{": 0}
    for token in tokens:
        if token.kind == "op" and token.text in "(){}":
            opener = {"(": "(", ")": "(", "{": "{", "}": "{"}[token.text]
            depth[opener] += 1 if token.text in "({" else -1
            assert depth[opener] >= 0, f"unbalanced {token.text!r} in {expr!r}"
        if token.kind == "range":
            inner = _GRAFANA_VAR.sub("5m", token.text[1:-1])
            assert re.fullmatch(rf"{_DURATION.pattern}(?::{_DURATION.pattern}?)?", inner), \
                f"bad range {token.text!r} in {expr!r}"
    assert depth == {"(": 0, "{": 0}, f"unbalanced brackets in {expr!r}"

    for i, token in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.kind == "ident" and token.text.startswith("gateway"):
            query.metrics.append(token.text)
            if nxt is not None and nxt.text == "{":
                end = _matching(tokens, i + 1)
                inner = tokens[i + 2:end]
                assert inner, f"empty selector {token.text}{{}} in {expr!r}"
                j = 0
                while j < len(inner):
                    label, op, value = inner[j:j + 3]
                    assert label.kind == "ident" and op.text in ("=", "!=", "=~", "!~") and value.kind == "str", \
                        f"bad matcher after {token.text} in {expr!r}"
                    query.matchers.append(Matcher(token.text, label.text, op.text, _unquote(value.text)))
                    j += 3
                    if j < len(inner):
                        assert inner[j].text == ",", f"bad matcher list after {token.text} in {expr!r}"
                        j += 1
        elif token.kind == "op" and token.text == "{" and (i == 0 or tokens[i - 1].kind != "ident"):
            raise AssertionError(f"selector without a metric name in {expr!r}")
        elif token.kind == "ident" and token.text == "label_replace":
            # label_replace(v, "dst", "replacement", "src", "regex") makes the label dst
            end = _matching(tokens, i + 1)
            strings = [t for t in tokens[i + 2:end] if t.kind == "str"]
            assert len(strings) >= 4, f"label_replace needs four strings in {expr!r}"
            query.made_labels.add(_unquote(strings[-4].text))
        elif token.kind == "ident" and token.text in _LABEL_CLAUSES and nxt is not None and nxt.text == "(":
            end = _matching(tokens, i + 1)
            labels = [t.text for t in tokens[i + 2:end] if t.text != ","]
            assert all(re.fullmatch(r"[A-Za-z_]\w*", label) for label in labels), f"bad label list in {expr!r}"
            if token.text in ("by", "without"):
                # sum by (l) (arg)  or  sum (arg) by (l)
                if end + 1 < len(tokens) and tokens[end + 1].text == "(":
                    arg = tokens[end + 1:_matching(tokens, end + 1) + 1]
                else:
                    assert i > 0 and tokens[i - 1].text == ")", f"{token.text} without an aggregation in {expr!r}"
                    opening = max(k for k in range(i - 1) if tokens[k].text == "(" and _matching(tokens, k) == i - 1)
                    arg = tokens[opening:i]
                scope = [t.text for t in arg if t.kind == "ident" and t.text.startswith("gateway")]
            else:
                scope = [t.text for t in tokens if t.kind == "ident" and t.text.startswith("gateway")]
            query.clauses.append((token.text, labels, scope))
    return query


def grafana_variables(expr: str) -> set[str]:
    return {a or b for a, b in _GRAFANA_VAR.findall(expr)}


def check_query(query: Query, where: str) -> list[str]:
    """Every problem with one parsed expression, as readable lines."""
    problems = []
    for name in query.metrics:
        if name not in EXPOSED:
            problems.append(f"{where}: {name} is not a series the gateway exposes")
    for m in query.matchers:
        series = EXPOSED.get(m.metric)
        if series is None:
            continue
        if m.label not in series.labels | TARGET_LABELS:
            problems.append(f"{where}: {m.metric} has no label {m.label!r} (labels: {sorted(series.labels)})")
            continue
        problems.extend(f"{where}: {msg}" for msg in _check_value(m))
    for clause, labels, scope in query.clauses:
        for name in scope:
            series = EXPOSED.get(name)
            if series is None:
                continue
            if clause in ("by", "without"):
                allowed = series.labels | TARGET_LABELS | query.made_labels
                missing = [label for label in labels if label not in allowed]
                if missing:
                    problems.append(f"{where}: {clause} ({', '.join(missing)}) on {name}, "
                                    f"whose labels are {sorted(series.labels)}")
        if clause not in ("by", "without"):
            known = set().union(*(EXPOSED[n].labels for n in scope if n in EXPOSED), TARGET_LABELS, query.made_labels)
            missing = [label for label in labels if label not in known]
            if missing:
                problems.append(f"{where}: {clause} ({', '.join(missing)}) names no label of {sorted(set(scope))}")
    return problems


def _check_value(m: Matcher) -> Iterator[str]:
    known = KNOWN_VALUES.get((m.metric, m.label))
    if known is None or "$" in m.value:
        return
    if m.op in ("=~", "!~"):
        if not re.fullmatch(r"[\w|]+", m.value):
            return  # a real regex (5.., [0-9]+): not checked
        values = m.value.split("|")
    else:
        values = [m.value]
    for value in values:
        ok = value in known if isinstance(known, set) else bool(known.fullmatch(value))
        if m.metric == "gateway_upstream_requests_total" and m.label == "code":
            ok = ok or bool(_STATUS.fullmatch(value))
        if not ok:
            yield f"{m.metric}{{{m.label}{m.op}{m.value!r}}}: the gateway never sets {m.label}={value!r}"


# -- the Prometheus rules -----------------------------------------------------------------


def load_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    assert isinstance(document, dict) and isinstance(document.get("groups"), list) and document["groups"]
    rules = []
    names = set()
    for group in document["groups"]:
        assert group.get("name") and group["name"] not in names, f"group names must be unique: {group.get('name')}"
        names.add(group["name"])
        assert isinstance(group.get("rules"), list) and group["rules"], f"group {group['name']} has no rules"
        rules.extend(group["rules"])
    return rules


RULES = load_rules()


def rule_id(rule: dict[str, Any]) -> str:
    return str(rule.get("alert") or rule.get("record"))


def test_every_required_alert_is_there_once() -> None:
    names = [rule["alert"] for rule in RULES if "alert" in rule]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert REQUIRED_ALERTS <= set(names), f"missing alerts: {sorted(REQUIRED_ALERTS - set(names))}"


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_alert_rule_is_complete(rule: dict[str, Any]) -> None:
    assert "alert" in rule, "only alerting rules here (recording rules would need their own checks)"
    assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, sorted(rule)
    assert isinstance(rule.get("expr"), str) and rule["expr"].strip()
    assert re.fullmatch(rf"0|{_DURATION.pattern}", str(rule.get("for", ""))), f"for: {rule.get('for')!r}"
    assert rule.get("labels", {}).get("severity") in SEVERITIES, rule.get("labels")
    annotations = rule.get("annotations", {})
    assert annotations.get("summary", "").strip(), "annotations.summary is required"
    assert annotations.get("description", "").strip(), "annotations.description is required"


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_alert_expression_uses_only_real_metrics_and_labels(rule: dict[str, Any]) -> None:
    query = parse(rule["expr"])
    assert query.metrics, "an alert on no gateway metric"
    assert not grafana_variables(rule["expr"]), "Grafana variables mean nothing to Prometheus"
    assert check_query(query, rule["alert"]) == []


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_alert_annotations_name_labels_the_alert_has(rule: dict[str, Any]) -> None:
    """{{ $labels.x }} must be a label of the alert's series: the by () labels when the
    expression aggregates, else the labels of its metrics."""
    query = parse(rule["expr"])
    grouped = [labels for clause, labels, _ in query.clauses if clause == "by"]
    if grouped:
        available = set().union(*grouped)
    else:
        available = set().union(*(EXPOSED[name].labels for name in query.metrics), TARGET_LABELS)
    for key, text in rule["annotations"].items():
        used = set(re.findall(r"\$labels\.(\w+)", text))
        assert used <= available, f"annotations.{key} uses {sorted(used - available)}; the alert has {sorted(available)}"


def test_promtool_rule_tests_use_real_series() -> None:
    """The series in alerts_test.yaml (run by promtool, outside pytest) must be real too,
    with every label of their metric, or the promtool tests prove nothing."""
    document = yaml.safe_load(ALERTS_TEST.read_text())
    assert document["rule_files"] == ["alerts.yaml"]
    tested = set()
    for test in document["tests"]:
        for item in test["input_series"]:
            query = parse(item["series"])
            assert len(query.metrics) == 1
            assert check_query(query, test["name"]) == []
            given = {m.label for m in query.matchers}
            needed = EXPOSED[query.metrics[0]].labels
            assert needed <= given, f"{item['series']}: missing labels {sorted(needed - given)}"
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


# -- the Grafana dashboard -----------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels inside collapsed rows
    return panels


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation query."""
    out = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            out.append((f"panel {panel['id']} {panel['title']!r} target {target.get('refId')}", target.get("expr", "")))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            out.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    return out


DASHBOARD_QUERIES = dashboard_queries(load_dashboard())


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
        assert label in EXPOSED[metric].labels, f"variable {variable['name']}: {metric} has no label {label}"


def test_dashboard_expressions_use_only_real_metrics_and_labels() -> None:
    dashboard = load_dashboard()
    defined = {v["name"] for v in dashboard["templating"]["list"]} | GRAFANA_BUILTINS
    problems = []
    for where, expr in DASHBOARD_QUERIES:
        query = parse(expr)
        if not query.metrics:
            problems.append(f"{where}: no gateway metric")
        problems.extend(check_query(query, where))
        undefined = grafana_variables(expr) - defined - {"1"}  # ${1}: a label_replace group
        if undefined:
            problems.append(f"{where}: undefined variables {sorted(undefined)}")
    assert problems == []


def test_every_metric_the_gateway_declares_is_on_the_dashboard() -> None:
    used = {EXPOSED[name].family for _, expr in DASHBOARD_QUERIES for name in parse(expr).metrics}
    declared = {series.family for series in EXPOSED.values()}
    assert declared - used == set(), "metrics without a panel"


# -- the checker itself --------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "problem"), [
    ('sum(rate(gateway_cache_misses_total[5m]))', "not a series"),
    ('sum(rate(gateway_requests[5m]))', "not a series"),
    ('gateway_request_duration_seconds_created', "not a series"),
    ('sum by (target) (rate(gateway_upstream_duration_seconds_count[5m]))', "by (target)"),
    ('sum(rate(gateway_requests_total[5m])) by (status)', "by (status)"),
    ('rate(gateway_requests_total{status="500"}[5m])', "no label 'status'"),
    ('gateway_config_reloads_total{result="failed"}', "never sets result='failed'"),
    ('rate(gateway_upstream_requests_total{code=~"connect_error|conn_timeout"}[5m])', "never sets code='conn_timeout'"),
    ('a / on (nope) gateway_requests_total', "on (nope)"),
])
def test_checker_catches_drift(expr: str, problem: str) -> None:
    problems = check_query(parse(expr), "t")
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("expr", [
    "sum(rate(gateway_requests_total[5m])",
    "gateway_requests_total{}",
    "{route=\"x\"}",
    "rate(gateway_requests_total[5x])",
    "rate(gateway_requests_total{route=\"x\"[5m])",
    "sum by (route) (rate(gateway_requests_total{route=$route}[5m]))",
])
def test_checker_refuses_malformed_promql(expr: str) -> None:
    with pytest.raises(AssertionError):
        parse(expr)


def test_checker_accepts_what_the_assets_use() -> None:
    expr = ('sum by (route, class) (label_replace(rate(gateway_requests_total{route=~"$route",code=~"5.."}'
            '[$__rate_interval]), "class", "${1}xx", "code", "([0-9])..")) '
            '/ ignoring (class) group_left sum(rate(gateway_upstream_requests_total{code="timeout"}[5m] offset 1h))')
    assert check_query(parse(expr), "t") == []
