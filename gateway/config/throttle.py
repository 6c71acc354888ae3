"""``throttle:`` (global defaults) and a route's ``throttle:`` override.

A token bucket per (route, caller class, caller): ``anonymous`` callers are keyed by
client IP (IPv6 by its /64), ``authenticated`` ones by the verified subject. The
global section is the default for every route; a route's mapping overrides it key by
key (a route may write only ``authenticated``, keeping the global ``anonymous``), and
``throttle: false`` turns throttling off for that route. A class with no rate is not
throttled on that route. ``burst`` is the bucket size, for both classes; by default
it is the rate's count (``10/minute`` -> 10 requests at once, then one every 6 s).

Routes already match on methods, so a route that lists ``methods: [POST]`` throttles
exactly those: throttle writes and not reads by giving them separate routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import ValidatorFunctionWrapHandler, WrapValidator, field_validator
from pydantic_core import PydanticCustomError

from gateway.config.base import Model
from gateway.config.errors import ConfigIssue
from gateway.config.types import RateValue
from gateway.config.units import Rate

__all__ = [
    "ThrottleConfig",
    "RouteThrottle",
    "RouteThrottleSetting",
    "Limits",
    "effective_throttle",
    "check_throttle",
    "throttle_warnings",
    "CALLER_CLASSES",
]

CALLER_CLASSES = ("anonymous", "authenticated")


class ThrottleConfig(Model):
    anonymous: RateValue | None = None
    """Per client IP (IPv6: per /64), for requests without a verified token."""
    authenticated: RateValue | None = None
    """Per verified subject (``auth.jwt.subject_claim``)."""
    burst: int | None = None
    """Bucket size; default: the rate's count."""

    @field_validator("burst", mode="before")
    @classmethod
    def _burst(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)  # "${BURST}" quoted in YAML
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PydanticCustomError("burst", "expected a bucket size: an integer >= 1, got {value}", {"value": repr(value)})
        return value


class RouteThrottle(ThrottleConfig):
    """A route's override: keys it sets replace the global section's."""


def _route_setting(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # Validated by hand rather than as a plain union, so that a mistake inside the
    # mapping is reported at routes[i].throttle.KEY, not once per union member.
    if value is None or value is False or isinstance(value, RouteThrottle):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "throttle", "expected a mapping (anonymous, authenticated, burst) or false, got {value}", {"value": repr(value)}
        )
    return RouteThrottle.model_validate(value)


RouteThrottleSetting = Annotated[RouteThrottle | Literal[False] | None, WrapValidator(_route_setting)]
"""A route's ``throttle:``: a mapping of overrides, ``false`` (off), or absent (the global defaults)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The buckets one route runs with (``None``: that class is not throttled there)."""

    anonymous: Rate | None
    authenticated: Rate | None
    burst: int | None

    def capacity(self, rate: Rate) -> int:
        return self.burst if self.burst is not None else rate.count


def effective_throttle(
    global_throttle: ThrottleConfig, route_throttle: RouteThrottle | Literal[False] | None
) -> Limits | None:
    """The limits a route runs with, or ``None`` when it is not throttled at all."""
    if route_throttle is False:
        return None
    values = {name: getattr(global_throttle, name) for name in ThrottleConfig.model_fields}
    if route_throttle is not None:
        values.update({name: getattr(route_throttle, name) for name in route_throttle.model_fields_set})
    limits = Limits(**values)
    if limits.anonymous is None and limits.authenticated is None:
        return None
    return limits


def check_throttle(config: Any) -> list[ConfigIssue]:
    """Cross-section rules for ``throttle`` (called by ``parse_config``): a rate that
    could never apply is an error rather than a silent no-op."""
    issues: list[ConfigIssue] = []
    for index, route in enumerate(config.routes):
        override = route.throttle
        if isinstance(override, RouteThrottle) and "authenticated" in override.model_fields_set:
            if override.authenticated is not None and route.auth == "none":
                issues.append(
                    ConfigIssue(
                        f"routes[{index}].throttle.authenticated",
                        "the route has auth: none, so no caller is ever authenticated on it "
                        "(set auth: optional or required)",
                    )
                )
    return issues


def throttle_warnings(config: Any) -> list[ConfigIssue]:
    """Valid but probably not what was meant (``gateway check`` prints these)."""
    workers = config.server.workers
    if config.store.kind != "memory" or workers == 1:
        return []
    if not any(effective_throttle(config.throttle, route.throttle) for route in config.routes):
        return []
    return [
        ConfigIssue(
            "server.workers",
            f"{workers} worker processes with store.kind: memory: each process keeps its own buckets, "
            "so a client may get up to one limit per process; use store.kind: redis for exact limits",
        )
    ]
