"""``cors`` sections: exact origins, never "*" with credentials, route overrides."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from gateway.config.cors import effective_cors

BASE: dict[str, Any] = {"upstreams": {"a": {"targets": ["http://127.0.0.1:9"]}}}


def parse(cors: Any = None, route_cors: Any = None):
    route: dict[str, Any] = {"name": "r", "match": {"path": "/"}, "upstream": "a"}
    if route_cors is not None:
        route["cors"] = route_cors
    data = {**BASE, "routes": [route]}
    if cors is not None:
        data["cors"] = cors
    return parse_config(data)


def test_defaults_and_normalisation():
    config = parse({"allow_origins": ["HTTPS://App.Example.com", "http://localhost:3000"], "allow_methods": ["get", "post"]})
    assert config.cors is not None
    assert config.cors.allow_origins == ("https://app.example.com", "http://localhost:3000")
    assert config.cors.allow_methods == ("GET", "POST")
    assert config.cors.allow_headers == ("Authorization", "Content-Type")
    assert config.cors.max_age == 600 and config.cors.allow_credentials is False


@pytest.mark.parametrize(
    ("cors", "route_cors", "expected"),
    [
        ({"allow_origins": ["*"], "allow_credentials": True}, None, "cors.allow_credentials: cannot be true with allow_origins ['*']"),
        ({"allow_origins": ["*"]}, {"allow_credentials": True}, "routes[0].cors.allow_credentials: cannot be true"),
        (None, {"allow_origins": ["*"], "allow_credentials": True}, "routes[0].cors.allow_credentials: cannot be true"),
        ({"allow_origins": ["https://a.example", "*"]}, None, "cors.allow_origins: '*' stands alone"),
        ({"allow_origins": ["https://a.example/"]}, None, "cors.allow_origins: expected an origin like"),
        ({"allow_origins": ["https://*.example.com"]}, None, "cors.allow_origins: expected an origin like"),
        ({"allow_origins": ["a.example"]}, None, "cors.allow_origins: expected an origin like"),
        ({"allow_origins": ["null"]}, None, "cors.allow_origins: origin 'null'"),
        ({"allow_origins": ["https://a.example"], "allow_methods": ["GET POST"]}, None, "cors.allow_methods: expected methods like GET"),
        ({"allow_origins": ["https://a.example"], "allow_headers": ["X Bad"]}, None, "cors.allow_headers: expected header names"),
        ({"allow_origins": ["https://a.example"], "allow_credentials": True, "expose_headers": ["*"]}, None, "cors.expose_headers"),
        ({"allow_origins": ["https://a.example"], "max_age": "2d"}, None, "cors.max_age"),
        ({"allow_origins": ["https://a.example"], "origins": []}, None, "cors.origins: unknown key"),
    ],
)
def test_mistakes_are_reported_at_their_path(cors, route_cors, expected):
    with pytest.raises(ConfigError) as info:
        parse(cors, route_cors)
    found = [str(i) for i in info.value.issues]
    assert any(expected in issue for issue in found), found


@pytest.mark.parametrize(
    ("cors", "route_cors", "origins", "credentials"),
    [
        (None, None, None, None),
        ({"allow_origins": ["https://a.example"]}, None, ("https://a.example",), False),
        ({"allow_origins": ["https://a.example"]}, False, None, None),
        ({"allow_origins": ["https://a.example"]}, {"allow_credentials": True}, ("https://a.example",), True),
        ({"allow_origins": ["https://a.example"], "allow_credentials": True}, {"allow_origins": ["https://b.example"]}, ("https://b.example",), True),
        (None, {"allow_origins": ["https://b.example"]}, ("https://b.example",), False),
        ({"allow_origins": ["https://a.example"]}, {"allow_origins": []}, None, None),
    ],
)
def test_effective_policy(cors, route_cors, origins, credentials):
    config = parse(cors, route_cors)
    policy = effective_cors(config.cors, config.routes[0].cors)
    if origins is None:
        assert policy is None
    else:
        assert policy is not None and policy.allow_origins == origins and policy.allow_credentials is credentials
