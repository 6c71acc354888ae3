"""The lock-free families keep prometheus-client's rules where callers could notice.

How they render is compared byte for byte with prometheus-client in
tests/unit/test_metrics.py; here is the rest of the API the gateway binds at build time.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gateway.metrics_families import CounterFamily, HistogramFamily


def counter(registry: CollectorRegistry | None = None) -> CounterFamily:
    return CounterFamily("jobs_total", "Jobs done.", ("queue", "result"), registry=registry)


def test_labels_bind_one_child_however_they_are_given() -> None:
    family = counter()
    child = family.labels("mail", 200)
    assert family.labels("mail", "200") is child  # str() of each value, as prometheus-client
    assert family.labels(result="200", queue="mail") is child


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("mail",), {}, "Incorrect label count"),
        (("mail", "ok", "extra"), {}, "Incorrect label count"),
        ((), {"queue": "mail"}, "Incorrect label names"),
        (("mail",), {"result": "ok"}, "both"),
    ],
)
def test_wrong_labels_are_refused(args: tuple[str, ...], kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        counter().labels(*args, **kwargs)


def test_a_counter_never_goes_down() -> None:
    child = counter().labels("mail", "ok")
    with pytest.raises(ValueError, match="non-negative"):
        child.inc(-1)
    child.inc(0)
    child.inc(2.5)
    child.inc()
    assert child.value == 3.5


def test_the_family_is_named_without_total_and_its_samples_with_it() -> None:
    registry = CollectorRegistry()
    counter(registry).labels("mail", "ok").inc()
    assert registry.get_sample_value("jobs_total", {"queue": "mail", "result": "ok"}) == 1
    assert [f.name for f in registry.collect()] == ["jobs"]


def test_one_name_twice_on_a_registry_is_refused() -> None:
    registry = CollectorRegistry()
    counter(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        CounterFamily("jobs", "Again.", ("queue",), registry=registry)


@pytest.mark.parametrize(
    ("buckets", "labelnames", "message"),
    [
        ((1.0, 0.5), ("route",), "sorted"),
        ((math.inf,), ("route",), "at least two"),
        ((1.0,), ("route", "le"), "le"),
        ((1.0,), (), "label names"),
    ],
)
def test_a_bad_histogram_declaration_is_refused(buckets: tuple[float, ...], labelnames: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HistogramFamily("h", "A histogram.", labelnames, buckets=buckets, registry=None)


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=6, unique=True).map(sorted),
    st.booleans(),
    st.lists(st.floats(), max_size=20),
)
def test_any_bucket_layout_matches_prometheus_client(bounds: list[float], with_inf: bool, observed: list[float]) -> None:
    """Negative bounds (no ``_sum`` then), an explicit +Inf or not, ``le`` formatting of
    any float: the same declaration gives the same buckets and samples."""
    buckets = [*bounds, math.inf] if with_inf else bounds
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = HistogramFamily("h", "A histogram.", ("k",), buckets=buckets, registry=ours)
    reference = Histogram("h", "A histogram.", ("k",), buckets=buckets, registry=theirs)
    for value in observed:
        mine.labels("v").observe(value)
        reference.labels("v").observe(value)
    assert _without_created(generate_latest(ours)) == _without_created(generate_latest(theirs))


def _without_created(text: bytes) -> list[str]:
    """The creation times differ by the microseconds between the two observe() calls."""
    return [line for line in text.decode().splitlines() if not line.startswith("h_created")]
