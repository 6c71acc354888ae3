"""``throttle:`` globally and per route: rates, burst, overrides, errors with paths."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from gateway.config.throttle import Limits, effective_throttle, throttle_warnings
from gateway.config.units import Rate

JWT = {"jwt": {"algorithms": ["HS256"], "secret": "x" * 32}}


def config(throttle: Any = None, route: dict[str, Any] | None = None, **sections: Any) -> Any:
    data: dict[str, Any] = {
        "auth": JWT,
        "upstreams": {"app": {"targets": ["http://127.0.0.1:9"]}},
        "routes": [{"name": "r", "match": {"path": "/"}, "upstream": "app", "auth": "optional", **(route or {})}],
        **sections,
    }
    if throttle is not None:
        data["throttle"] = throttle
    return parse_config(data)


@pytest.mark.parametrize(
    ("global_", "route", "expected"),
    [
        (None, None, None),
        ({"anonymous": "60/minute"}, None, Limits(Rate(60, 60), None, None)),
        ({"anonymous": "60/minute", "authenticated": "600/m"}, {"authenticated": "10/minute"},
         Limits(Rate(60, 60), Rate(10, 60), None)),
        ({"anonymous": "60/minute", "burst": 100}, {"burst": 5}, Limits(Rate(60, 60), None, 5)),
        ({"anonymous": "60/minute"}, False, None),
        (None, {"authenticated": "5/s"}, Limits(None, Rate(5, 1), None)),
        ({"burst": 10}, None, None),  # a burst alone throttles nothing
        ({"anonymous": "60/minute"}, {}, Limits(Rate(60, 60), None, None)),
    ],
)
def test_effective_limits(global_: Any, route: Any, expected: Limits | None) -> None:
    cfg = config(global_, {"throttle": route} if route is not None else None)
    assert effective_throttle(cfg.throttle, cfg.routes[0].throttle) == expected


def test_capacity_defaults_to_the_rate_count() -> None:
    assert Limits(Rate(10, 60), None, None).capacity(Rate(10, 60)) == 10
    assert Limits(Rate(10, 60), None, 3).capacity(Rate(10, 60)) == 3


@pytest.mark.parametrize(
    ("throttle", "route", "path", "message"),
    [
        ({"anonymous": "0/minute"}, None, "throttle.anonymous", "positive rate"),
        ({"authenticated": "-5/second"}, None, "throttle.authenticated", "positive rate"),
        ({"anonymous": "often"}, None, "throttle.anonymous", "expected a rate like 60/minute"),
        ({"anonymous": "5/fortnight"}, None, "throttle.anonymous", "expected a rate like 60/minute"),
        ({"burst": 0}, None, "throttle.burst", "integer >= 1, got 0"),
        ({"burst": -3}, None, "throttle.burst", "integer >= 1"),
        ({"burst": 2.5}, None, "throttle.burst", "integer >= 1"),
        ({"burst": True}, None, "throttle.burst", "integer >= 1"),
        ({"rate": "5/s"}, None, "throttle.rate", "unknown key"),
        (None, {"throttle": {"anonymous": "0/s"}}, "routes[0].throttle.anonymous", "positive rate"),
        (None, {"throttle": {"burst": 0}}, "routes[0].throttle.burst", "integer >= 1"),
        (None, {"throttle": {"anonymus": "5/s"}}, "routes[0].throttle.anonymus", "unknown key"),
        (None, {"throttle": True}, "routes[0].throttle", "or false"),
        (None, {"throttle": "10/minute"}, "routes[0].throttle", "or false"),
        (None, {"auth": "none", "throttle": {"authenticated": "5/s"}}, "routes[0].throttle.authenticated", "auth: none"),
    ],
)
def test_errors_name_their_path(throttle: Any, route: Any, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(throttle, route)
    assert [(i.path, message in i.message) for i in caught.value.issues] == [(path, True)], caught.value


def test_workers_with_the_memory_store_warn() -> None:
    throttled = config({"anonymous": "60/minute"}, server={"workers": 2})
    assert [w.path for w in throttle_warnings(throttled)] == ["server.workers"]
    assert throttle_warnings(config({"anonymous": "60/minute"}, server={"workers": 1})) == []
    assert throttle_warnings(config(None, server={"workers": 2})) == []  # nothing throttled
    redis = {"kind": "redis", "url": "redis://127.0.0.1:6379/0"}
    assert throttle_warnings(config({"anonymous": "60/minute"}, server={"workers": 2}, store=redis)) == []
