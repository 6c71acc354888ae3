"""The memory cache store: an LRU bounded by bytes, generations, purges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cache.entry import Entry
from gateway.cache.generations import Generations
from gateway.cache.key import CacheKey, make_key
from gateway.cache.store import MemoryCacheStore, under_prefix
from tests.contract.conftest import FakeClock


def key(path: str, query: str = "") -> CacheKey:
    return make_key(route="r", host="h", proto="http", path=path, query=query)


def entry(path: str, body: bytes = b"x", *, clock: FakeClock | None = None, fresh_for: float = 60.0, **kw) -> Entry:
    now = clock.now if clock is not None else 1000.0
    return Entry(
        status=200, reason="OK", headers=((b"Content-Type", b"text/plain"),), body=body, path=path,
        response_time=now, initial_age=0.0, fresh_for=fresh_for, **kw,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def generations():
    table = Generations()
    yield table
    table.close()


def make_store(clock: FakeClock, generations: Generations, max_memory: int = 64 * 1024) -> MemoryCacheStore:
    return MemoryCacheStore(max_memory=max_memory, generations=generations, clock=clock)


async def test_put_then_get(clock, generations) -> None:
    store = make_store(clock, generations)
    e = entry("/a", b"hello", clock=clock)
    await store.put(key("/a"), e, clock.now)
    assert await store.get(key("/a")) is e
    assert await store.get(key("/a", "q=1")) is None
    assert store.bytes_used() == e.size
    assert len(store) == 1


async def test_replacing_an_entry_does_not_count_it_twice(clock, generations) -> None:
    store = make_store(clock, generations)
    await store.put(key("/a"), entry("/a", b"1" * 100, clock=clock), clock.now)
    second = entry("/a", b"2" * 50, clock=clock)
    await store.put(key("/a"), second, clock.now)
    assert store.bytes_used() == second.size
    assert len(store) == 1


async def test_an_entry_past_its_keeping_time_is_a_miss_and_is_dropped(clock, generations) -> None:
    store = make_store(clock, generations)
    await store.put(key("/a"), entry("/a", clock=clock, fresh_for=10, stale_if_error=5), clock.now)
    clock.now += 14.9
    assert await store.get(key("/a")) is not None  # stale but kept for stale-if-error
    clock.now += 0.2
    assert await store.get(key("/a")) is None
    assert store.bytes_used() == 0 and len(store) == 0


async def test_a_validator_keeps_an_expired_entry_for_revalidation(clock, generations) -> None:
    store = make_store(clock, generations)
    await store.put(key("/a"), entry("/a", clock=clock, fresh_for=10, etag=b'"v1"'), clock.now)
    clock.now += 15
    assert await store.get(key("/a")) is not None


async def test_an_entry_with_nothing_to_keep_is_not_stored(clock, generations) -> None:
    store = make_store(clock, generations)
    e = entry("/a", clock=clock, fresh_for=10)
    await store.put(key("/a"), e, clock.now + 10)
    assert await store.get(key("/a")) is None
    assert store.bytes_used() == 0


async def test_an_entry_larger_than_the_whole_store_is_not_stored_and_evicts_nothing(clock, generations) -> None:
    store = make_store(clock, generations, max_memory=4096)
    await store.put(key("/small"), entry("/small", clock=clock), clock.now)
    await store.put(key("/big"), entry("/big", b"x" * 5000, clock=clock), clock.now)
    assert await store.get(key("/big")) is None
    assert await store.get(key("/small")) is not None


async def test_the_least_recently_used_goes_first(clock, generations) -> None:
    body = b"x" * 700
    size = entry("/0", body).size
    store = make_store(clock, generations, max_memory=size * 3)
    for name in ("/a", "/b", "/c"):
        await store.put(key(name), entry(name, body, clock=clock), clock.now)
    assert await store.get(key("/a")) is not None  # /a is now the most recently used
    await store.put(key("/d"), entry("/d", body, clock=clock), clock.now)
    assert await store.get(key("/b")) is None  # the oldest untouched one went
    assert all([await store.get(key(n)) is not None for n in ("/a", "/c", "/d")])
    await store.put(key("/e"), entry("/e", body, clock=clock), clock.now)
    assert await store.get(key("/a")) is None
    assert store.bytes_used() == 3 * size


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=2048, max_value=64 * 1024),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 9000), st.booleans()), min_size=1, max_size=300),
)
async def test_a_flood_of_random_keys_never_passes_max_memory(max_memory, operations) -> None:
    clock = FakeClock()
    generations = Generations()
    try:
        store = make_store(clock, generations, max_memory=max_memory)
        for number, size, read in operations:
            k = key("/flood", f"q={number}")
            if read:
                await store.get(k)
            e = entry("/flood", b"b" * size, clock=clock)
            await store.put(k, e, clock.now)
            used = store.bytes_used()
            assert used <= max_memory
            assert used == sum(held.size for held, _ in store._entries.values())
            if e.size <= max_memory:
                assert await store.get(k) is e  # the newest always survives its own put
    finally:
        generations.close()


async def test_a_new_generation_is_a_miss_for_every_variant(clock, generations) -> None:
    store = make_store(clock, generations)
    g = await store.generation("/items")
    for query in ("", "page=1", "page=2"):
        await store.put(key("/items", query), entry("/items", clock=clock, generation=g), clock.now)
    await store.put(key("/other"), entry("/other", clock=clock, generation=await store.generation("/other")), clock.now)
    await store.invalidate(["/items"])
    assert await store.generation("/items") != g
    for query in ("", "page=1", "page=2"):
        assert await store.get(key("/items", query)) is None
    assert await store.get(key("/other")) is not None
    # Stored under the new generation, it is served again.
    fresh = entry("/items", clock=clock, generation=await store.generation("/items"))
    await store.put(key("/items"), fresh, clock.now)
    assert await store.get(key("/items")) is fresh


async def test_an_answer_fetched_before_a_write_is_never_served_after_it(clock, generations) -> None:
    store = make_store(clock, generations)
    before = await store.generation("/items")  # read when the fill's request left
    await store.invalidate(["/items"])  # the write lands while the fill is in flight
    await store.put(key("/items"), entry("/items", clock=clock, generation=before), clock.now)
    assert await store.get(key("/items")) is None


async def test_an_entry_for_another_path_under_the_same_variant_is_a_miss(clock, generations) -> None:
    store = make_store(clock, generations)
    await store.put(key("/a"), entry("/b", clock=clock), clock.now)
    assert await store.get(key("/a")) is None


async def _filled(clock, generations) -> MemoryCacheStore:
    store = make_store(clock, generations)
    for path, queries in {
        "/api": [""],
        "/api/items": ["", "page=1", "page=2"],
        "/api/items/3": [""],
        "/apix": ["", "a=1"],
        "/other": [""],
    }.items():
        for query in queries:
            await store.put(key(path, query), entry(path, clock=clock, generation=generations.of(path)), clock.now)
    return store


@pytest.mark.parametrize(
    ("purge", "count", "left"),
    [
        ({"path": "/api/items"}, 3, {"/api", "/api/items/3", "/apix", "/other"}),
        ({"path": "/api/items/"}, 0, {"/api", "/api/items", "/api/items/3", "/apix", "/other"}),
        ({"path": "/nothing"}, 0, {"/api", "/api/items", "/api/items/3", "/apix", "/other"}),
        ({"prefix": "/api"}, 5, {"/apix", "/other"}),  # segment-aware: not /apix
        ({"prefix": "/api/"}, 5, {"/apix", "/other"}),
        ({"prefix": "/api/items"}, 4, {"/api", "/apix", "/other"}),
        ({"prefix": "/"}, 8, set()),
        ({"everything": True}, 8, set()),
    ],
)
async def test_purge_counts_what_it_dropped(clock, generations, purge: dict, count: int, left: set[str]) -> None:
    store = await _filled(clock, generations)
    assert await store.purge(**purge) == count
    held = {e.path for e, _ in store._entries.values()}
    assert held == left
    assert store.bytes_used() == sum(e.size for e, _ in store._entries.values())


async def test_a_fill_in_flight_across_a_path_purge_stores_nothing_servable(clock, generations) -> None:
    # The store's own guard: a path purge starts a new generation. (Prefix and
    # everything purges are guarded one level up, by ResponseCache.purged_since.)
    store = make_store(clock, generations)
    before = await store.generation("/api/items")  # the fill's request leaves
    await store.purge(path="/api/items")  # the operator purges (the origin content changed)
    await store.put(key("/api/items"), entry("/api/items", clock=clock, generation=before), clock.now)
    assert await store.get(key("/api/items")) is None


@pytest.mark.parametrize(
    ("path", "prefix", "under"),
    [
        ("/api", "/api", True),
        ("/api/x", "/api", True),
        ("/api/x", "/api/", True),
        ("/apix", "/api", False),
        ("/", "/", True),
        ("/anything", "", True),
        ("/ap", "/api", False),
    ],
)
def test_under_prefix(path: str, prefix: str, under: bool) -> None:
    assert under_prefix(path, prefix) is under


async def test_close_empties_it(clock, generations) -> None:
    store = await _filled(clock, generations)
    await store.close()
    assert len(store) == 0 and store.bytes_used() == 0
    assert store.status() == {"kind": "memory", "entries": 0, "bytes": 0, "max_memory": 64 * 1024}
