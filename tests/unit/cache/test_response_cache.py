"""What a successful write makes stale (SPEC §4, RFC 9111 §4.4)."""

from __future__ import annotations

import pytest

from gateway.cache.response_cache import invalidated_paths


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
