"""What a successful write makes stale (SPEC §4, RFC 9111 §4.4)."""

from __future__ import annotations

import pytest

from gateway.cache.generations import Generations
from gateway.cache.response_cache import ResponseCache, invalidated_paths
from gateway.cache.store import MemoryCacheStore
from gateway.metrics import Metrics


@pytest.mark.parametrize(
    ("path", "host", "locations", "paths"),
    [
        ("/items", "gw", [], {"/items", "/items/", "/"}),
        ("/items/3", "gw", [], {"/items/3", "/items/3/", "/items", "/items/"}),
        ("/items/3/", "gw", [], {"/items/3", "/items/3/", "/items", "/items/"}),
        ("/", "gw", [], {"/"}),
        # Location / Content-Location: same-origin only.
        ("/items", "gw", [b"/items/9"], {"/items", "/items/", "/", "/items/9", "/items/9/"}),
        ("/items", "gw", [b"http://gw/items/9"], {"/items", "/items/", "/", "/items/9", "/items/9/"}),
        ("/items", "GW", [b"https://gw/items/9?x=1"], {"/items", "/items/", "/", "/items/9", "/items/9/"}),
        ("/items", "gw:8080", [b"http://gw:8080/a/./b"], {"/items", "/items/", "/", "/a/b", "/a/b/"}),
        ("/items", "gw", [b"http://evil.example/items/9"], {"/items", "/items/", "/"}),
        ("/items", "gw", [b"//evil.example/items/9"], {"/items", "/items/", "/"}),
        ("/items", None, [b"http://gw/items/9"], {"/items", "/items/", "/"}),
        ("/items", "gw", [b"ftp://gw/items/9"], {"/items", "/items/", "/"}),
        ("/items", "gw", [b"/../../etc"], {"/items", "/items/", "/"}),  # unusable: ignored, not an error
        ("/items", "gw", [b"http://[::1"], {"/items", "/items/", "/"}),
    ],
)
def test_invalidated_paths(path: str, host: str | None, locations: list[bytes], paths: set[str]) -> None:
    found = invalidated_paths(path, host, locations)
    assert set(found) == paths
    assert len(found) == len(set(found))


@pytest.mark.parametrize(
    ("host", "forwarded_host", "location", "invalidated"),
    [
        # Behind a trusted proxy: the public name the upstream was told is our origin too.
        ("gw.internal", "pub.example", b"https://pub.example/items/9", True),
        ("gw.internal", "PUB.example", b"https://pub.example/items/9", True),
        ("gw.internal", "pub.example", b"http://gw.internal/items/9", True),
        ("gw.internal", "pub.example", b"https://evil.example/items/9", False),
        (None, "pub.example", b"https://pub.example/items/9", True),
        (None, None, b"https://pub.example/items/9", False),
    ],
)
def test_a_location_on_the_forwarded_host_is_same_origin(host, forwarded_host, location: bytes, invalidated: bool) -> None:
    found = invalidated_paths("/items", host, [location], forwarded_host)
    assert ("/items/9" in found) is invalidated


@pytest.mark.parametrize(
    ("purge", "path", "blocked"),
    [
        ({"path": "/api/items"}, "/api/items", True),
        ({"path": "/api/items"}, "/api/items/3", False),
        ({"prefix": "/api"}, "/api/items/3", True),
        ({"prefix": "/api"}, "/apix", False),
        ({"everything": True}, "/anything", True),
    ],
)
async def test_a_fill_sent_before_a_purge_is_not_stored(purge: dict, path: str, blocked: bool) -> None:
    # A fill whose request left before the purge fetched what the purge is meant to
    # drop: it must not store it afterwards, whichever kind of purge it was.
    now = [1000.0]
    store = MemoryCacheStore(max_memory=1 << 20, generations=Generations(), clock=lambda: now[0])
    cache = ResponseCache(store=store, metrics=Metrics(), max_entry_size=1 << 16, clock=lambda: now[0])
    sent_at = now[0]
    now[0] += 1
    await cache.purge(**purge)
    assert cache.purged_since(path, sent_at) is blocked
    assert cache.purged_since(path, now[0] + 1) is False  # a fill sent after the purge stores
