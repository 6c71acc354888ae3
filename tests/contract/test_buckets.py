"""One token-bucket suite, run against every store (memory with a test clock; Redis
and Redis Cluster with the server's own clock, so real short periods and tolerances)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store import BucketPolicy
from tests.contract.conftest import StoreUnderTest

# Rates slow enough that nothing refills while a test drains a bucket, even on a busy VM.
SLOW = 1 / 60


async def drain(s: StoreUnderTest, key: str, policy: BucketPolicy, n: int) -> list[bool]:
    return [(await s.store.take(key, policy)).allowed for _ in range(n)]


async def test_full_bucket_allows_capacity_then_refuses(bucket_store: StoreUnderTest) -> None:
    policy = BucketPolicy(capacity=5, refill_per_second=SLOW)
    key = bucket_store.key("a")
    remaining = []
    for _ in range(5):
        decision = await bucket_store.store.take(key, policy)
        assert decision.allowed and decision.retry_after == 0
        remaining.append(decision.remaining)
    assert remaining == [4, 3, 2, 1, 0]
    refused = await bucket_store.store.take(key, policy)
    assert not refused.allowed
    assert refused.remaining == 0
    # One token every 60 s; the bucket is full again after 5 of them.
    assert 58 < refused.retry_after <= 60
    assert 298 < refused.reset <= 300


async def test_first_take_reports_time_to_full(bucket_store: StoreUnderTest) -> None:
    decision = await bucket_store.store.take(bucket_store.key("a"), BucketPolicy(capacity=3, refill_per_second=2.0))
    assert decision.allowed and decision.remaining == 2
    assert decision.reset == pytest.approx(0.5, abs=0.002)


async def test_keys_are_independent(bucket_store: StoreUnderTest) -> None:
    policy = BucketPolicy(capacity=2, refill_per_second=SLOW)
    assert await drain(bucket_store, bucket_store.key("a"), policy, 3) == [True, True, False]
    assert await drain(bucket_store, bucket_store.key("b"), policy, 3) == [True, True, False]


async def test_refill_gives_one_token_per_period(bucket_store: StoreUnderTest) -> None:
    policy = BucketPolicy(capacity=2, refill_per_second=5.0)  # a token every 200 ms
    key = bucket_store.key("a")
    assert await drain(bucket_store, key, policy, 2) == [True, True]
    refused = await bucket_store.store.take(key, policy)
    assert not refused.allowed
    assert 0 < refused.retry_after <= 0.2
    await bucket_store.advance(refused.retry_after + (0 if bucket_store.exact else 0.04))
    assert (await bucket_store.store.take(key, policy)).allowed
    assert not (await bucket_store.store.take(key, policy)).allowed


async def test_refill_stops_at_capacity(bucket_store: StoreUnderTest) -> None:
    policy = BucketPolicy(capacity=3, refill_per_second=20.0)  # full in 150 ms
    key = bucket_store.key("a")
    assert await drain(bucket_store, key, policy, 3) == [True, True, True]
    await bucket_store.advance(0.5)
    # Three tokens, however long the bucket sat: a burst is bounded by its capacity.
    # (Real time keeps running while the drain is sent: allow one refilled token.)
    allowed = sum(await drain(bucket_store, key, policy, 5))
    assert allowed == 3 if bucket_store.exact else allowed in (3, 4)


async def test_burst_larger_than_rate(bucket_store: StoreUnderTest) -> None:
    policy = BucketPolicy(capacity=20, refill_per_second=SLOW)
    assert sum(await drain(bucket_store, bucket_store.key("a"), policy, 25)) == 20


async def test_concurrent_takes_are_atomic(bucket_store: StoreUnderTest) -> None:
    policy = BucketPolicy(capacity=10, refill_per_second=SLOW)
    key = bucket_store.key("a")
    decisions = await asyncio.gather(*(bucket_store.store.take(key, policy) for _ in range(60)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


async def test_refused_requests_do_not_delay_refill(bucket_store: StoreUnderTest) -> None:
    policy = BucketPolicy(capacity=1, refill_per_second=5.0)
    key = bucket_store.key("a")
    assert (await bucket_store.store.take(key, policy)).allowed
    for _ in range(5):  # hammering while empty must not push the next token back
        assert not (await bucket_store.store.take(key, policy)).allowed
    await bucket_store.advance(0.2 + (0 if bucket_store.exact else 0.04))
    assert (await bucket_store.store.take(key, policy)).allowed


async def test_policies_on_one_key_share_the_bucket_state(bucket_store: StoreUnderTest) -> None:
    # A reload that changes a route's rate keeps its callers' buckets: the new shape
    # applies to the tokens already there (never more than the new capacity).
    key = bucket_store.key("a")
    assert await drain(bucket_store, key, BucketPolicy(capacity=5, refill_per_second=SLOW), 4) == [True] * 4
    assert await drain(bucket_store, key, BucketPolicy(capacity=2, refill_per_second=SLOW), 2) == [True, False]
