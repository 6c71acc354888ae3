"""gateway/metrics.py renders exactly what its prometheus-client version rendered.

The reference (tests/unit/metrics_reference.py) is the class as it was, on
prometheus-client's locked Counter and Histogram. Both receive the same calls and
must produce the same ``generate_latest`` bytes: names, HELP, types, label names and
values, escaping, buckets and their ``le`` strings, sample order, ``_created``
samples (with the clock pinned so their values match too), and the multi-worker
merge of gateway/metrics_merge.py on top.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, disable_created_metrics, enable_created_metrics, generate_latest

from gateway.auth.verifier import REASONS
from gateway.config.throttle import CALLER_CLASSES
from gateway.metrics import KNOWN_METHODS, Metrics
from gateway.metrics_merge import merge_families, parse_exposition, render
from tests.unit.metrics_reference import ReferenceMetrics

BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
NOW = 1_700_000_000.125

ODD_NAMES = ['say "hi"', "back\\slash", "new\nline", '\\"\n', "", "ünïcødé", "{x}=,"]
names = st.one_of(st.sampled_from(["menu", "app", *ODD_NAMES]), st.text(st.characters(exclude_categories=("Cs",))))
"""Route, upstream and target names: configured names, but nothing stops odd ones."""

seconds = st.one_of(
    st.sampled_from(BOUNDS),
    st.sampled_from(BOUNDS).map(lambda b: math.nextafter(b, math.inf)),
    st.sampled_from(BOUNDS).map(lambda b: math.nextafter(b, -math.inf)),
    st.floats(),  # NaN, infinities, negatives, subnormals
)
"""Durations, crowded around the bucket bounds, where < and <= differ."""

amounts = st.one_of(st.just(1), st.integers(0, 1000), st.floats(0, 1e12))
methods = st.sampled_from([*sorted(KNOWN_METHODS), "PROPFIND", "get"])
upstream_codes = st.sampled_from(["200", "502", "connect_error", "timeout", "aborted"])

Op = tuple[Any, ...]
"""A call the gateway (or its tests) makes, as data so a failing example prints readably."""

ops: st.SearchStrategy[Op] = st.one_of(
    st.tuples(st.just("observe_request"), names, methods, st.integers(100, 599), seconds),
    st.tuples(st.just("observe_upstream"), names, names, upstream_codes, st.none() | seconds),
    st.tuples(st.just("firewall_denied"), names, amounts),
    st.tuples(st.just("auth_failures"), names, st.sampled_from(REASONS), amounts),
    st.tuples(st.just("throttled"), names, st.sampled_from(CALLER_CLASSES), amounts),
    st.tuples(st.just("cache_results"), names, st.sampled_from(["hit", "miss", "bypass", "stale"]), amounts),
    st.tuples(st.just("store_errors"), st.sampled_from(["take", "connect", "cache_get"]), amounts),
    st.tuples(st.just("config_reloads_total"), st.sampled_from(["success", "failure"]), amounts),
    st.tuples(st.just("cache_invalidations_total"), st.sampled_from(["write", "purge"]), amounts),
    st.tuples(st.just("upstream_retries_total"), names, amounts),
    st.tuples(st.just("upstream_queue_timeouts_total"), names, names, amounts),
    st.tuples(st.just("request_duration"), names, seconds),
    st.tuples(st.just("upstream_target_healthy"), names, names, st.sampled_from([0, 1])),
    st.tuples(st.just("cache_bytes"), st.integers(0, 2**40)),
)


def apply(m: Any, op: Op) -> None:
    """``op`` on ``m`` through the API the gateway uses: the helpers, the families' labels()."""
    kind, *args = op
    if kind in ("observe_request", "observe_upstream"):
        getattr(m, kind)(*args)
    elif kind == "firewall_denied":
        m.firewall_denied(args[0]).inc(args[1])
    elif kind == "auth_failures":
        m.auth_failures(args[0], REASONS)[args[1]].inc(args[2])
    elif kind == "throttled":
        m.throttled(args[0], CALLER_CLASSES)[args[1]].inc(args[2])
    elif kind == "cache_results":
        m.cache_results(args[0])[args[1]].inc(args[2])
    elif kind == "store_errors":
        m.store_errors(args[0]).inc(args[1])
    elif kind == "cache_invalidations_total":
        m.cache_invalidations_total.labels(reason=args[0]).inc(args[1])
    elif kind == "request_duration":
        m.request_duration.labels(args[0]).observe(args[1])
    elif kind == "upstream_target_healthy":
        m.upstream_target_healthy.labels(*args[:2]).set(args[2])
    elif kind == "cache_bytes":
        m.cache_bytes.set(args[0])
    else:  # a counter family bound by hand, as gateway/upstream and the servers do
        getattr(m, kind).labels(*args[:-1]).inc(args[-1])


@contextmanager
def pinned_clock() -> Iterator[None]:
    """Both kinds of metric stamp a child's ``_created`` with time.time() when it is made."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "time", lambda: NOW)
        yield


def both(calls: list[Op]) -> tuple[Metrics, ReferenceMetrics]:
    with pinned_clock():
        new, old = Metrics(), ReferenceMetrics()
        for op in calls:
            apply(new, op)
            apply(old, op)
    return new, old


def text(metrics: Metrics | ReferenceMetrics) -> str:
    return generate_latest(metrics.registry).decode()


@given(st.lists(ops, max_size=40))
def test_the_exposition_is_byte_for_byte_prometheus_clients(calls: list[Op]) -> None:
    new, old = both(calls)
    assert text(new) == text(old)


@given(st.lists(ops, max_size=15))
def test_without_created_series_too(calls: list[Op]) -> None:
    """PROMETHEUS_DISABLE_CREATED_SERIES (or disable_created_metrics()) drops them from both."""
    new, old = both(calls)
    disable_created_metrics()
    try:
        assert "_created" not in text(new)
        assert text(new) == text(old)
    finally:
        enable_created_metrics()


@given(st.lists(st.lists(ops, max_size=12), min_size=1, max_size=3))
def test_the_merged_totals_of_several_workers_are_unchanged(workers: list[list[Op]]) -> None:
    """What the supervisor serves: every worker's text parsed, summed, rendered."""
    pairs = [both(calls) for calls in workers]
    merged_new = merge_families([parse_exposition(text(new)) for new, _ in pairs])
    merged_old = merge_families([parse_exposition(text(old)) for _, old in pairs])
    assert render(merged_new) == render(merged_old)


def test_a_fresh_registry_has_the_series_made_up_front_at_zero() -> None:
    new, old = both([])
    assert text(new) == text(old)
    r = new.registry
    assert r.get_sample_value("gateway_config_reloads_total", {"result": "failure"}) == 0
    assert r.get_sample_value("gateway_cache_invalidations_total", {"reason": "purge"}) == 0
    new.cache_results("menu")
    assert r.get_sample_value("gateway_cache_requests_total", {"route": "menu", "result": "stale"}) == 0


@pytest.mark.parametrize("index", range(len(BOUNDS)))
def test_an_observation_on_a_bound_is_in_that_bucket(index: int) -> None:
    """``le`` means less than or equal: exactly on a bound counts in that bound's bucket."""
    new, old = both([("observe_request", "menu", "GET", 200, BOUNDS[index])])
    assert text(new) == text(old)

    def bucket(le: float) -> float | None:
        labels = {"route": "menu", "le": f"{le}" if le != math.inf else "+Inf"}
        return new.registry.get_sample_value("gateway_request_duration_seconds_bucket", labels)

    assert bucket(BOUNDS[index]) == 1
    if index:
        assert bucket(BOUNDS[index - 1]) == 0
    assert bucket(math.inf) == 1


@pytest.mark.parametrize(
    ("observed", "in_finite_buckets", "count", "total"),
    [
        (30.000001, 0, 1, "30.000001"),  # above the last finite bound: only +Inf
        (math.inf, 0, 1, "+Inf"),
        (-1.0, 14, 1, "-1.0"),  # below every bound: in all of them
        (math.nan, 0, 0, "NaN"),  # <= no bound: in no bucket and not counted, only summed
    ],
)
def test_the_edges_of_the_buckets(observed: float, in_finite_buckets: int, count: int, total: str) -> None:
    new, old = both([("observe_upstream", "app", "127.0.0.1:8001", "200", observed)])
    assert text(new) == text(old)
    lines = text(new).splitlines()
    finite = [line for line in lines if line.startswith("gateway_upstream_duration_seconds_bucket") and "+Inf" not in line]
    assert sum(line.endswith(" 1.0") for line in finite) == in_finite_buckets
    assert f'gateway_upstream_duration_seconds_bucket{{le="+Inf",upstream="app"}} {count}.0' in lines
    assert f'gateway_upstream_duration_seconds_count{{upstream="app"}} {count}.0' in lines
    assert f'gateway_upstream_duration_seconds_sum{{upstream="app"}} {total}' in lines


def test_odd_label_values_are_escaped_and_survive_the_merge() -> None:
    route = 'a "quoted"\\path\nwith a newline'
    new, old = both([("observe_request", route, "GET", 200, 0.002)] * 2)
    assert text(new) == text(old)
    assert 'gateway_requests_total{code="200",method="GET",route="a \\"quoted\\"\\\\path\\nwith a newline"} 2.0' in text(new)
    merged = merge_families([parse_exposition(text(new)), parse_exposition(text(new))])
    totals = [s for f in merged for s in f.samples if s.name == "gateway_requests_total"]
    assert [(s.labels["route"], s.value) for s in totals] == [(route, 4.0)]


def test_methods_outside_the_standard_set_share_one_label() -> None:
    metrics = Metrics()
    for method in ("PROPFIND", "get", "X" * 100):
        metrics.observe_request("menu", method, 200, 0.01)
    metrics.observe_request("menu", "GET", 200, 0.01)
    labels = {"route": "menu", "code": "200"}
    assert metrics.registry.get_sample_value("gateway_requests_total", {**labels, "method": "OTHER"}) == 3
    assert metrics.registry.get_sample_value("gateway_requests_total", {**labels, "method": "GET"}) == 1


def test_the_per_request_child_cache_stops_growing_at_its_bound() -> None:
    """Keyed by the raw method, the cache would grow with every odd method a client
    invents; past 10 000 keys requests are still counted, only not cached."""
    metrics = Metrics()
    for i in range(10_050):
        metrics.observe_request("menu", f"M{i}", 200, 0.01)
        metrics.observe_upstream("app", "t", f"c{i}", None)
    assert len(metrics._request_children) == 10_000  # noqa: SLF001 - the guard itself
    assert len(metrics._upstream_children) == 10_000  # noqa: SLF001
    labels = {"route": "menu", "method": "OTHER", "code": "200"}
    assert metrics.registry.get_sample_value("gateway_requests_total", labels) == 10_050
    assert metrics.registry.get_sample_value("gateway_request_duration_seconds_count", {"route": "menu"}) == 10_050


def test_the_families_keep_their_registry_order_among_the_gauges() -> None:
    """Each family is its own collector, so /metrics lists them where it always did."""
    names = [family.name for family in Metrics().registry.collect()]
    assert names == [family.name for family in ReferenceMetrics().registry.collect()]
    assert names.index("gateway_upstream_target_healthy") == 4


def test_a_second_metrics_on_one_registry_is_refused_as_before() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)
