"""Read the monitoring assets in deploy/ the way Grafana and Prometheus read them.

Shared by the unit checks (tests/unit/test_deploy.py: structure, promtool) and the
real-Prometheus test (tests/integration/test_prometheus.py: every query evaluated).
Nothing here judges PromQL: Prometheus does that. What is here is the little that
Grafana does before a query reaches Prometheus (variable substitution) and the few
textual facts a test needs to point at (which series selectors and template labels
an expression or annotation names).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ALERTS", "ALERTS_TEST", "DASHBOARD", "ROOT", "SCRAPE",
    "DashboardQuery", "all_panels", "dashboard_queries", "load_dashboard", "load_rules",
    "grafana_variables", "variable_values", "substitute", "GRAFANA_BUILTINS",
    "selectors", "matchers", "template_labels", "thresholds_as_bool",
]

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "gateway-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
SCRAPE = ROOT / "deploy" / "prometheus" / "scrape.yaml"


# -- the dashboard -------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels inside collapsed rows
    return panels


@dataclass(frozen=True)
class DashboardQuery:
    where: str
    expr: str
    legend: str
    """legendFormat (or an annotation's titleFormat): the labels it names must exist."""


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[DashboardQuery]:
    """Every panel target and every Prometheus annotation query of the dashboard."""
    out = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            out.append(DashboardQuery(
                f"panel {panel['id']} {panel['title']!r} target {target.get('refId')}",
                target.get("expr", ""), target.get("legendFormat", ""),
            ))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            out.append(DashboardQuery(
                f"annotation {annotation['name']!r}", annotation["expr"], annotation.get("titleFormat", ""),
            ))
    return out


# Grafana's global variables, with the values a dashboard viewer typically gets on a
# 1m-5m view. $interval is the pre-7.2 spelling of $__interval, still found in the wild.
GRAFANA_BUILTINS: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "interval": "1m",
    "__interval_ms": "60000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

# $name, ${name}, ${name:format} and the deprecated [[name]].
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def grafana_variables(expr: str) -> set[str]:
    """Names of the Grafana variables an expression uses. ``$1``/``${1}`` are
    label_replace group references, which Grafana leaves alone."""
    names = {next(group for group in match.groups() if group) for match in _VARIABLE.finditer(expr)}
    return {name for name in names if not name.isdigit()}


def variable_values(dashboard: Mapping[str, Any], single: Callable[[dict[str, Any]], str]) -> dict[str, str]:
    """The value each templating variable takes when a viewer opens the dashboard as shipped.

    Multi-value and "All" variables take their All value (``allValue``, else ``.*``,
    which is what Grafana sends for All when it builds a regex). A single-value query
    variable takes what ``single(variable)`` answers (its first label value, for the
    caller who can ask Prometheus). Data source variables never reach PromQL."""
    values = dict(GRAFANA_BUILTINS)
    for variable in dashboard.get("templating", {}).get("list", []):
        kind, name = variable["type"], variable["name"]
        if kind == "datasource":
            continue
        if variable.get("multi") or variable.get("includeAll"):
            values[name] = variable.get("allValue") or ".*"
        elif kind in ("query", "custom"):
            values[name] = single(variable)
        elif kind in ("constant", "textbox"):
            values[name] = str(variable.get("query", ""))
        elif kind == "interval":
            options = [o.strip() for o in str(variable.get("query", "")).split(",") if o.strip()]
            values[name] = next((o for o in options if o != "auto"), "1m")
        else:
            raise AssertionError(f"variable {name}: type {kind!r} is not handled by this test")
    return values


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables as Grafana does before sending the query."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name.isdigit():
            return match.group()
        if name not in values:
            raise AssertionError(f"undefined Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(value, expr)


# -- the alert rules -----------------------------------------------------------------------


def load_rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yaml, in file order."""
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


# -- textual facts about expressions and templates -----------------------------------------

# A series selector of ours: the metric name and, when present, its {matchers}. The
# gateway's names all start with gateway_, and no label value in deploy/ holds a brace.
_SELECTOR = re.compile(r"\b(gateway_[a-z0-9_]+)\b(\{[^{}]*\})?")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
# A comparison against a number literal: the threshold of an alert or a filter.
_THRESHOLD = re.compile(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)(?=\s*[-+]?(?:\d|\.\d|Inf\b|NaN\b))")
_TEMPLATE_LABEL = re.compile(r"\{\{\s*(?:\$labels\.)?(\w+)\s*\}\}")


def selectors(expr: str) -> list[str]:
    """The gateway series selectors an expression names, as written (``name{...}``)."""
    return [match.group() for match in _SELECTOR.finditer(expr)]


def matchers(selector: str) -> tuple[str, list[tuple[str, str, str]]]:
    """``name{a="x",b=~"y"}`` -> (name, [(a, =, x), (b, =~, y)])."""
    match = _SELECTOR.fullmatch(selector)
    if match is None:
        raise AssertionError(f"not a selector: {selector!r}")
    return match.group(1), [m.groups() for m in _MATCHER.finditer(match.group(2) or "")]


def thresholds_as_bool(expr: str) -> str:
    """``x > 0.05`` -> ``x > bool 0.05``: the comparison yields 0 or 1 for every series
    instead of dropping the series it is false for, so a healthy system still shows
    which series the expression is made of."""
    return _THRESHOLD.sub(r"\1 bool", expr)


def template_labels(text: str) -> set[str]:
    """Labels a legend (``{{route}}``) or an alert annotation (``{{ $labels.route }}``) prints."""
    return set(_TEMPLATE_LABEL.findall(text))
