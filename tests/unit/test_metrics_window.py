"""Figures over the last minute from snapshots of the /metrics counters."""

from __future__ import annotations

import math

import pytest
from prometheus_client.metrics_core import Metric

from gateway.metrics import Metrics
from gateway.metrics_merge import merge_families
from gateway.metrics_window import Snapshot, SnapshotRing, Window, histogram_quantile, take_snapshot

INF = math.inf


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(0.1, 10), (0.2, 20), (INF, 20)], 0.1),
        (0.75, [(0.1, 10), (0.2, 20), (INF, 20)], 0.15),
        (0.5, [(0.1, 0), (0.2, 4), (INF, 4)], 0.15),  # inside the second bucket, from its lower bound
        (0.25, [(0.01, 4), (INF, 4)], 0.0025),  # the first bucket starts at 0
        (0.99, [(0.1, 0), (0.5, 0), (INF, 5)], 0.5),  # in +Inf: the highest finite bound
        (0.99, [(0.1, 0), (INF, 0)], None),  # nothing observed
        (0.5, [], None),
    ],
)
def test_histogram_quantile_interpolates_like_prometheus(q, buckets, expected):
    got = histogram_quantile(q, buckets)
    assert got == expected if expected is None else got == pytest.approx(expected)


def traffic(metrics: Metrics) -> None:
    for _ in range(18):
        metrics.observe_request("menu", "GET", 200, 0.003)
    metrics.observe_request("menu", "POST", 201, 0.003)
    metrics.observe_request("menu", "GET", 404, 0.003)
    for _ in range(3):
        metrics.observe_request("menu", "GET", 503, 0.4)
    metrics.observe_request("none", "GET", 404, 0.0)
    metrics.throttled("menu", ["anonymous", "authenticated"])["anonymous"].inc(2)
    metrics.firewall_denied("menu").inc()
    metrics.auth_failures("menu", ["missing", "invalid"])["invalid"].inc(4)
    metrics.observe_upstream("menu", "127.0.0.1:8001", "200", 0.002)
    metrics.observe_upstream("menu", "127.0.0.1:8001", "502", 0.002)
    metrics.observe_upstream("menu", "127.0.0.1:8001", "connect_error", None)
    metrics.observe_upstream("menu", "127.0.0.1:8001", "aborted", None)  # the client's doing
    metrics.store_errors("take").inc(3)


def test_route_figures_from_the_registry_the_metrics_endpoint_reads():
    metrics = Metrics()
    start = take_snapshot(metrics.registry.collect(), at=0.0)
    traffic(metrics)
    window = Window(start, take_snapshot(metrics.registry.collect(), at=10.0))
    menu = window.route("menu")
    assert menu["requests"] == 23 and menu["rate"] == 2.3
    assert menu["status_classes"] == {"1xx": 0, "2xx": 19, "3xx": 0, "4xx": 1, "5xx": 3}
    assert menu["ratio_4xx"] == round(1 / 23, 4) and menu["ratio_5xx"] == round(3 / 23, 4)
    # 20 of 23 in the (2.5 ms, 5 ms] bucket, 3 in (250 ms, 500 ms]
    assert 2.5 < menu["p50_ms"] <= 5.0
    assert 250.0 < menu["p99_ms"] <= 500.0
    assert (menu["throttled"], menu["denied"], menu["auth_failures"]) == (2, 1, 4)
    assert menu["cache_hit_ratio"] is None  # no cache lookups counted
    assert window.route("none")["requests"] == 1
    everything = window.route(None)
    assert everything["requests"] == 24 and everything["status_classes"]["4xx"] == 2
    assert window.routes_seen() == {"menu", "none"}
    target = window.target("menu", "127.0.0.1:8001")
    assert target == {"requests": 4, "rate": 0.4, "errors": 2, "error_ratio": 0.5}
    assert window.target("menu", "127.0.0.1:9999")["requests"] == 0
    assert window.store_errors() == 3


def test_only_the_increase_since_the_older_snapshot_counts():
    metrics = Metrics()
    metrics.observe_request("menu", "GET", 500, 0.003)
    older = take_snapshot(metrics.registry.collect(), at=100.0)
    for _ in range(4):
        metrics.observe_request("menu", "GET", 200, 0.003)
    menu = Window(older, take_snapshot(metrics.registry.collect(), at=160.0)).route("menu")
    assert menu["requests"] == 4 and menu["ratio_5xx"] == 0.0
    assert menu["requests_total"] == 5  # since start, for the page's total column


def family(name: str, kind: str, samples: list[tuple[str, dict[str, str], float]]) -> Metric:
    metric = Metric(name, "", kind)
    for sample_name, labels, value in samples:
        metric.add_sample(sample_name, labels, value)
    return metric


def test_cache_hit_ratio_counts_stale_as_served_and_ignores_bypass():
    cache = family("gateway_cache_requests", "counter", [
        ("gateway_cache_requests_total", {"route": "menu", "result": "hit"}, 6),
        ("gateway_cache_requests_total", {"route": "menu", "result": "stale"}, 2),
        ("gateway_cache_requests_total", {"route": "menu", "result": "miss"}, 2),
        ("gateway_cache_requests_total", {"route": "menu", "result": "bypass"}, 50),
    ])
    window = Window(Snapshot(0.0, {}), take_snapshot([cache], at=60.0))
    assert window.route("menu")["cache_hit_ratio"] == 0.8
    assert window.route(None)["cache_hit_ratio"] == 0.8


def test_a_counter_that_went_down_counts_as_no_increase():
    requests = lambda n: family("gateway_requests", "counter", [  # noqa: E731
        ("gateway_requests_total", {"route": "menu", "method": "GET", "code": "200"}, n)])
    window = Window(take_snapshot([requests(10)], at=0.0), take_snapshot([requests(7)], at=5.0))
    assert window.route("menu")["requests"] == 0


def test_figures_from_the_supervisors_merge_equal_the_sum_of_the_workers():
    one, two = Metrics(), Metrics()
    traffic(one)
    traffic(two)
    merged = merge_families([list(one.registry.collect()), list(two.registry.collect())])
    window = Window(Snapshot(0.0, {}), take_snapshot(merged, at=10.0))
    single = Window(Snapshot(0.0, {}), take_snapshot(one.registry.collect(), at=10.0))
    assert window.route("menu")["requests"] == 2 * single.route("menu")["requests"]
    assert window.route("menu")["p99_ms"] == single.route("menu")["p99_ms"]  # same distribution
    assert window.route("menu")["throttled"] == 4


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snapshot_at(clock: FakeClock, requests: float) -> Snapshot:
    return Snapshot(clock.now, {("requests", "menu", "2xx"): requests})


def test_the_ring_keeps_about_a_minute_and_windows_span_it():
    clock = FakeClock()
    ring = SnapshotRing(window=60.0, interval=5.0, clock=clock)
    # At start the baseline is the all-zero snapshot of process start.
    clock.now += 12
    first = ring.window(snapshot_at(clock, 30))
    assert first.seconds == 12 and first.route("menu")["requests"] == 30
    # One request a second for five minutes, sampled every second: only one in five kept.
    for second in range(300):
        clock.now = 1000.0 + second
        ring.record(snapshot_at(clock, second))
    assert len(ring) <= 60 / 5 + 2
    clock.now = 1300.0
    window = ring.window(snapshot_at(clock, 300))
    assert 60.0 <= window.seconds <= 65.0
    assert window.route("menu")["requests"] == window.seconds  # one per second
    assert window.route("menu")["rate"] == 1.0


def test_a_snapshot_sooner_than_the_interval_is_not_kept():
    clock = FakeClock()
    ring = SnapshotRing(window=60.0, interval=5.0, clock=clock)
    clock.now += 2
    ring.record(snapshot_at(clock, 1))
    assert len(ring) == 1
    clock.now += 3
    ring.record(snapshot_at(clock, 2))
    assert len(ring) == 2
