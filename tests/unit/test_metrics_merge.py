"""Merging worker registries at scrape time: counters sum, gauges max, nothing lost."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric

from gateway.metrics import Metrics
from gateway.metrics_merge import (
    ExpositionError,
    WorkerMetrics,
    merge_families,
    parse_exposition,
    render,
)


def worker(*, requests: Mapping[tuple[str, str], int] = MappingProxyType({}),
           healthy: Mapping[str, int] = MappingProxyType({}),
           durations: tuple[float, ...] = (), reloads: int = 0) -> list[Metric]:
    """One worker's registry as the supervisor sees it: exposition text, parsed."""
    metrics = Metrics()
    for (route, code), n in requests.items():
        for _ in range(n):
            metrics.requests_total.labels(route, "GET", code).inc()
    for target, value in healthy.items():
        metrics.upstream_target_healthy.labels("app", target).set(value)
    for seconds in durations:
        metrics.request_duration.labels("main").observe(seconds)
    if reloads:
        metrics.config_reloads_total.labels("success").inc(reloads)
    return parse_exposition(generate_latest(metrics.registry).decode())


def samples(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
    }


def value(families: list[Metric], name: str, **labels: str) -> float | None:
    return samples(families).get((name, tuple(sorted(labels.items()))))


@pytest.mark.parametrize(
    ("workers", "name", "labels", "expected"),
    [
        # counters: each worker counted its own requests, the gateway answered the sum
        ([{"requests": {("main", "200"): 3}}, {"requests": {("main", "200"): 4}}],
         "gateway_requests_total", {"route": "main", "method": "GET", "code": "200"}, 7),
        # a label set only one worker has is kept as it is
        ([{"requests": {("main", "200"): 3}}, {"requests": {("main", "502"): 2}}],
         "gateway_requests_total", {"route": "main", "method": "GET", "code": "502"}, 2),
        # gauges: healthy if any worker's checker sees the target healthy
        ([{"healthy": {"a:1": 0}}, {"healthy": {"a:1": 1}}],
         "gateway_upstream_target_healthy", {"upstream": "app", "target": "a:1"}, 1),
        ([{"healthy": {"a:1": 0}}, {"healthy": {"a:1": 0}}],
         "gateway_upstream_target_healthy", {"upstream": "app", "target": "a:1"}, 0),
        # histogram buckets, _count and _sum are summed per label set
        ([{"durations": (0.002, 0.2)}, {"durations": (0.002,)}],
         "gateway_request_duration_seconds_bucket", {"route": "main", "le": "0.0025"}, 2),
        ([{"durations": (0.002, 0.2)}, {"durations": (0.002,)}],
         "gateway_request_duration_seconds_bucket", {"route": "main", "le": "+Inf"}, 3),
        ([{"durations": (0.002, 0.2)}, {"durations": (0.002,)}],
         "gateway_request_duration_seconds_count", {"route": "main"}, 3),
        ([{"durations": (0.25, 0.5)}, {"durations": (1.0,)}],
         "gateway_request_duration_seconds_sum", {"route": "main"}, 1.75),
    ],
)
def test_merge_rules(workers, name, labels, expected):
    merged = merge_families([worker(**w) for w in workers])
    assert value(merged, name, **labels) == expected


def test_created_series_are_dropped():
    merged = merge_families([worker(requests={("main", "200"): 1}), worker(requests={("main", "200"): 1})])
    assert not [name for name, _ in samples(merged) if name.endswith("_created")]
    assert b"_created" not in render(merged)


def test_own_families_replace_the_workers():
    """The supervisor counts reloads once; each worker also counted the forwarded SIGHUP."""
    own = Metrics()
    own.config_reloads_total.labels("success").inc()
    own_families = [f for f in own.registry.collect() if f.name == "gateway_config_reloads"]
    merged = merge_families([worker(reloads=1), worker(reloads=1)], own=own_families)
    assert value(merged, "gateway_config_reloads_total", result="success") == 1


def test_summed_gauges_are_summed():
    def with_cache_bytes(n: float) -> list[Metric]:
        registry = CollectorRegistry()
        Gauge("gateway_cache_bytes", "bytes", registry=registry).set(n)
        Gauge("other_gauge", "max", registry=registry).set(n)
        return parse_exposition(generate_latest(registry).decode())

    merged = merge_families([with_cache_bytes(100), with_cache_bytes(50)])
    assert value(merged, "gateway_cache_bytes") == 150
    assert value(merged, "other_gauge") == 100


def test_render_round_trips_and_keeps_bucket_order():
    merged = merge_families([worker(durations=(0.002,)), worker(durations=(3.0,))])
    text = render(merged).decode()
    assert 'gateway_request_duration_seconds_bucket{le="+Inf",route="main"} 2.0' in text
    buckets = [line.split('le="')[1].split('"')[0] for line in text.splitlines()
               if line.startswith("gateway_request_duration_seconds_bucket")]
    assert buckets[-1] == "+Inf"
    assert [float(b) for b in buckets[:-1]] == sorted(float(b) for b in buckets[:-1])
    assert "# TYPE gateway_requests_total counter" in text
    assert samples(parse_exposition(text)) == samples(merged)


def test_no_workers_still_renders_families():
    own = Metrics()
    text = render(merge_families([], own=list(own.registry.collect()))).decode()
    assert "# TYPE gateway_config_reloads_total counter" in text


def test_unparseable_text_is_a_typed_error():
    with pytest.raises(ExpositionError):
        parse_exposition("gateway_requests_total{code=\"200\" 1\n")


class TestWorkerMetrics:
    def test_a_dead_workers_counters_stay_but_its_gauges_go(self):
        memory = WorkerMetrics()
        first = memory.merged({101: worker(requests={("main", "200"): 5}, healthy={"a:1": 1}),
                               102: worker(requests={("main", "200"): 3})})
        assert value(first, "gateway_requests_total", route="main", method="GET", code="200") == 8
        memory.retire(101)
        # 101's successor (pid 103) starts from zero; the merged counter does not go back.
        later = memory.merged({103: worker(requests={("main", "200"): 1}),
                               102: worker(requests={("main", "200"): 4})})
        assert value(later, "gateway_requests_total", route="main", method="GET", code="200") == 10
        assert value(later, "gateway_upstream_target_healthy", upstream="app", target="a:1") is None

    def test_retiring_an_unscraped_worker_changes_nothing(self):
        memory = WorkerMetrics()
        memory.retire(999)
        merged = memory.merged({1: worker(requests={("main", "200"): 2})})
        assert value(merged, "gateway_requests_total", route="main", method="GET", code="200") == 2

    def test_retired_totals_accumulate_over_several_deaths(self):
        memory = WorkerMetrics()
        for pid in (1, 2, 3):
            memory.merged({pid: worker(requests={("main", "200"): 2})})
            memory.retire(pid)
        merged = memory.merged({})
        assert value(merged, "gateway_requests_total", route="main", method="GET", code="200") == 6


def test_a_plain_counter_without_total_suffix_merges():
    registry = CollectorRegistry()
    Counter("jobs", "jobs done", registry=registry).inc(2)
    text = generate_latest(registry).decode()
    merged = merge_families([parse_exposition(text), parse_exposition(text)])
    assert value(merged, "jobs_total") == 4
