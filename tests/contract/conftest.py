"""Every store implementation behind one fixture, so one suite holds them all to the
same promises (DESIGN: tests/contract/)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from gateway.cache.generations import Generations
from gateway.cache.redis_store import RedisCacheStore
from gateway.cache.store import CacheStore, MemoryCacheStore
from gateway.config.store import StoreConfig
from gateway.metrics import Metrics
from gateway.store import MemoryStore, Store
from gateway.store.redis import RedisStore
from tests.redis_server import RedisClusterNodes, RedisServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class StoreUnderTest:
    store: Store
    advance: Callable[[float], Awaitable[None]]
    """Let this much time pass for the store's clock."""
    exact: bool
    """The clock is the test's (exact arithmetic), not a server's (real time, tolerances)."""
    prefix: str
    """A key prefix of this test's own: stores are shared across a session."""

    def key(self, name: str) -> str:
        return f"{self.prefix}|{name}"


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def bucket_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreUnderTest]:
    prefix = f"contract-{uuid.uuid4().hex[:12]}"
    if request.param == "memory":
        clock = FakeClock()

        async def advance_fake(seconds: float) -> None:
            clock.now += seconds

        yield StoreUnderTest(MemoryStore(clock=clock), advance_fake, True, prefix)
        return
    if request.param == "redis":
        server: RedisServer | RedisClusterNodes = request.getfixturevalue("redis_server")
        config = StoreConfig(kind="redis", url=server.url, timeout=1.0)
    else:
        server = request.getfixturevalue("redis_cluster")
        config = StoreConfig(kind="redis", url=server.url, cluster=True, timeout=1.0)
    # A generous timeout: these tests are about arithmetic, not outages, and the
    # machine may be busy.
    store = RedisStore(config, metrics=Metrics())
    await store.start()
    assert store.available, f"{request.param} did not answer"
    try:
        yield StoreUnderTest(store, asyncio.sleep, False, prefix)
    finally:
        await store.close()


@dataclass
class CacheStoreUnderTest:
    store: CacheStore
    name: str
    """memory, redis or redis-cluster."""
    prefix: str
    """A path prefix of this test's own: Redis servers are shared across a session."""
    server: RedisServer | RedisClusterNodes | None = None
    config: StoreConfig | None = None
    """Redis: the store's config, for a second instance on the same server."""

    def path(self, name: str = "") -> str:
        return f"{self.prefix}{name}"


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def cache_store(request: pytest.FixtureRequest) -> AsyncIterator[CacheStoreUnderTest]:
    """One cache store of each kind, on the real clock (expiry is Redis's own TTL)."""
    async with _cache_store(request) as store:
        yield store


@pytest.fixture(params=["redis", "redis-cluster"])
async def shared_cache_store(request: pytest.FixtureRequest) -> AsyncIterator[CacheStoreUnderTest]:
    """The stores every gateway instance shares (the memory store is per process, so
    the promises about sharing are not asked of it: not skipped, not generated)."""
    async with _cache_store(request) as store:
        yield store


@contextlib.asynccontextmanager
async def _cache_store(request: pytest.FixtureRequest) -> AsyncIterator[CacheStoreUnderTest]:
    prefix = f"/contract-{uuid.uuid4().hex[:12]}"
    if request.param == "memory":
        generations = Generations()
        store: CacheStore = MemoryCacheStore(max_memory=64 * 1024 * 1024, generations=generations, clock=time.time)
        try:
            yield CacheStoreUnderTest(store, "memory", prefix)
        finally:
            await store.close()
            generations.close()
        return
    server: RedisServer | RedisClusterNodes
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        config = StoreConfig(kind="redis", url=server.url, timeout=1.0)
    else:
        server = request.getfixturevalue("redis_cluster")
        config = StoreConfig(kind="redis", url=server.url, cluster=True, timeout=1.0)
    # A generous timeout: these tests are about the promises, not outages (those have
    # their own tests, with their own servers), and the machine may be busy.
    redis_store = RedisCacheStore(config, metrics=Metrics())
    await redis_store.start()
    assert redis_store.available, f"{request.param} did not answer"
    try:
        yield CacheStoreUnderTest(redis_store, request.param, prefix, server, config)
    finally:
        await redis_store.close()
