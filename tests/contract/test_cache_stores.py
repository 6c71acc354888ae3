"""One cache-store suite, run against the memory store and the Redis store (single
server and Cluster): the promises the cache stage relies on, then what only a shared
store has to keep (instances, outages, values it did not write)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.crc import key_slot

from gateway.cache.entry import Entry
from gateway.cache.key import CacheKey, make_key
from gateway.cache.redis_store import MAX_LIFETIME, RedisCacheStore, entry_key, generation_key, lease_key
from gateway.cache.store import CacheStoreError
from gateway.config.store import StoreConfig
from gateway.metrics import Metrics
from tests.contract.conftest import CacheStoreUnderTest
from tests.redis_server import RedisServer, free_port


def key(path: str, query: str = "") -> CacheKey:
    return make_key(route="contract", host="example.test", proto="http", path=path, query=query)


def entry(path: str, *, body: bytes = b'{"menu": []}', fresh_for: float = 60.0, generation: int = 0, **fields: Any) -> Entry:
    return Entry(
        status=200,
        reason="OK",
        headers=((b"Content-Type", b"application/json"), (b"ETag", b'"v1"')),
        body=body,
        path=path,
        response_time=time.time(),
        initial_age=0.0,
        fresh_for=fresh_for,
        generation=generation,
        **fields,
    )


async def fill(s: CacheStoreUnderTest, k: CacheKey, **fields: Any) -> Entry:
    """What the stage does: read the generation, then (after the upstream) put."""
    stored = entry(k.path, generation=await s.store.generation(k.path), **fields)
    await s.store.put(k, stored, time.time())
    return stored


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {within}s")


# -- every store ------------------------------------------------------------------------


async def test_put_then_get_round_trips_every_field(cache_store: CacheStoreUnderTest) -> None:
    k = key(cache_store.path("/menu"), "page=2")
    stored = entry(
        k.path,
        body=bytes(range(256)) * 4,
        generation=await cache_store.store.generation(k.path),
        stale_while_revalidate=5.0,
        stale_if_error=30.0,
        last_modified=b"Tue, 01 Dec 2026 10:00:00 GMT",
        etag=b'W/"x"',
    )
    await cache_store.store.put(k, stored, time.time())
    got = await cache_store.store.get(k)
    assert got == stored
    assert got is not None and got.body == stored.body and got.headers == stored.headers


async def test_absent_is_none(cache_store: CacheStoreUnderTest) -> None:
    assert await cache_store.store.get(key(cache_store.path("/nothing"))) is None
    await fill(cache_store, key(cache_store.path("/something")))
    assert await cache_store.store.get(key(cache_store.path("/something"), "other=1")) is None


async def test_put_replaces(cache_store: CacheStoreUnderTest) -> None:
    k = key(cache_store.path("/menu"))
    await fill(cache_store, k, body=b"old")
    await fill(cache_store, k, body=b"new")
    got = await cache_store.store.get(k)
    assert got is not None and got.body == b"new"


async def test_invalidate_stops_every_variant_and_new_puts_are_served(cache_store: CacheStoreUnderTest) -> None:
    store = cache_store.store
    path = cache_store.path("/menu-items")
    variants = [key(path), key(path, "page=2"), key(path, "q=tea")]
    neighbour = key(cache_store.path("/menu-items-old"))
    for k in [*variants, neighbour]:
        await fill(cache_store, k)
    before = await store.generation(path)
    await store.invalidate([path])
    assert await store.generation(path) != before
    for k in variants:
        assert await store.get(k) is None
    assert await store.get(neighbour) is not None  # another path keeps its entries
    fresh = await fill(cache_store, variants[0], body=b"after the write")
    assert await store.get(variants[0]) == fresh
    await store.invalidate([path])
    await store.invalidate([path])  # every invalidation is a new generation
    assert await store.get(variants[0]) is None


async def test_a_fill_that_began_before_an_invalidation_is_never_served(cache_store: CacheStoreUnderTest) -> None:
    store = cache_store.store
    k = key(cache_store.path("/menu"))
    generation = await store.generation(k.path)  # read before the upstream request
    await store.invalidate([k.path])  # a write lands while the request is in flight
    await store.put(k, entry(k.path, body=b"from before the write", generation=generation), time.time())
    assert await store.get(k) is None


async def test_entries_expire_after_keep_for(cache_store: CacheStoreUnderTest) -> None:
    store = cache_store.store
    k = key(cache_store.path("/short"))
    # No stale windows and no validators: kept exactly as long as it is fresh.
    short = entry(k.path, fresh_for=0.4, generation=await store.generation(k.path), etag=None)
    short.headers = ((b"Content-Type", b"text/plain"),)
    assert short.keep_for(time.time()) <= 0.4
    await store.put(k, short, time.time())
    assert await store.get(k) is not None

    async def gone() -> bool:
        return await store.get(k) is None

    await eventually(gone)


async def test_nothing_to_keep_is_not_stored(cache_store: CacheStoreUnderTest) -> None:
    k = key(cache_store.path("/expired"))
    expired = entry(k.path, fresh_for=1.0, etag=None)
    expired.response_time -= 10  # arrived 10 s ago, fresh for 1 s, no windows
    await cache_store.store.put(k, expired, time.time())
    assert await cache_store.store.get(k) is None


async def test_purge_path_drops_every_variant_of_that_path_only(cache_store: CacheStoreUnderTest) -> None:
    store = cache_store.store
    path = cache_store.path("/api/items")
    for query in ("", "page=2", "q=*?[x]"):
        await fill(cache_store, key(path, query))
    others = [key(path + "/3"), key(cache_store.path("/api/itemsx")), key(cache_store.path("/api"))]
    for k in others:
        await fill(cache_store, k)
    in_flight = await store.generation(path)  # a fill that read its generation before the purge
    assert await store.purge(path=path) == 3
    for query in ("", "page=2", "q=*?[x]"):
        assert await store.get(key(path, query)) is None
    for k in others:
        assert await store.get(k) is not None
    await store.put(key(path), entry(path, body=b"fetched before the purge", generation=in_flight), time.time())
    assert await store.get(key(path)) is None
    assert await store.purge(path=path) == 0


async def test_purge_path_with_glob_characters_is_literal(cache_store: CacheStoreUnderTest) -> None:
    store = cache_store.store
    odd = cache_store.path("/a*b?[c]\\d")
    plain = cache_store.path("/aXb!cd")  # what the glob would match if it were not escaped
    await fill(cache_store, key(odd))
    await fill(cache_store, key(plain))
    assert await store.purge(path=odd) == 1
    assert await store.get(key(odd)) is None
    assert await store.get(key(plain)) is not None


@pytest.mark.parametrize("prefix", ["/api", "/api/"])
async def test_purge_prefix_is_segment_aware(cache_store: CacheStoreUnderTest, prefix: str) -> None:
    store = cache_store.store
    covered = [key(cache_store.path("/api")), key(cache_store.path("/api/x"), "a=1"), key(cache_store.path("/api/x/y"))]
    spared = [key(cache_store.path("/apix")), key(cache_store.path("/other")), key(cache_store.path("/ap"))]
    for k in covered + spared:
        await fill(cache_store, k)
    assert await store.purge(prefix=cache_store.path(prefix)) == 3
    for k in covered:
        assert await store.get(k) is None
    for k in spared:
        assert await store.get(k) is not None


async def test_purge_everything(cache_store: CacheStoreUnderTest) -> None:
    store = cache_store.store
    await store.purge(everything=True)  # what earlier tests on a shared server left
    keys = [key(cache_store.path(f"/p{n}"), f"n={n}") for n in range(12)]
    for k in keys:
        await fill(cache_store, k)
    assert await store.purge(everything=True) == 12
    for k in keys:
        assert await store.get(k) is None
    assert await store.purge(everything=True) == 0


async def test_lease_is_exclusive_until_released(cache_store: CacheStoreUnderTest) -> None:
    store = cache_store.store
    k = key(cache_store.path("/lease"))

    async def other_task_leases() -> bool:
        return await asyncio.create_task(store.lease(k, 10.0))

    assert await store.lease(k, 10.0)
    if not store.shared:
        assert await other_task_leases()  # one process: its coalescer is the lock
        return
    assert not await other_task_leases()
    assert not await store.lease(key(cache_store.path("/lease")), 10.0)
    assert await store.lease(key(cache_store.path("/lease"), "other=1"), 10.0)  # another variant: its own lease
    await store.release(k)
    assert await other_task_leases()


# -- shared stores ------------------------------------------------------------------------


def second_instance(s: CacheStoreUnderTest) -> RedisCacheStore:
    assert s.config is not None
    return RedisCacheStore(s.config, metrics=Metrics())


async def test_instances_share_entries_invalidations_and_purges(shared_cache_store: CacheStoreUnderTest) -> None:
    cache_store = shared_cache_store
    other = second_instance(cache_store)
    await other.start()
    try:
        k = key(cache_store.path("/shared"))
        stored = await fill(cache_store, k)
        assert await other.get(k) == stored
        await other.invalidate([k.path])
        assert await cache_store.store.get(k) is None
        await fill(cache_store, k)
        assert await other.purge(path=k.path) == 1
        assert await cache_store.store.get(k) is None
    finally:
        await other.close()


async def test_a_lease_is_released_only_by_its_holder(shared_cache_store: CacheStoreUnderTest) -> None:
    cache_store = shared_cache_store
    other = second_instance(cache_store)
    await other.start()
    store = cache_store.store
    k = key(cache_store.path("/lease"))
    try:
        assert await store.lease(k, 0.2)
        assert not await other.lease(k, 10.0)
        await other.release(k)  # holds nothing: a no-op
        assert not await other.lease(k, 10.0)
        await asyncio.sleep(0.3)  # the holder died: its lease expires
        assert await other.lease(k, 10.0)
        await store.release(k)  # the first holder comes back late: must not drop the new lease
        assert not await store.lease(k, 10.0)
        await other.release(k)
        assert await store.lease(k, 10.0)
    finally:
        await other.close()


async def test_keys_share_one_slot_and_carry_ttls(shared_cache_store: CacheStoreUnderTest) -> None:
    cache_store = shared_cache_store
    assert isinstance(cache_store.store, RedisCacheStore)
    client = cache_store.store.client
    k = key(cache_store.path("/ttl"))
    names = [generation_key(k.path), entry_key(k), lease_key(k)]
    assert names[1].startswith(b"gw:c:{" + k.path.encode() + b"}:e:")
    assert len({key_slot(name) for name in names}) == 1  # one Cluster slot: MGET and the put script work
    await cache_store.store.invalidate([k.path])
    # An origin asking for a year of stale-if-error is kept for MAX_LIFETIME at most,
    # and the generation key outlives it.
    await fill(cache_store, k, stale_if_error=365 * 86400.0)
    entry_ttl = int(await client.pttl(names[1]))
    generation_ttl = int(await client.pttl(names[0]))
    assert 0 < entry_ttl <= MAX_LIFETIME * 1000
    assert generation_ttl > entry_ttl


async def test_a_value_it_did_not_write_is_a_miss(shared_cache_store: CacheStoreUnderTest) -> None:
    cache_store = shared_cache_store
    assert isinstance(cache_store.store, RedisCacheStore)
    client = cache_store.store.client
    k = key(cache_store.path("/garbage"))
    deep = b"200000\n" + b"[" * 100000 + b"]" * 100000
    huge_status = entry(k.path).to_bytes().replace(b'"s":200', b'"s":1e999')
    huge_status = b"%d" % (int(huge_status.split(b"\n", 1)[0]) + 4) + huge_status[huge_status.index(b"\n"):]
    for value in (b"not an entry", b"5\n{\"v\":", b"\x80\x81", b"12\n" + b"{" * 12, b"2\n{}body", deep, huge_status):
        await client.set(entry_key(k), value)
        assert await cache_store.store.get(k) is None
    await client.delete(entry_key(k))
    await client.hset(entry_key(k), "a", "b")  # not even a string
    assert await cache_store.store.get(k) is None
    await client.delete(entry_key(k))
    # A generation key holding something else: nothing is served or stored under it
    # until an invalidation replaces it.
    await fill(cache_store, k)
    await client.set(generation_key(k.path), b"garbage")
    assert await cache_store.store.get(k) is None
    await fill(cache_store, k)
    assert await cache_store.store.get(k) is None
    await cache_store.store.invalidate([k.path])
    await fill(cache_store, k)
    assert await cache_store.store.get(k) is not None


async def test_a_large_entry_round_trips(cache_store: CacheStoreUnderTest) -> None:
    k = key(cache_store.path("/large"))
    stored = await fill(cache_store, k, body=uuid.uuid4().bytes * (1024 * 1024 // 16))
    got = await cache_store.store.get(k)
    assert got is not None and got.body == stored.body


# -- the Redis store alone: generations that expire, outages ------------------------------


def make_store(url: str, *, timeout: str = "50ms", **kwargs: Any) -> RedisCacheStore:
    config = StoreConfig.model_validate({"kind": "redis", "url": url, "timeout": timeout})
    return RedisCacheStore(config, metrics=kwargs.pop("metrics", None) or Metrics(), probe_interval=0.3, **kwargs)


async def test_an_expired_generation_never_brings_back_an_invalidated_entry(redis_server: RedisServer) -> None:
    # Lifetimes of half a second, so the generation key's own expiry comes within the test.
    store = make_store(redis_server.url, timeout="1s", max_lifetime=0.5)
    await store.start()
    k = key(f"/gen-{uuid.uuid4().hex}")
    client = store.client
    try:
        old = entry(k.path, fresh_for=3600.0, generation=await store.generation(k.path))
        await store.put(k, old, time.time())  # clamped to 0.5 s
        await store.invalidate([k.path])
        assert await store.get(k) is None
        # However the generation key ends (expiry), the old entry is gone first.
        while await client.exists(generation_key(k.path)):
            assert await store.get(k) is None
            await asyncio.sleep(0.02)
        assert not await client.exists(entry_key(k))
        assert await store.get(k) is None
        assert await store.generation(k.path) == 0
    finally:
        await store.close()


async def test_a_fill_that_raced_an_invalidation_writes_nothing(redis_server: RedisServer) -> None:
    store = make_store(redis_server.url, timeout="1s")
    await store.start()
    k = key(f"/race-{uuid.uuid4().hex}")
    try:
        generation = await store.generation(k.path)
        await store.invalidate([k.path])
        await store.put(k, entry(k.path, generation=generation), time.time())
        assert not await store.client.exists(entry_key(k))  # not merely unservable: not written
    finally:
        await store.close()


async def test_redis_stopped_fails_fast_then_recovers_without_restart(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis()
    store = make_store(server.url)
    await store.start()
    k = key(f"/outage-{uuid.uuid4().hex}")
    try:
        await fill_store(store, k)
        assert await store.get(k) is not None
        server.stop()
        started = time.perf_counter()
        with pytest.raises(CacheStoreError):
            await store.get(k)
        assert time.perf_counter() - started < 0.5
        assert not store.available and store.status()["state"] == "down"
        # The circuit is open: every call fails at once, with no connection attempt.
        started = time.perf_counter()
        for call in (store.get(k), store.generation(k.path), store.put(k, entry(k.path), time.time()),
                     store.invalidate([k.path]), store.lease(k, 1.0)):
            with pytest.raises(CacheStoreError):
                await call
        assert time.perf_counter() - started < 0.05
        restarted = make_redis(port=server.port)  # empty, no scripts loaded

        async def answers() -> bool:
            try:
                return await store.get(k) is None  # a probe gets through, the new server is empty
            except CacheStoreError:
                return False

        await eventually(answers, within=3.0)
        assert store.available and store.status()["state"] == "up"
        await fill_store(store, k)  # the put script is loaded again (NOSCRIPT handled)
        assert await store.get(k) is not None
        assert restarted.cli("exists", entry_key(k).decode()).strip() == "1"
    finally:
        await store.close()


async def test_a_hung_redis_costs_one_timeout_per_probe(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis()
    store = make_store(server.url)  # 50 ms, probe every 300 ms
    await store.start()
    k = key(f"/hung-{uuid.uuid4().hex}")
    try:
        await fill_store(store, k)
        server.pause()
        started = time.perf_counter()
        slowest = 0.0
        failures = 0
        for _ in range(40):
            t0 = time.perf_counter()
            try:
                await store.get(k)
            except CacheStoreError:
                failures += 1
            slowest = max(slowest, time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        assert failures == 40
        assert slowest < 0.3, slowest  # the timeout plus the 1 MiB allowance, not more
        assert store.status()["failures"] <= 2 + elapsed / 0.3
        # Many requests at once during the outage: none waits longer than one bound.
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(store.get(k) for _ in range(100)), return_exceptions=True)
        assert all(isinstance(o, CacheStoreError) for o in outcomes)
        assert time.perf_counter() - started < 0.4
    finally:
        server.resume()
        await store.close()


async def test_start_with_redis_down_then_up(make_redis: Callable[..., RedisServer]) -> None:
    port = free_port()
    metrics = Metrics()
    store = make_store(f"redis://127.0.0.1:{port}/0", metrics=metrics)
    await store.start()  # must not raise: cached routes pass through meanwhile
    k = key(f"/late-{uuid.uuid4().hex}")
    try:
        assert not store.available
        assert metrics.registry.get_sample_value("gateway_store_errors_total", {"operation": "connect"}) == 1
        with pytest.raises(CacheStoreError):
            await store.get(k)
        make_redis(port=port)

        async def answers() -> bool:
            try:
                return await store.get(k) is None
            except CacheStoreError:
                return False

        await eventually(answers, within=3.0)
        assert store.available
    finally:
        await store.close()


def test_status_never_shows_the_password() -> None:
    store = make_store("redis://gw:s3cret@127.0.0.1:6379/2")
    status = store.status()
    assert "s3cret" not in str(status)
    assert status == {"kind": "redis", "url": "redis://gw:***@127.0.0.1:6379/2", "cluster": False, "state": "up", "failures": 0}
    assert store.bytes_used() is None


async def fill_store(store: RedisCacheStore, k: CacheKey) -> None:
    await store.put(k, entry(k.path, generation=await store.generation(k.path)), time.time())


@pytest.mark.parametrize("name", ["/a}b{c", "/{x}/y", "/caf\u00e9/\udcff", "/x}:e:00ff"])
async def test_odd_paths_round_trip_and_purge_alone(cache_store: CacheStoreUnderTest, name: str) -> None:
    # Braces move a Cluster hash tag; ``}:e:`` mimics the key layout; an undecodable
    # byte arrives as a surrogate escape.
    store = cache_store.store
    odd = key(cache_store.path(name))
    near = key(cache_store.path(name.split("}")[0] if "}" in name else name + "/child"))
    stored = await fill(cache_store, odd)
    await fill(cache_store, near)
    assert await store.get(odd) == stored
    assert await store.purge(path=odd.path) == 1
    assert await store.get(odd) is None
    assert await store.get(near) is not None
