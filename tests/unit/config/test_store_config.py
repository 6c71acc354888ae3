"""``store:``: kinds, URLs, timeouts, on_error, and errors with their YAML paths."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config

BASE: dict[str, Any] = {
    "upstreams": {"app": {"targets": ["http://127.0.0.1:9"]}},
    "routes": [{"name": "r", "match": {"path": "/"}, "upstream": "app"}],
}


def parse(store: Any) -> Any:
    return parse_config({**BASE, "store": store}).store


def test_defaults() -> None:
    store = parse_config(BASE).store
    assert (store.kind, store.url, store.cluster, store.timeout, store.on_error) == ("memory", None, False, 0.05, "local")


@pytest.mark.parametrize(
    "store",
    [
        {"kind": "redis", "url": "redis://127.0.0.1:6379/0"},
        {"kind": "redis", "url": "rediss://user:pw@cache.example.com:6380/2", "on_error": "deny", "timeout": "20ms"},
        {"kind": "redis", "url": "redis://10.0.0.1:7000", "cluster": True, "on_error": "allow"},
        {"kind": "memory", "url": "redis://127.0.0.1:6379/0"},  # kept for when kind flips
        {"kind": "memory", "url": ""},  # ${REDIS_URL:-} unset
    ],
)
def test_valid(store: dict[str, Any]) -> None:
    assert parse(store).kind == store["kind"]


@pytest.mark.parametrize(
    ("store", "path", "message"),
    [
        ({"kind": "redis"}, "store.url", "required with kind: redis"),
        ({"kind": "redis", "url": ""}, "store.url", "required with kind: redis"),
        ({"kind": "redis", "url": "http://127.0.0.1:6379"}, "store.url", "redis:// or rediss://"),
        ({"kind": "redis", "url": "unix:///tmp/redis.sock"}, "store.url", "redis:// or rediss://"),
        ({"kind": "redis", "url": "redis://:6379"}, "store.url", "expected a host"),
        ({"kind": "redis", "url": "redis://h:99999"}, "store.url", "expected a URL like"),
        ({"kind": "redis", "url": "redis://h/db1"}, "store.url", "database number"),
        ({"kind": "redis", "url": "redis://h/1", "cluster": True}, "store.url", "only database 0"),
        ({"kind": "memcached"}, "store.kind", "'memory' or 'redis'"),
        ({"timeout": "0ms"}, "store.timeout", "positive duration"),
        ({"timeout": "soon"}, "store.timeout", "expected a duration like 30s, got 'soon'"),
        ({"on_error": "ignore"}, "store.on_error", "'allow', 'deny' or 'local'"),
        ({"pool": 5}, "store.pool", "unknown key"),
    ],
)
def test_errors_name_their_path(store: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(store)
    assert any(issue.path == path and message in issue.message for issue in caught.value.issues), caught.value
