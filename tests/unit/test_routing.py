import pytest

from gateway.config import parse_config
from gateway.routing import Router


def router(*routes):
    config = parse_config(
        {
            "upstreams": {"u": {"targets": ["http://127.0.0.1:1"]}},
            "routes": [{"upstream": "u", **r} for r in routes],
        }
    )
    return Router(config.routes)


MENU = router(
    {"name": "read", "match": {"path": "/api/menu-items", "methods": ["GET", "HEAD"]}},
    {"name": "write", "match": {"path": "/api/menu-items", "methods": ["POST", "PUT", "PATCH", "DELETE"]}},
    {"name": "api", "match": {"path": "/api"}},
    {"name": "items-any", "match": {"path": "/api/menu-items"}},
    {"name": "admin-host", "match": {"path": "/api/menu-items", "host": "admin.example.com"}},
    {"name": "auth", "match": {"path": "/auth/", "methods": ["POST"]}},
)


@pytest.mark.parametrize(
    ("method", "host", "path", "route", "allow"),
    [
        ("GET", None, "/api/menu-items", "read", ()),
        ("GET", None, "/api/menu-items/3", "read", ()),
        ("HEAD", None, "/api/menu-items/3/", "read", ()),
        ("POST", None, "/api/menu-items", "write", ()),
        # listed methods beat "any method" at the same prefix, whatever the file order
        ("OPTIONS", None, "/api/menu-items", "items-any", ()),
        # segment-aware: not a prefix match
        ("GET", None, "/api/menu-items-old", "api", ()),
        ("GET", None, "/api", "api", ()),
        ("GET", None, "/apix", None, ()),
        ("GET", None, "/", None, ()),
        # host-specific route wins at equal prefix; port and case ignored
        ("GET", "ADMIN.example.com:8080", "/api/menu-items", "admin-host", ()),
        ("GET", "other.example.com", "/api/menu-items", "read", ()),
        # path exists, method does not -> 405 with Allow
        ("GET", None, "/auth/jwt/create/", None, ("POST",)),
        ("POST", None, "/auth", "auth", ()),
    ],
)
def test_route_choice(method, host, path, route, allow):
    match = MENU.match(method, host, path)
    assert (match.route.name if match.route else None) == route
    assert match.allow == allow


def test_file_order_breaks_ties():
    # Identical matches are a config error; overlapping ones are decided by file order.
    r = router(
        {"name": "first", "match": {"path": "/x", "methods": ["GET", "POST"]}},
        {"name": "second", "match": {"path": "/x", "methods": ["GET"]}},
    )
    assert r.match("GET", None, "/x").route.name == "first"
    assert r.match("POST", None, "/x").route.name == "first"


def test_longest_prefix_wins_over_file_order():
    r = router({"name": "root", "match": {"path": "/"}}, {"name": "deep", "match": {"path": "/a/b"}})
    assert r.match("GET", None, "/a/b/c").route.name == "deep"
    assert r.match("GET", None, "/a/c").route.name == "root"


def test_allow_unions_every_refusing_route():
    r = router(
        {"name": "a", "match": {"path": "/x", "methods": ["GET"]}},
        {"name": "b", "match": {"path": "/x/y", "methods": ["POST"]}},
    )
    assert r.match("DELETE", None, "/x/y/z").allow == ("GET", "POST")


def test_very_deep_paths_are_cheap_and_correct():
    r = router({"name": "deep", "match": {"path": "/a/b"}})
    assert r.match("GET", None, "/a/b" + "/x" * 10000).route.name == "deep"
    assert r.match("GET", None, "/q" * 10000).route is None
