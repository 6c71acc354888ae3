"""The memory store: exact arithmetic on a test clock, and a bounded key space."""

from __future__ import annotations

import pytest

from gateway.store import BucketPolicy, MemoryStore
from tests.contract.conftest import FakeClock


def store_and_clock(**kwargs: int) -> tuple[MemoryStore, FakeClock]:
    clock = FakeClock()
    return MemoryStore(clock=clock, **kwargs), clock


@pytest.mark.parametrize(
    ("count", "period", "wait", "allowed"),
    [
        (10, 60, 6.0, True),  # 6 s x (10/60)/s is 0.9999999999999999 in floating point
        (10, 60, 5.99, False),
        (3, 1, 1 / 3, True),
        (1, 86400, 86399.0, False),
        (1, 86400, 86400.0, True),
    ],
)
def test_refill_arithmetic_is_exact(count: int, period: int, wait: float, allowed: bool) -> None:
    store, clock = store_and_clock()
    policy = BucketPolicy(capacity=1, refill_per_second=count / period)
    assert store.take_now("k", policy).allowed
    clock.now += wait
    assert store.take_now("k", policy).allowed is allowed


def test_refused_answer_says_when_to_come_back() -> None:
    store, clock = store_and_clock()
    policy = BucketPolicy(capacity=2, refill_per_second=0.5)  # a token every 2 s
    store.take_now("k", policy)
    store.take_now("k", policy)
    clock.now += 0.5
    refused = store.take_now("k", policy)
    assert refused == (False, 0, pytest.approx(3.5), pytest.approx(1.5))


def test_a_clock_that_steps_back_adds_nothing() -> None:
    store, clock = store_and_clock()
    policy = BucketPolicy(capacity=1, refill_per_second=1.0)
    assert store.take_now("k", policy).allowed
    clock.now -= 100
    assert not store.take_now("k", policy).allowed


def test_keys_are_bounded_and_the_idlest_goes_first() -> None:
    store, clock = store_and_clock(max_keys=3)
    policy = BucketPolicy(capacity=1, refill_per_second=1 / 3600)
    for key in ("a", "b", "c"):
        assert store.take_now(key, policy).allowed
        clock.now += 1
    assert not store.take_now("a", policy).allowed  # "a" is now the most recently used
    assert store.take_now("d", policy).allowed  # evicts "b", the idlest
    assert len(store) == 3 and store.evictions == 1
    assert not store.take_now("a", policy).allowed  # kept: still empty
    assert not store.take_now("c", policy).allowed
    assert store.take_now("b", policy).allowed  # forgotten = full again (and evicts "d")


def test_a_flood_of_callers_does_not_grow_memory() -> None:
    store, _ = store_and_clock(max_keys=1000)
    policy = BucketPolicy(capacity=5, refill_per_second=1.0)
    for n in range(20_000):
        store.take_now(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", policy)
    assert len(store) == 1000
    assert store.status()["evictions"] == 19_000
    # In-process state is always there: the status page shows it reachable, error-free.
    assert store.status()["reachable"] is True and store.status()["last_error"] is None


@pytest.mark.parametrize(("capacity", "rate"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_policy_refuses_impossible_shapes(capacity: int, rate: float) -> None:
    with pytest.raises(ValueError):
        BucketPolicy(capacity=capacity, refill_per_second=rate)
