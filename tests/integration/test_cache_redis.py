"""The response cache on ``store.kind: redis`` through two real gateway processes
sharing one redis-server: one cache for both instances (fills, coalescing, write
invalidation, purges), and what a Redis outage looks like from the client's side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from gateway.cache.key import make_key
from gateway.cache.redis_store import RedisCacheStore, lease_key
from gateway.cache.response_cache import ResponseCache
from gateway.config.store import StoreConfig
from gateway.metrics import Metrics
from tests.integration.conftest import StubUpstream, simple_config
from tests.integration.gateway_process import GatewayProcess
from tests.redis_server import RedisServer

HOST = "api.example.test"
"""Both instances see one public host (as behind a load balancer): it is in the key."""


def menu_routes(delay: float = 0.0) -> Callable[[web.Application], None]:
    """GET /menu answers the current version (after ``delay``); a POST makes a new one."""

    def routes(app: web.Application) -> None:
        state = {"version": 1}

        async def read(request: web.Request) -> web.Response:
            await asyncio.sleep(delay)
            return web.json_response({"version": state["version"], "path": request.path})

        async def write(request: web.Request) -> web.Response:
            state["version"] += 1
            return web.json_response({"version": state["version"]}, status=201)

        for path in ("/menu", "/menu/{id}", "/other"):
            app.router.add_get(path, read)
            app.router.add_post(path, write)

    return routes


def cache_config(upstream: str, redis_url: str, **store: Any) -> dict[str, Any]:
    config = simple_config(upstream, cache={"ttl": "30s"})
    # A generous bound: these tests count upstream requests, and a lookup that timed
    # out on a busy machine would be a BYPASS. The outage test sets its own.
    config["store"] = {"kind": "redis", "url": redis_url, "timeout": "250ms", **store}
    return config


def upstream_reads(stub: StubUpstream, path: str = "/menu") -> int:
    return sum(1 for r in stub.requests if r["method"] == "GET" and r["path_qs"] == path)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str | None, Any, float]:
    started = time.perf_counter()
    async with session.get(url, headers={"Host": HOST}) as response:
        body = await response.json() if response.status == 200 else await response.text()
        return response.status, response.headers.get("X-Cache"), body, time.perf_counter() - started


async def metric(session: aiohttp.ClientSession, gw: GatewayProcess, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels`` (in whatever label order)."""
    async with session.get(gw.admin_url + "/metrics") as response:
        text = await response.text()
    wanted = [f'{label}="{value}"' for label, value in labels.items()]
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(w in line.split("}")[0] for w in wanted)
    )


async def two_gateways(
    make_stub: Any, gateway_factory: Any, redis: RedisServer, delay: float = 0.0, **store: Any
) -> tuple[StubUpstream, GatewayProcess, GatewayProcess]:
    stub = await make_stub(menu_routes(delay))
    config = cache_config(stub.url, redis.url, **store)
    return stub, gateway_factory(config), gateway_factory(config)


async def test_a_fill_through_one_gateway_is_a_hit_through_the_other(
    make_stub: Any, gateway_factory: Any, make_redis: Callable[..., RedisServer]
) -> None:
    stub, a, b = await two_gateways(make_stub, gateway_factory, make_redis())
    async with aiohttp.ClientSession() as session:
        status, x_cache, body, _ = await get(session, a.url + "/menu")
        assert (status, x_cache) == (200, "MISS")
        async with session.get(b.url + "/menu", headers={"Host": HOST}) as response:
            assert response.status == 200 and response.headers["X-Cache"] == "HIT"
            assert await response.json() == body
            assert int(response.headers["Age"]) >= 0
        async with session.head(b.url + "/menu", headers={"Host": HOST}) as response:
            assert response.status == 200 and response.headers["X-Cache"] == "HIT"  # HEAD from the GET entry
    assert upstream_reads(stub) == 1


async def test_concurrent_misses_across_instances_make_one_upstream_request(
    make_stub: Any, gateway_factory: Any, make_redis: Callable[..., RedisServer]
) -> None:
    stub, a, b = await two_gateways(make_stub, gateway_factory, make_redis(), delay=0.5)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        answers = await asyncio.gather(*(get(session, (a, b)[n % 2].url + "/menu") for n in range(20)))
    assert [status for status, _, _, _ in answers] == [200] * 20
    assert len({str(body) for _, _, body, _ in answers}) == 1
    assert upstream_reads(stub) == 1
    assert {x_cache for _, x_cache, _, _ in answers} <= {"MISS", "HIT"}


async def test_when_the_lease_holder_dies_one_waiter_fills_for_everyone(
    make_stub: Any, gateway_factory: Any, make_redis: Callable[..., RedisServer]
) -> None:
    redis = make_redis()
    stub, a, b = await two_gateways(make_stub, gateway_factory, redis, delay=0.3)
    # An instance took the fill lease of GET /menu and died without filling: the
    # lease expires in 0.8 s, while both gateways' requests wait for its entry.
    key = make_key(route="main", host=HOST, proto="http", path="/menu", query="")
    redis.cli("set", lease_key(key).decode(), "a-dead-instance", "px", "800")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        answers = await asyncio.gather(*(get(session, (a, b)[n % 2].url + "/menu") for n in range(10)))
    assert [status for status, _, _, _ in answers] == [200] * 10
    # The first waiter to find the lease free keeps it and fetches; the others, on
    # both instances, get its entry.
    assert upstream_reads(stub) == 1


async def test_a_write_through_one_gateway_invalidates_the_other(
    make_stub: Any, gateway_factory: Any, make_redis: Callable[..., RedisServer]
) -> None:
    stub, a, b = await two_gateways(make_stub, gateway_factory, make_redis())
    async with aiohttp.ClientSession() as session:
        assert (await get(session, a.url + "/menu"))[1:3] == ("MISS", {"version": 1, "path": "/menu"})
        assert (await get(session, b.url + "/menu/3"))[1] == "MISS"
        assert (await get(session, b.url + "/menu"))[1] == "HIT"
        assert (await get(session, b.url + "/other"))[1] == "MISS"
        async with session.post(a.url + "/menu/3", json={"price": 2}, headers={"Host": HOST}) as response:
            assert response.status == 201
        # The item and its parent collection, for every instance; not the rest.
        assert (await get(session, b.url + "/menu"))[1:3] == ("MISS", {"version": 2, "path": "/menu"})
        assert (await get(session, b.url + "/menu/3"))[1] == "MISS"
        assert (await get(session, a.url + "/other"))[1] == "HIT"
        assert (await get(session, a.url + "/menu"))[1] == "HIT"
        async with session.post(b.url + "/other", headers={"Host": HOST}) as response:
            assert response.status == 201
        assert (await get(session, a.url + "/other"))[1] == "MISS"
    assert upstream_reads(stub) == 2 and upstream_reads(stub, "/menu/3") == 2


async def test_redis_stopped_makes_the_cache_a_pass_through(
    make_stub: Any, gateway_factory: Any, make_redis: Callable[..., RedisServer]
) -> None:
    redis = make_redis()
    stub, a, b = await two_gateways(make_stub, gateway_factory, redis, timeout="50ms")
    async with aiohttp.ClientSession() as session:
        assert (await get(session, a.url + "/menu"))[1] == "MISS"
        assert (await get(session, b.url + "/menu"))[1] == "HIT"
        redis.stop()
        outage = [await get(session, (a, b)[n % 2].url + "/menu") for n in range(10)]
        assert [(status, x_cache) for status, x_cache, _, _ in outage] == [(200, "BYPASS")] * 10
        assert max(elapsed for _, _, _, elapsed in outage) < 0.5
        assert upstream_reads(stub) == 1 + 10  # every one answered by the upstream
        async with session.post(a.url + "/menu", headers={"Host": HOST}) as response:
            assert response.status == 201  # the write goes through; its invalidation is counted as failed
        async with session.get(a.url + "/menu", headers={"Host": HOST}) as response:
            assert response.headers["Cache-Status"] == "gateway; fwd=bypass; detail=store-unavailable"
        # Counted once per probe of the open circuit, not once per request (a short
        # outage on a busy gateway must not look like thousands of errors).
        for gw in (a, b):
            errors = await metric(session, gw, "gateway_store_errors_total", operation="cache_get")
            assert 1 <= errors <= 3, errors
        assert await metric(session, a, "gateway_store_errors_total", operation="cache_invalidate") <= 1
        assert await metric(session, a, "gateway_cache_requests_total", route="main", result="bypass") >= 6
        async with session.get(a.admin_url + "/status") as response:
            assert (await response.json())["cache"]["state"] == "down"

        # A new, empty redis-server on the same port: the gateways cache again, no restart.
        make_redis(port=redis.port)
        deadline = time.monotonic() + 5
        while (await get(session, a.url + "/menu"))[1] != "MISS":
            assert time.monotonic() < deadline, "gateway A did not go back to Redis"
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 5
        while (await get(session, b.url + "/menu"))[1] != "HIT":
            assert time.monotonic() < deadline, "gateway B did not go back to Redis"
            await asyncio.sleep(0.1)
        async with session.get(b.admin_url + "/status") as response:
            assert (await response.json())["cache"]["state"] == "up"


async def test_a_purge_reaches_every_instance(
    make_stub: Any, gateway_factory: Any, make_redis: Callable[..., RedisServer]
) -> None:
    # POST /cache/purge is not in this tree yet: the purge comes from a third
    # ResponseCache on the same Redis (what the admin endpoint calls), which also
    # shows a purge made by any one instance reaching the others.
    redis = make_redis()
    stub, a, b = await two_gateways(make_stub, gateway_factory, redis)
    purger = ResponseCache(
        store=RedisCacheStore(StoreConfig(kind="redis", url=redis.url, timeout=1.0), metrics=Metrics()),
        metrics=Metrics(),
        max_entry_size=1024 * 1024,
    )
    await purger.start()
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/menu", "/menu?page=2", "/menu/3", "/other"):
                assert (await get(session, a.url + path))[1] == "MISS"
                assert (await get(session, b.url + path))[1] == "HIT"
            assert await purger.purge(path="/menu") == 2  # both variants of /menu
            assert (await get(session, b.url + "/menu"))[1] == "MISS"
            assert (await get(session, a.url + "/menu?page=2"))[1] == "MISS"
            assert (await get(session, a.url + "/menu/3"))[1] == "HIT"
            assert await purger.purge(prefix="/menu") == 3  # /menu, /menu?page=2 (filled again), /menu/3
            assert (await get(session, b.url + "/menu/3"))[1] == "MISS"
            assert (await get(session, b.url + "/other"))[1] == "HIT"
            assert await purger.purge(everything=True) == 2  # /other and /menu/3
            assert (await get(session, a.url + "/other"))[1] == "MISS"
    finally:
        await purger.close()
