"""Throttling with ``store.kind: redis`` through real gateway processes and real
redis-server processes: one exact limit across instances (single Redis and Redis
Cluster), and what an outage and a recovery look like from the client's side."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import StubUpstream, simple_config
from tests.redis_server import RedisClusterNodes, RedisServer

PROBE_INTERVAL = 1.0  # gateway.store.circuit.PROBE_INTERVAL


def redis_config(upstream: str, url: str, *, limit: str = "10/minute", **store: Any) -> dict[str, Any]:
    config = simple_config(upstream)
    config["store"] = {"kind": "redis", "url": url, **store}
    config["throttle"] = {"anonymous": limit}
    return config


async def send(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, float]:
    started = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
        return response.status, response.headers, time.perf_counter() - started


async def spread(urls: list[str], count: int) -> list[int]:
    """``count`` concurrent requests from one client, round-robin over ``urls``."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        answers = await asyncio.gather(*(send(session, urls[n % len(urls)]) for n in range(count)))
    return [status for status, _, _ in answers]


async def test_two_gateways_share_one_exact_limit(stub: StubUpstream, gateway_factory: Any, redis_server: RedisServer) -> None:
    redis_server.cli("flushall")
    config = redis_config(stub.url, redis_server.url)
    first, second = gateway_factory(config), gateway_factory(config)
    statuses = await spread([first.url + "/a", second.url + "/b"], 40)
    assert sorted(statuses) == [200] * 10 + [429] * 30
    assert len(stub.requests) == 10


async def test_redis_cluster_shares_one_exact_limit(
    stub: StubUpstream, gateway_factory: Any, redis_cluster: RedisClusterNodes
) -> None:
    config = redis_config(stub.url, redis_cluster.url, cluster=True, timeout="200ms")
    first, second = gateway_factory(config), gateway_factory(config)
    statuses = await spread([first.url + "/a", second.url + "/b"], 40)
    assert sorted(statuses) == [200] * 10 + [429] * 30
    # Per-client buckets land on whichever node owns their slot; every one is exact.
    for route in ("x", "y", "z"):
        config_n = redis_config(stub.url, redis_cluster.url, cluster=True, timeout="200ms", limit="3/minute")
        config_n["routes"][0]["name"] = route
        gw = gateway_factory(config_n)
        assert sorted(await spread([gw.url + "/"], 8)) == [200] * 3 + [429] * 5


async def wait_for_redis_decision(session: aiohttp.ClientSession, url: str, remaining: str) -> None:
    """Poll until an answer comes from the (empty, restarted) Redis: a 200 with
    ``remaining`` tokens left of a fresh bucket."""
    deadline = time.monotonic() + PROBE_INTERVAL * 4
    while time.monotonic() < deadline:
        status, headers, _ = await send(session, url)
        if status == 200 and headers["RateLimit-Remaining"] == remaining:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the gateway did not go back to Redis after it restarted")


@pytest.mark.parametrize("mode", ["allow", "deny", "local"])
async def test_outage_and_recovery(stub: StubUpstream, gateway_factory: Any, make_redis: Any, mode: str) -> None:
    server = make_redis()
    gw = gateway_factory(redis_config(stub.url, server.url, limit="5/minute", on_error=mode, timeout="50ms"))
    url = gw.url + "/"
    async with aiohttp.ClientSession() as session:
        assert [(await send(session, url))[1]["RateLimit-Remaining"] for _ in range(2)] == ["4", "3"]

        server.stop()
        outage = [await send(session, url) for _ in range(10)]
        assert max(elapsed for _, _, elapsed in outage) < 0.5
        statuses = [status for status, _, _ in outage]
        expected = {
            "allow": [200] * 10,
            "deny": [503] * 10,
            "local": [200] * 5 + [429] * 5,  # this process's own buckets meanwhile
        }[mode]
        assert statuses == expected
        if mode == "deny":
            assert int(outage[0][1]["Retry-After"]) >= 1

        # A new redis-server on the same port: empty, no script loaded (NOSCRIPT).
        restarted = make_redis(port=server.port)
        await wait_for_redis_decision(session, url, "4")
        assert [(await send(session, url))[0] for _ in range(5)] == [200, 200, 200, 200, 429]

        restarted.cli("script", "flush")
        status, headers, _ = await send(session, url)
        assert status == 429 and headers["RateLimit-Remaining"] == "0"  # the bucket survived, the script reloaded

        async with session.get(gw.admin_url + "/metrics") as response:
            metrics = await response.text()
        async with session.get(gw.admin_url + "/status") as response:
            store = (await response.json())["store"]
    failures = [line for line in metrics.splitlines() if line.startswith('gateway_store_errors_total{operation="take"}')]
    assert failures and 1 <= float(failures[0].split()[-1]) <= 6  # one per probe, not one per request
    assert store["state"] == "up" and store["on_error"] == mode


async def test_a_hung_redis_costs_no_more_than_a_timeout_per_probe(
    stub: StubUpstream, gateway_factory: Any, make_redis: Any
) -> None:
    server = make_redis()
    gw = gateway_factory(redis_config(stub.url, server.url, limit="1000/minute", timeout="50ms"))
    async with aiohttp.ClientSession() as session:
        assert (await send(session, gw.url + "/"))[0] == 200
        server.pause()
        try:
            started = time.perf_counter()
            answers = [await send(session, gw.url + "/") for _ in range(30)]
            elapsed = time.perf_counter() - started
        finally:
            server.resume()
    assert {status for status, _, _ in answers} == {200}
    assert max(seconds for _, _, seconds in answers) < 0.5
    # 30 requests: the first pays the 50 ms timeout, then Redis is skipped until a probe.
    assert elapsed < 1.5, elapsed
