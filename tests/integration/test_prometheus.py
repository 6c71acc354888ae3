"""The dashboard and the alerts, evaluated by a real Prometheus scraping a real gateway.

One module-wide scene, built once: a ``gateway run`` with two workers (the
supervisor's merged /metrics), ``admin.token`` set, a Redis store, and a stub
upstream; a Prometheus server started from deploy/prometheus/scrape.yaml's own
``gateway`` job (the token read from ``authorization.credentials_file``, as operators
are told to do) with a 1 s scrape and rule evaluation interval and
deploy/prometheus/alerts.yaml loaded. Traffic is sent in two rounds with a scrape in
between, so that every series exists before it grows and ``rate()`` has something
to measure: 2xx, 4xx and 5xx answers, a POST, a request no route matches, an
upstream target that refuses connections (connect_error, then a retry), a firewall
deny, missing and forged tokens, throttled requests, one refused and one accepted
reload. The Redis store brings the store-error series (at 0: Redis answers).

Then every Grafana query and every alert expression goes through Prometheus's HTTP
API as an instant query. A query must be one Prometheus accepts and must return a
series with a real (non-NaN) value; the labels its legend prints must be on every
series. Grafana's variables are replaced the way Grafana does it for the dashboard
as shipped (tests/monitoring_assets.py: "All" -> ``.*``, intervals -> ``1m``).

An alert expression returns nothing while all is well, so it is checked two ways:
- every series selector in it (``gateway_x{matchers}``) must select series by itself:
  each metric and label value the alert names really exists in the scrape; and
- the whole expression, with each threshold comparison made a ``bool`` comparison
  (``ratio > 0.05`` -> ``ratio > bool 0.05``: 0 or 1 per series instead of a filter),
  must return series, and every label its annotations print (``$labels.route``)
  must be on each: the aggregations, divisions and ``and`` joins line up on real
  labels, so the alert can fire and say where.
The one alert that really fires here, GatewayConfigReloadFailed, must go firing.
"""

from __future__ import annotations

import http.client
import http.server
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.gateway_process import GatewayProcess
from tests.jwt_keys import HS_SECRET, base_claims, hs_token
from tests.monitoring_assets import (
    ALERTS, SCRAPE, DashboardQuery, dashboard_queries, load_dashboard, load_rules, selectors, substitute,
    template_labels, thresholds_as_bool, variable_values,
)
from tests.prometheus_server import PrometheusServer, free_port
from tests.redis_server import RedisServer

ADMIN_TOKEN = "scrape-me-0123456789"
DASHBOARD = load_dashboard()
RULES = load_rules()
ROUTES = ("app", "flaky", "limited", "private", "secure", "cached")


class StubUpstream:
    """A plain HTTP/1.1 upstream in a thread: ``/status/NNN`` answers NNN, anything else 200."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's pools expect

            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = re.search(r"/status/([1-5][0-9][0-9])$", self.path)
                body = b'{"ok": true}'
                self.send_response(int(match.group(1)) if match else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer  # noqa: N815 (http.server's spelling)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def gateway_config(upstream: str, dead: str, redis_url: str) -> dict[str, Any]:
    return {
        "server": {"workers": 2, "shutdown_timeout": "5s"},
        "admin": {"token": ADMIN_TOKEN},
        "store": {"kind": "redis", "url": redis_url},
        "auth": {"jwt": {"algorithms": ["HS256"], "secret": HS_SECRET, "subject_claim": "user_id"}},
        "upstreams": {
            # passive ejection off: the stub's 500s must not take it out of service
            "app": {"targets": [upstream], "passive": False},
            # a target that refuses connections first in line: connect_error, retried on the other
            "flaky": {"strategy": "round_robin", "targets": [dead, upstream], "retries": 1, "passive": False},
        },
        "routes": [
            {"name": "app", "match": {"path": "/app"}, "upstream": "app"},
            {"name": "flaky", "match": {"path": "/flaky"}, "upstream": "flaky"},
            {"name": "limited", "match": {"path": "/limited"}, "upstream": "app",
             "throttle": {"anonymous": "1/minute"}},
            {"name": "private", "match": {"path": "/private"}, "upstream": "app",
             "firewall": {"default": "deny"}},
            {"name": "secure", "match": {"path": "/secure"}, "upstream": "app", "auth": "required"},
            {"name": "cached", "match": {"path": "/cached"}, "upstream": "app", "cache": {"ttl": "1h"}},
        ],
    }


VALID = {"Authorization": f"Bearer {hs_token(base_claims(user_id='alice'))}"}
FORGED = {"Authorization": f"Bearer {hs_token(base_claims(user_id='alice'), secret='not-the-secret-' * 3)}"}

# One round of traffic: (method, path, headers, expected status or None when it varies).
ROUND: list[tuple[str, str, dict[str, str], int | None]] = [
    *[("GET", "/app/items", {}, 200)] * 4,
    ("POST", "/app/items", {}, 200),
    ("GET", "/app/status/404", {}, 404),
    *[("GET", "/app/status/500", {}, 500)] * 2,
    ("GET", "/nowhere", {}, 404),
    *[("GET", "/flaky/items", {}, 200)] * 4,
    ("GET", "/private", {}, 403),
    ("GET", "/secure", {}, 401),
    ("GET", "/secure", FORGED, 401),
    ("GET", "/secure", VALID, 200),
    *[("GET", "/limited", {}, None)] * 3,  # 1/minute across both workers (Redis): one 200 in all
    *[("GET", "/cached/items", {}, 200)] * 3,  # a miss, then hits from the shared Redis entry
    ("POST", "/cached/items", {}, 200),  # a write: invalidates the entry
]


def send(gateway: GatewayProcess, method: str, path: str, headers: dict[str, str]) -> int:
    """One request on its own connection, so that SO_REUSEPORT spreads them over the workers."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def drive(gateway: GatewayProcess) -> list[int]:
    statuses = []
    for method, path, headers, expected in ROUND:
        status = send(gateway, method, path, headers)
        assert expected is None or status == expected, (method, path, status, gateway.log()[-2000:])
        statuses.append(status)
    return statuses


def admin_metrics(gateway: GatewayProcess) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.admin_port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``condition`` until it is truthy; generous, because the box may be busy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def prometheus_config(gateway: GatewayProcess, token_file: Path) -> dict[str, Any]:
    """deploy/prometheus/scrape.yaml as shipped, pointed at this gateway and sped up."""
    config = yaml.safe_load(SCRAPE.read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ALERTS)]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "gateway"]
    job["authorization"]["credentials_file"] = str(token_file)
    job["static_configs"] = [{"targets": [f"127.0.0.1:{gateway.admin_port}"]}]
    return config


@dataclass
class Scene:
    prometheus: PrometheusServer
    gateway: GatewayProcess
    statuses: list[int]


def stop_gateway(gateway: GatewayProcess) -> None:
    code = gateway.stop()  # SIGTERM, drain; killed (and raising) if it hangs
    assert code == 0, f"gateway exited with {code}:\n{gateway.log()}"


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    workdir = tmp_path_factory.mktemp("prometheus-scene")
    for name in ("gateway", "prometheus"):
        (workdir / name).mkdir()
    # ExitStack: whatever fails, everything started so far is stopped, Prometheus first.
    with ExitStack() as cleanup:
        redis = RedisServer(workdir / "redis").start()
        cleanup.callback(redis.stop)
        stub = StubUpstream()
        cleanup.callback(stub.close)
        dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused
        gateway = GatewayProcess(gateway_config(stub.url, dead, redis.url), workdir / "gateway")
        cleanup.callback(stop_gateway, gateway)
        token_file = workdir / "gateway-admin-token"
        token_file.write_text(ADMIN_TOKEN + "\n")  # a trailing newline, as `echo` would leave
        prometheus = PrometheusServer(workdir / "prometheus", prometheus_config(gateway, token_file))
        cleanup.callback(prometheus.stop)
        # Prometheus first: it applies its targets some seconds after start-up, time
        # the gateway spends starting its workers.
        prometheus.start()
        gateway.start(timeout=60)  # two workers on a busy box can take a while
        wait_until(lambda: prometheus.value('up{job="gateway"}') == 1, "the first successful scrape")

        # Reloads after the first scrape: the counters were seen at 0, so increase() sees 1.
        good = gateway.config_path.read_text()
        gateway.config_path.write_text(good + "no_such_section: true\n")
        gateway.signal(signal.SIGHUP)
        wait_until(lambda: 'gateway_config_reloads_total{result="failure"} 1.0' in admin_metrics(gateway),
                   "the refused reload to be counted")
        gateway.config_path.write_text(good)
        gateway.signal(signal.SIGHUP)
        wait_until(lambda: 'gateway_config_reloads_total{result="success"} 1.0' in admin_metrics(gateway),
                   "the accepted reload to be counted")

        # Round one makes every series; round two makes them grow once Prometheus has seen them.
        statuses = drive(gateway)
        wait_until(lambda: prometheus.value("sum(gateway_requests_total)") == len(ROUND), "round one scraped")
        statuses += drive(gateway)
        wait_until(lambda: prometheus.value("sum(gateway_requests_total)") == 2 * len(ROUND), "round two scraped")
        yield Scene(prometheus, gateway, statuses)


def finite(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in result if not math.isnan(float(s["value"][1]))]


def require_series(prometheus: PrometheusServer, expr: str, labels: set[str], where: str) -> None:
    result = prometheus.query(expr)
    assert result, f"{where}: no series for {expr}"
    assert finite(result), f"{where}: only NaN for {expr}: {result}"
    missing = [(sorted(labels - set(s["metric"])), s["metric"]) for s in result if not labels <= set(s["metric"])]
    assert not missing, f"{where}: series without the labels its text prints: {missing}"


# -- the scrape ----------------------------------------------------------------------------


def test_prometheus_scrapes_the_merged_metrics_with_the_admin_token(scene: Scene) -> None:
    targets = scene.prometheus.api("targets")["activeTargets"]
    (target,) = [t for t in targets if t["labels"]["job"] == "gateway"]
    assert target["health"] == "up" and target["lastError"] == "", target
    assert scene.prometheus.value('up{job="gateway"}') == 1
    # without the token the same endpoint is refused: the credentials_file is what let Prometheus in
    conn = http.client.HTTPConnection("127.0.0.1", scene.gateway.admin_port, timeout=30)
    conn.request("GET", "/metrics")
    assert conn.getresponse().status == 401
    conn.close()


def test_prometheus_sees_exactly_the_traffic_that_was_sent(scene: Scene) -> None:
    """Both workers' counts, merged by the supervisor, are what Prometheus stored."""
    p = scene.prometheus
    assert scene.statuses.count(429) == 2 * 3 - 1  # one request in the whole minute, across workers
    assert p.value("sum(gateway_requests_total)") == len(scene.statuses)
    assert p.value('sum(gateway_requests_total{code="500"})') == scene.statuses.count(500)
    assert p.value('sum(gateway_requests_total{route="app",method="POST"})') == 2
    assert p.value("sum(gateway_throttled_total)") == scene.statuses.count(429)
    assert p.value('gateway_throttled_total{route="limited",caller="anonymous"}') == scene.statuses.count(429)
    assert p.value('gateway_firewall_denied_total{route="private"}') == 2
    assert p.value('gateway_auth_failures_total{route="secure",reason="missing"}') == 2
    assert p.value('gateway_auth_failures_total{route="secure",reason="bad_signature"}') == 2
    assert p.value('gateway_config_reloads_total{result="failure"}') == 1
    assert p.value('gateway_config_reloads_total{result="success"}') == 1
    assert (p.value('sum(gateway_upstream_requests_total{upstream="flaky",code="connect_error"})') or 0) >= 1
    assert (p.value('gateway_upstream_retries_total{upstream="flaky"}') or 0) >= 1
    assert p.value('sum(gateway_store_errors_total)') == 0  # the series exist; Redis answered


# -- the dashboard -------------------------------------------------------------------------


def label_values(prometheus: PrometheusServer, variable: dict[str, Any]) -> list[str]:
    query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
    match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
    assert match, f"variable {variable['name']}: {query!r} is not label_values(metric, label)"
    metric, label = match.groups()
    return list(prometheus.api(f"label/{label}/values", **{"match[]": metric}))


def test_every_template_variable_has_values(scene: Scene) -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"] if v["type"] == "query"}
    assert {"route", "upstream"} <= set(variables)
    for name, variable in variables.items():
        assert label_values(scene.prometheus, variable), f"variable {name} has no values"
    assert set(ROUTES) <= set(label_values(scene.prometheus, variables["route"]))
    assert {"app", "flaky"} <= set(label_values(scene.prometheus, variables["upstream"]))


@pytest.mark.parametrize("query", dashboard_queries(DASHBOARD), ids=lambda q: q.where)
def test_dashboard_query_returns_series(scene: Scene, query: DashboardQuery) -> None:
    values = variable_values(DASHBOARD, lambda variable: label_values(scene.prometheus, variable)[0])
    expr = substitute(query.expr, values)
    for selector in selectors(expr):
        assert scene.prometheus.query(selector), f"{query.where}: {selector} selects nothing"
    require_series(scene.prometheus, expr, template_labels(query.legend), query.where)


# -- the alerts ----------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.get("alert", r.get("record")))
def test_alert_expression_is_made_of_real_series(scene: Scene, rule: dict[str, Any]) -> None:
    for selector in selectors(rule["expr"]):
        assert scene.prometheus.query(selector), f"{selector} selects nothing"
    printed = set().union(*(template_labels(text) for text in rule.get("annotations", {}).values()))
    require_series(scene.prometheus, thresholds_as_bool(rule["expr"]), printed, rule["alert"])


def test_prometheus_evaluates_every_rule_without_error(scene: Scene) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in scene.prometheus.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r["health"] != "unknown" for r in rules) else None

    rules = wait_until(evaluated, "every rule to be evaluated once")
    assert sorted(r["name"] for r in rules) == sorted(rule["alert"] for rule in RULES)
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


def test_the_refused_reload_fires_its_alert(scene: Scene) -> None:
    def firing() -> list[dict[str, Any]]:
        return [
            alert for alert in scene.prometheus.api("alerts")["alerts"]
            if alert["labels"]["alertname"] == "GatewayConfigReloadFailed" and alert["state"] == "firing"
        ]

    (alert,) = wait_until(firing, "GatewayConfigReloadFailed to fire")
    assert alert["labels"]["instance"] == f"127.0.0.1:{scene.gateway.admin_port}"
    assert alert["labels"]["result"] == "failure"
    assert alert["annotations"]["summary"] == f"Gateway {alert['labels']['instance']} refused a configuration reload"
