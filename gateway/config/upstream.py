"""The ``upstreams`` section: targets, balancing, timeouts, health and retries."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.config.base import Model
from gateway.config.types import Duration, PositiveDuration

__all__ = [
    "TargetConfig",
    "TimeoutsConfig",
    "HealthCheckConfig",
    "PassiveConfig",
    "UpstreamConfig",
    "STRATEGIES",
]

STRATEGIES = ("round_robin", "weighted", "least_conn", "p2c", "hash")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class TargetConfig(Model):
    url: str
    weight: int = Field(default=1, ge=1, le=1000)
    """Share of traffic relative to the other targets (every strategy honours it)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from yarl import URL

        try:
            url = URL(value)
        except (ValueError, TypeError):
            url = None
        if (
            url is None
            or url.scheme not in ("http", "https")
            or not url.host
            or url.query_string
            or url.fragment
            or url.user
        ):
            raise PydanticCustomError(
                "url", "expected an http(s) URL like http://127.0.0.1:8001, got {value}", {"value": repr(value)}
            )
        return value.rstrip("/")


def _target_shorthand(value: Any) -> Any:
    """``targets: [http://a:1, http://b:2]`` is accepted as well as ``- url: ...``.

    A single string of URLs separated by commas or spaces is a list too, so that one
    environment variable can carry every target (``targets: "${UPSTREAM_URLS}"``):
    interpolation fills one scalar, it can never produce a YAML list. URLs never hold a
    comma or a space unencoded, so the split cannot cut one in two."""
    if isinstance(value, str):
        value = [part for part in re.split(r"[\s,]+", value) if part]
    if isinstance(value, list):
        return [{"url": item} if isinstance(item, str) else item for item in value]
    return value


class TimeoutsConfig(Model):
    connect: PositiveDuration = 2.0
    """Establishing a TCP connection to a target; exceeded -> 502."""
    response: PositiveDuration = 30.0
    """Silence while waiting for the response head or the next body bytes; exceeded -> 504."""
    queue: PositiveDuration = 5.0
    """Waiting for a free pooled connection when a target is at ``max_connections``
    (HAProxy's ``timeout queue``); exceeded -> 503 with ``Retry-After``. The gateway's
    own congestion: it never counts against the target's health."""



class HealthCheckConfig(Model):
    """Active checks: one GET per target per interval, per gateway process."""

    path: str = "/healthz"
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 1.0
    healthy_after: int = Field(default=2, ge=1, le=100)
    unhealthy_after: int = Field(default=3, ge=1, le=100)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise PydanticCustomError("path", "expected an absolute path like /healthz, got {value}", {"value": repr(value)})
        return value



class PassiveConfig(Model):
    """Outlier ejection from real traffic."""

    failures: int = Field(default=3, ge=1, le=1000)
    """Consecutive connect errors, resets, timeouts or 5xx answers that eject a target."""
    eject_for: Duration = 30.0


def _passive_switch(value: Any) -> Any:
    # `passive: false` turns ejection off (None); `passive: true` means the defaults.
    if value is True:
        return {}
    if value is False:
        return None
    return value


class UpstreamConfig(Model):
    targets: Annotated[
        tuple[TargetConfig, ...], BeforeValidator(_target_shorthand, json_schema_input_type=list[str | TargetConfig] | str)
    ] = Field(min_length=1)
    strategy: Literal["round_robin", "weighted", "least_conn", "p2c", "hash"] = "round_robin"
    hash_on: str = "client_ip"
    """For ``strategy: hash``: ``client_ip``, ``subject`` or ``header:NAME``."""
    host_header: Literal["preserve", "upstream"] = "preserve"
    timeouts: TimeoutsConfig = TimeoutsConfig()
    max_connections: int = Field(default=100, ge=1, le=100_000)
    """Keep-alive pool bound per target."""
    retries: int = Field(default=1, ge=0, le=10)
    """Further attempts, each to a different target, for idempotent requests (and for
    any request whose connection was never established)."""
    health_check: HealthCheckConfig | None = None
    passive: Annotated[
        PassiveConfig | None, BeforeValidator(_passive_switch, json_schema_input_type=PassiveConfig | bool)
    ] = PassiveConfig()
    """Ejection from real traffic; ``false`` turns it off."""

    @field_validator("hash_on")
    @classmethod
    def _hash_on(cls, value: str) -> str:
        if value in ("client_ip", "subject"):
            return value
        if value.startswith("header:") and _HEADER_NAME.match(value[7:]):
            return "header:" + value[7:].lower()
        raise PydanticCustomError(
            "hash_on", "expected client_ip, subject or header:NAME, got {value}", {"value": repr(value)}
        )

    @model_validator(mode="after")
    def _hash_on_needs_hash(self) -> UpstreamConfig:
        if self.hash_on != "client_ip" and self.strategy != "hash":
            raise PydanticCustomError("hash_on", "hash_on only applies to strategy: hash")
        urls = [t.url for t in self.targets]
        if len(set(urls)) != len(urls):
            raise PydanticCustomError("targets", "the same target URL is listed twice")
        return self
