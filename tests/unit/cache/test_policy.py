"""A route's storage rules (SPEC §4): what is stored, for how long, and how stale."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from gateway.cache.policy import STORABLE_STATUSES, Freshness, RoutePolicy
from gateway.config.cache import RouteCacheConfig

NOW = 1_700_000_000.0


def policy(**overrides) -> RoutePolicy:
    return RoutePolicy(RouteCacheConfig(**{"ttl": 60, **overrides}))


def h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), v.encode()) for n, v in pairs]


def http_date(at: float) -> str:
    return formatdate(at, usegmt=True)


@pytest.mark.parametrize("status", sorted(STORABLE_STATUSES))
def test_storable_statuses(status: int) -> None:
    assert isinstance(policy().freshness(status, [], now=NOW), Freshness)


@pytest.mark.parametrize(
    "status", [100, 201, 202, 206, 300, 302, 303, 304, 307, 308, 400, 401, 403, 405, 409, 429, 500, 502, 503, 504]
)
def test_every_other_status_is_never_stored(status: int) -> None:
    assert policy().freshness(status, [], now=NOW) == f"status {status}"


def test_the_storable_set_is_exactly_the_spec_list() -> None:
    assert STORABLE_STATUSES == {200, 203, 204, 301, 404, 410}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (h(("Set-Cookie", "session=1")), "set-cookie"),
        (h(("set-cookie", "a=b"), ("Cache-Control", "max-age=60")), "set-cookie"),
        (h(("Cache-Control", "no-store")), "no-store"),
        (h(("Cache-Control", "public, max-age=60"), ("Cache-Control", "no-store")), "no-store"),
        (h(("Cache-Control", "private")), "private"),
        (h(("Cache-Control", 'private="Set-Cookie"')), "private"),
        (h(("Cache-Control", "no-cache")), "no-cache"),
        (h(("Cache-Control", 'no-cache="Set-Cookie", max-age=60')), "no-cache"),
        (h(("Vary", "*")), "vary"),
        (h(("Vary", "Accept, *")), "vary"),
        (h(("Vary", "Accept-Language")), "vary"),  # not in the route's vary list: unkeyed
        (h(("Vary", "Accept"), ("Vary", "Cookie")), "vary"),
        (h(("Cache-Control", "max-age=0")), "expired"),
        (h(("Cache-Control", "s-maxage=0, max-age=60")), "expired"),
        (h(("Expires", "0")), "expired"),  # unreadable Expires is in the past
        (h(("Expires", http_date(NOW - 10)), ("Date", http_date(NOW))), "expired"),
    ],
)
def test_directives_that_forbid_storing(headers, reason: str) -> None:
    assert policy(vary=["Accept"]).freshness(200, headers, now=NOW) == reason


@pytest.mark.parametrize(
    ("vary_config", "vary_header"),
    [
        (["Accept"], "Accept"),
        (["Accept"], "accept"),
        (["Accept", "Accept-Language"], "Accept-Language, ACCEPT"),
        (["Accept-Language"], " accept-language ,"),
    ],
)
def test_a_vary_the_key_holds_is_stored(vary_config, vary_header: str) -> None:
    assert isinstance(policy(vary=vary_config).freshness(200, h(("Vary", vary_header)), now=NOW), Freshness)


def test_no_vary_list_means_any_vary_is_unkeyed() -> None:
    assert policy().freshness(200, h(("Vary", "Accept")), now=NOW) == "vary"
    assert policy().freshness(200, h(("Vary", "*")), now=NOW) == "vary"


@pytest.mark.parametrize(
    ("cache_control", "ttl", "fresh_for"),
    [
        ("", 60, 60),
        ("max-age=10", 60, 10),
        ("max-age=600", 60, 60),  # only shortens the route ttl, never lengthens it
        ("s-maxage=5, max-age=30", 60, 5),  # s-maxage beats max-age ...
        ("s-maxage=30, max-age=5", 60, 30),  # ... in both directions
        ("s-maxage=600, max-age=5", 60, 60),
        ("public", 60, 60),
    ],
)
def test_origin_lifetimes_only_shorten_the_route_ttl(cache_control: str, ttl: float, fresh_for: float) -> None:
    headers = h(("Cache-Control", cache_control)) if cache_control else []
    verdict = policy(ttl=ttl).freshness(200, headers, now=NOW)
    assert isinstance(verdict, Freshness)
    assert verdict.fresh_for == fresh_for


@pytest.mark.parametrize(
    ("headers", "fresh_for"),
    [
        (h(("Expires", http_date(NOW + 20)), ("Date", http_date(NOW))), 20),
        (h(("Expires", http_date(NOW + 600)), ("Date", http_date(NOW))), 60),
        # Without Date, the receipt time is the base.
        (h(("Expires", http_date(NOW + 20))), 20),
        # Expires minus Date, whatever our own clock says (RFC 9111 §4.2.1).
        (h(("Expires", http_date(NOW + 20)), ("Date", http_date(NOW - 100))), 60),
        (h(("Expires", http_date(NOW - 80)), ("Date", http_date(NOW - 100))), 20),
        # max-age wins over Expires.
        (h(("Expires", http_date(NOW - 10)), ("Cache-Control", "max-age=30")), 30),
    ],
)
def test_expires_and_date(headers, fresh_for: float) -> None:
    verdict = policy().freshness(200, headers, now=NOW)
    assert isinstance(verdict, Freshness)
    assert verdict.fresh_for == pytest.approx(fresh_for)


@pytest.mark.parametrize(
    ("route", "cache_control", "swr", "sie"),
    [
        ({}, "", 0, 0),
        ({"stale_while_revalidate": 10, "stale_if_error": 60}, "", 10, 60),
        ({}, "stale-while-revalidate=15, stale-if-error=90", 15, 90),
        # The longer of the route's and the origin's windows.
        ({"stale_while_revalidate": 10, "stale_if_error": 60}, "stale-while-revalidate=5, stale-if-error=600", 10, 600),
    ],
)
def test_stale_windows(route: dict, cache_control: str, swr: float, sie: float) -> None:
    headers = h(("Cache-Control", cache_control)) if cache_control else []
    verdict = policy(**route).freshness(200, headers, now=NOW)
    assert isinstance(verdict, Freshness)
    assert (verdict.stale_while_revalidate, verdict.stale_if_error, verdict.must_revalidate) == (swr, sie, False)


@pytest.mark.parametrize(
    "directive", ["must-revalidate", "proxy-revalidate", "Must-Revalidate", "s-maxage=30"]
)  # s-maxage implies proxy-revalidate for a shared cache (RFC 9111 §5.2.2.10)
def test_must_revalidate_removes_every_stale_window(directive: str) -> None:
    route = policy(stale_while_revalidate=10, stale_if_error=60)
    verdict = route.freshness(200, h(("Cache-Control", f"max-age=30, {directive}, stale-if-error=600")), now=NOW)
    assert verdict == Freshness(30, 0.0, 0.0, True)


def test_status_is_checked_before_anything_else() -> None:
    assert policy().freshness(500, h(("Cache-Control", "max-age=60")), now=NOW) == "status 500"
