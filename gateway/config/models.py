"""Typed, frozen models of the whole configuration file.

Only sections whose behaviour exists are accepted: a key the gateway would ignore is
an error, because an operator who writes ``retries: 3`` and gets none is worse off
than one who is told the key is unknown. Later stages add their own section models
next to this file and a field here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainValidator, WithJsonSchema, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.client_ip import ClientIPHeader
from gateway.config.auth import AuthConfig, ClaimValue
from gateway.config.cache import CacheConfig, RouteCacheConfig
from gateway.config.base import Model
from gateway.config.upstream import TargetConfig, TimeoutsConfig, UpstreamConfig
from gateway.config.cors import CorsConfig, RouteCors
from gateway.config.firewall import FirewallConfig, RouteFirewallConfig
from gateway.config.store import StoreConfig
from gateway.config.throttle import RouteThrottleSetting, ThrottleConfig
from gateway.config.types import Cidr, Duration, HostPort, PositiveDuration, Size
from gateway.path import PathError, normalise_path

__all__ = [
    "Model",
    "ServerConfig",
    "AdminConfig",
    "TargetConfig",
    "TimeoutsConfig",
    "UpstreamConfig",
    "MatchConfig",
    "RouteConfig",
    "GatewayConfig",
]

_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _as_list(value: Any) -> Any:
    """Let a single value stand where a list is expected (``listen: 127.0.0.1:8080``)."""
    return [value] if isinstance(value, (str, dict)) else value


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


def _worker_count(value: Any) -> int | Literal["auto"]:
    """``server.workers``: a process count >= 1, or ``auto`` (one per usable CPU).

    YAML's ``yes``/``true`` would pass as the integer 1, so booleans are refused; a
    digit string (``"${WORKERS}"`` quoted) is accepted as its number."""
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise PydanticCustomError(
        "workers", 'expected an integer >= 1 or "auto", got {value}', {"value": repr(value)}
    )


WorkerCount = Annotated[
    int | Literal["auto"],
    PlainValidator(_worker_count),
    WithJsonSchema({"oneOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]}),
]


def _client_ip_header(value: Any) -> ClientIPHeader:
    """``server.client_ip_header``: header names are case-insensitive, so any
    spelling is accepted and stored in its canonical form."""
    if isinstance(value, str):
        for name in ("X-Forwarded-For", "Forwarded"):
            if value.strip().lower() == name.lower():
                return name  # type: ignore[return-value]
    raise PydanticCustomError(
        "client_ip_header", "expected X-Forwarded-For or Forwarded, got {value}", {"value": repr(value)}
    )


ClientIPHeaderName = Annotated[
    ClientIPHeader,
    PlainValidator(_client_ip_header),
    WithJsonSchema({"enum": ["X-Forwarded-For", "Forwarded"], "default": "X-Forwarded-For"}),
]


class ServerConfig(Model):
    listen: Annotated[tuple[HostPort, ...], BeforeValidator(_as_list, json_schema_input_type=str | list[str])] = Field(
        default=(("127.0.0.1", 8080),), min_length=1, json_schema_extra={"default": "127.0.0.1:8080"}
    )
    trusted_proxies: Annotated[tuple[Cidr, ...], BeforeValidator(_as_list, json_schema_input_type=str | list[str])] = ()
    client_ip_header: ClientIPHeaderName = "X-Forwarded-For"
    """The one header trusted proxies write the client address in (nginx's
    ``real_ip_header``); the other one is never read."""
    max_body_size: Size = 10 * 1024 * 1024
    max_header_size: Size = 16 * 1024
    shutdown_timeout: Duration = 15.0
    header_timeout: PositiveDuration = 10.0
    """Longest a client may take to send a complete request head, from accept (or from
    the first byte of a keep-alive connection's next request); exceeded -> 408 and a
    close (slowloris). Envoy's edge best practice for request_headers_timeout."""
    body_timeout: PositiveDuration = 60.0
    """Longest silence while reading a request body; exceeded -> 408 (nginx's
    client_body_timeout). Without it, slow uploads could hold every upstream connection."""
    workers: WorkerCount = 1
    """Serving processes sharing the listen ports (SO_REUSEPORT) under one supervisor;
    1 runs a single process with no supervisor. See docs/operations.md."""
    access_log: str = "stdout"
    """``stdout``, ``stderr``, ``off``, or a file path; JSON lines."""


    @field_validator("max_header_size")
    @classmethod
    def _header_floor(cls, value: int) -> int:
        if value < 1024:
            raise PydanticCustomError("size", "expected at least 1KiB, got {value} bytes", {"value": value})
        return value

    @field_validator("access_log", mode="before")
    @classmethod
    def _access_log(cls, value: Any) -> Any:
        # YAML reads a bare `off` as the boolean false.
        return "off" if value is False or value is None else value

    @field_validator("access_log")
    @classmethod
    def _access_log_target(cls, value: str) -> str:
        if value in ("stdout", "stderr", "off"):
            return value
        from pathlib import Path

        if not value.strip():
            raise PydanticCustomError("path", "expected stdout, stderr, off or a file path, got ''")
        if not Path(value).parent.is_dir():
            raise PydanticCustomError(
                "path", "the directory for the access log does not exist: {value}", {"value": str(Path(value).parent)}
            )
        return value


class AdminConfig(Model):
    listen: HostPort = Field(default=("127.0.0.1", 9901), json_schema_extra={"default": "127.0.0.1:9901"})
    token: Annotated[str | None, BeforeValidator(_empty_to_none)] = None
    """When set, every admin endpoint but /healthz needs ``Authorization: Bearer <token>``."""


class MatchConfig(Model):
    path: str
    methods: tuple[str, ...] | None = Field(
        default=None,
        json_schema_extra=lambda schema: schema.update(  # type: ignore[arg-type]
            {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}, {"type": "null"}]}
        ),
    )
    """One method or a list; ``null`` (the default) matches every method."""
    host: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value:
            raise PydanticCustomError(
                "path", "expected an absolute path like /api/menu-items, got {value}", {"value": repr(value)}
            )
        try:
            normal = normalise_path(value)
        except PathError as exc:
            raise PydanticCustomError("path", "{reason}: {value}", {"reason": str(exc), "value": repr(value)}) from None
        # Prefixes are segment-aware, so a trailing slash carries no meaning.
        return normal.rstrip("/") or "/"

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise PydanticCustomError("methods", "expected a non-empty list of HTTP methods, got {value}", {"value": repr(value)})
        out: list[str] = []
        for method in value:
            if not isinstance(method, str) or not _TOKEN_RE.match(method):
                raise PydanticCustomError("methods", "expected an HTTP method like GET, got {value}", {"value": repr(method)})
            upper = method.upper()
            if upper not in out:
                out.append(upper)
        return out

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.strip().lower()
        if not host or "/" in host or " " in host:
            raise PydanticCustomError("host", "expected a host name like api.example.com, got {value}", {"value": repr(value)})
        return host


class RouteConfig(Model):
    name: str
    match: MatchConfig
    upstream: str
    strip_prefix: bool = False
    auth: Literal["none", "optional", "required"] = "none"
    require_claims: dict[str, ClaimValue] = {}
    """Claims the verified token must carry (list claims: membership); else 403."""
    firewall: RouteFirewallConfig | None = None
    cors: RouteCors | Literal[False] | None = None
    """Overrides the global ``cors`` key by key; ``false`` turns CORS off here."""
    throttle: RouteThrottleSetting = None
    """Overrides the global ``throttle`` key by key; ``false`` turns throttling off here."""
    cache: RouteCacheConfig | None = None
    """GET/HEAD answers of this route are stored and served from the cache (SPEC §4)."""

    @model_validator(mode="after")
    def _per_user_needs_auth(self) -> RouteConfig:
        if self.cache is not None and self.cache.per_user and self.auth == "none":
            # Without verification there is no subject to key on: the raw token must
            # never be a cache key (SPEC §4), and such requests would only bypass.
            raise PydanticCustomError("per_user", "cache.per_user needs auth: optional or required on this route")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise PydanticCustomError(
                "name",
                "expected a name of letters, digits, '_', '.', '-' (at most 64), got {value}",
                {"value": repr(value)},
            )
        return value


class GatewayConfig(Model):
    server: ServerConfig = ServerConfig()
    admin: AdminConfig = AdminConfig()
    firewall: FirewallConfig = FirewallConfig()
    auth: AuthConfig = AuthConfig()
    cors: CorsConfig | None = None
    store: StoreConfig = StoreConfig()
    throttle: ThrottleConfig = ThrottleConfig()
    cache: CacheConfig = CacheConfig()
    upstreams: dict[str, UpstreamConfig] = Field(min_length=1)
    routes: tuple[RouteConfig, ...] = Field(min_length=1)
