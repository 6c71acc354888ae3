"""The Redis store against real redis-server processes: keys, TTLs, script reloads,
outages under each ``on_error`` mode, the circuit's bound, recovery without restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from gateway.config.store import StoreConfig
from gateway.metrics import Metrics
from gateway.store import BucketPolicy, StoreUnavailable
from gateway.store.redis import RedisStore, bucket_key
from tests.redis_server import RedisServer, free_port

SLOW = BucketPolicy(capacity=3, refill_per_second=1 / 60)


def make_store(url: str, metrics: Metrics | None = None, **config: Any) -> RedisStore:
    settings = {"kind": "redis", "url": url, "timeout": "50ms", **config}
    return RedisStore(StoreConfig.model_validate(settings), metrics=metrics or Metrics(), probe_interval=0.3)


def errors(metrics: Metrics, operation: str) -> float:
    return metrics.registry.get_sample_value("gateway_store_errors_total", {"operation": operation}) or 0.0


def fresh_key() -> str:
    return f"unit|anonymous|{uuid.uuid4().hex}"


def test_bucket_keys_are_namespaced_and_hash_tagged() -> None:
    assert bucket_key("menu|authenticated|alice") == b"gw:tb:{menu|authenticated|alice}"


async def test_every_bucket_has_a_ttl_until_it_would_be_full(redis_server: RedisServer) -> None:
    store = make_store(redis_server.url, timeout="1s")
    await store.start()
    key = fresh_key()
    try:
        await store.take(key, BucketPolicy(capacity=10, refill_per_second=1.0))  # 1 token short: full in 1 s
        ttl = int(redis_server.cli("pttl", bucket_key(key).decode()))
        assert 1000 < ttl <= 2000
        fields = redis_server.cli("hgetall", bucket_key(key).decode()).split()
        assert fields[0::2] == ["tokens", "stamp"] and float(fields[1]) == 9.0
    finally:
        await store.close()


async def test_script_flush_is_survived(redis_server: RedisServer) -> None:
    store = make_store(redis_server.url, timeout="1s")
    await store.start()
    key = fresh_key()
    try:
        assert (await store.take(key, SLOW)).remaining == 2
        redis_server.cli("script", "flush")
        # NOSCRIPT: the command is sent again as EVAL, which loads the script, and the
        # bucket carries on where it was.
        assert (await store.take(key, SLOW)).remaining == 1
        assert (await store.take(key, SLOW)).remaining == 0
        assert store.available
    finally:
        await store.close()


@pytest.mark.parametrize("mode", ["allow", "deny", "local"])
async def test_outage_modes(make_redis: Callable[..., RedisServer], mode: str) -> None:
    server = make_redis()
    metrics = Metrics()
    store = make_store(server.url, metrics, on_error=mode)
    await store.start()
    key = fresh_key()
    try:
        assert (await store.take(key, SLOW)).allowed
        server.stop()
        outcomes = []
        for _ in range(5):
            try:
                decision = await store.take(key, SLOW)
                outcomes.append((decision.allowed, decision.remaining))
            except StoreUnavailable as exc:
                assert 0 < exc.retry_after <= 0.3
                outcomes.append("503")
        expected = {
            "allow": [(True, 3)] * 5,  # not counted: reported as a full bucket
            "deny": ["503"] * 5,
            "local": [(True, 2), (True, 1), (True, 0), (False, 0), (False, 0)],  # in-process buckets
        }[mode]
        assert outcomes == expected
        assert not store.available and store.status()["state"] == "down"
        assert errors(metrics, "take") == 1  # the circuit skipped Redis after the first failure
    finally:
        await store.close()


async def test_a_hung_redis_costs_one_timeout_per_probe_interval(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis()
    metrics = Metrics()
    store = make_store(server.url, metrics)  # timeout 50 ms, probe every 300 ms
    await store.start()
    try:
        assert (await store.take(fresh_key(), SLOW)).allowed
        server.pause()
        started = time.perf_counter()
        slowest = 0.0
        for _ in range(40):
            t0 = time.perf_counter()
            assert (await store.take(fresh_key(), SLOW)).allowed  # on_error local
            slowest = max(slowest, time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        assert slowest < 0.25, slowest
        # 40 requests, at most a timeout for the first failure and one per due probe.
        assert elapsed < 0.05 * (2 + elapsed / 0.3) + 0.2, elapsed
        assert errors(metrics, "take") <= 2 + elapsed / 0.3
    finally:
        server.resume()
        await store.close()


async def test_concurrent_requests_during_an_outage_are_bounded(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis()
    store = make_store(server.url)
    await store.start()
    try:
        assert (await store.take(fresh_key(), SLOW)).allowed
        server.pause()
        started = time.perf_counter()
        decisions = await asyncio.gather(*(store.take(fresh_key(), SLOW) for _ in range(200)))
        assert time.perf_counter() - started < 0.4
        assert all(d.allowed for d in decisions)
    finally:
        server.resume()
        await store.close()


async def test_redis_coming_back_is_noticed_without_a_restart(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis()
    store = make_store(server.url, on_error="deny")
    await store.start()
    key = fresh_key()
    try:
        assert (await store.take(key, SLOW)).remaining == 2
        assert store.status()["reachable"] is True and store.status()["last_error"] is None
        server.stop()
        with pytest.raises(StoreUnavailable):
            await store.take(key, SLOW)
        down = store.status()
        assert down["reachable"] is False
        assert down["last_error"]["operation"] == "take" and down["last_error"]["error"]
        restarted = make_redis(port=server.port)  # a new process: empty, no scripts loaded
        await asyncio.sleep(0.35)  # one probe interval
        assert (await store.take(key, SLOW)).remaining == 2  # a fresh bucket, in the new Redis
        assert store.available
        # Reachable again; the last error stays on show (what happened, and when).
        assert store.status()["reachable"] is True
        assert store.status()["last_error"]["error"] == down["last_error"]["error"]
        assert (await store.take(key, SLOW)).remaining == 1
        assert restarted.cli("exists", bucket_key(key).decode()).strip() == "1"
    finally:
        await store.close()


async def test_start_with_redis_down_then_up(make_redis: Callable[..., RedisServer]) -> None:
    port = free_port()
    metrics = Metrics()
    store = make_store(f"redis://127.0.0.1:{port}/0", metrics, on_error="local")
    await store.start()  # must not raise: the gateway serves with on_error meanwhile
    try:
        assert not store.available and errors(metrics, "connect") == 1
        shown = store.status()
        assert shown["reachable"] is False
        assert shown["last_error"]["operation"] == "connect"
        assert "ConnectionError" in shown["last_error"]["error"] or "refused" in shown["last_error"]["error"].lower()
        assert (await store.take(fresh_key(), SLOW)).allowed
        make_redis(port=port)
        await asyncio.sleep(0.35)
        assert (await store.take(fresh_key(), SLOW)).allowed
        assert store.available
    finally:
        await store.close()


def test_status_never_shows_the_password() -> None:
    store = make_store("redis://gw:s3cret@127.0.0.1:6379/2")
    status = store.status()
    assert "s3cret" not in str(status)
    assert status["url"] == "redis://gw:***@127.0.0.1:6379/2"
    assert status["on_error"] == "local" and status["cluster"] is False
