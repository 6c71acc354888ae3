"""The body of POST /cache/purge: exactly one of three shapes, anything else a 400."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cache.purge import PurgeRequestError, parse_purge


@pytest.mark.parametrize(
    ("document", "arguments"),
    [
        ({"path": "/api/menu-items"}, {"path": "/api/menu-items"}),
        ({"path": "/api/menu-items/"}, {"path": "/api/menu-items/"}),  # a trailing slash is another resource
        ({"path": "/api//x/../menu"}, {"path": "/api/menu"}),  # normalised like request paths
        ({"path": "/%7Euser"}, {"path": "/~user"}),
        ({"prefix": "/api/"}, {"prefix": "/api/"}),
        ({"prefix": "/"}, {"prefix": "/"}),
        ({"all": True}, {"everything": True}),
    ],
)
def test_accepted(document: Any, arguments: dict[str, Any]) -> None:
    assert parse_purge(document) == arguments


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        ["/api"],
        "/api",
        {},
        {"path": "/a", "prefix": "/b"},
        {"path": "/a", "all": True},
        {"all": False},
        {"all": 1},
        {"all": "true"},
        {"paths": "/a"},
        {"PATH": "/a"},
        {"path": None},
        {"path": 3},
        {"path": ["/a"]},
        {"path": ""},
        {"path": "api/items"},  # not absolute
        {"path": "http://example.com/api"},
        {"path": "/api?page=1"},  # purges drop every query variant: a query is a mistake
        {"path": "/api#x"},
        {"prefix": "/api?"},
        {"path": "/../etc"},  # climbs above the root
        {"path": "/a%2Fb"},  # encoded slash
        {"prefix": "/a%00"},
        {"path": "/a\\b"},
    ],
)
def test_refused(document: Any) -> None:
    with pytest.raises(PurgeRequestError):
        parse_purge(document)
