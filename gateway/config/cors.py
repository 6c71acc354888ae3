"""``cors:`` (global) and a route's ``cors:`` override.

A route's ``cors:`` mapping overrides the global section key by key (keys it does not
write are taken from the global section, or the defaults when there is none);
``cors: false`` turns CORS off for that route. An empty ``allow_origins`` means no
CORS at all: the gateway adds no headers and answers no preflights.

``"*"`` with ``allow_credentials: true`` is refused: a credentialed response may only
name one origin, and reflecting whatever ``Origin`` arrives is how CORS turns into
"any site can read this user's data".
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from gateway.config.base import Model
from gateway.config.errors import ConfigIssue
from gateway.config.types import Duration

__all__ = ["CorsConfig", "RouteCors", "effective_cors", "check_cors"]

_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token
_ORIGIN_RE = re.compile(r"^([a-z][a-z0-9+.\-]*)://(\[[0-9a-f:.]+\]|[a-z0-9\-._~]+)(:[0-9]{1,5})?$")


def _tokens(value: Any, *, what: str, example: str, star: bool) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise PydanticCustomError("cors", "expected a list of {what}, got {value}", {"what": what, "value": repr(value)})
    out: list[str] = []
    for item in value:
        if star and item == "*":
            if len(value) != 1:
                raise PydanticCustomError("cors", "'*' stands alone: it cannot be listed with other {what}", {"what": what})
        elif not isinstance(item, str) or not _TOKEN_RE.match(item):
            raise PydanticCustomError(
                "cors", "expected {what} like {example}, got {value}", {"what": what, "example": example, "value": repr(item)}
            )
        if item not in out:
            out.append(item)
    return tuple(out)


class CorsConfig(Model):
    allow_origins: tuple[str, ...] = ()
    """Exact origins (``https://app.example.com``), or ``["*"]`` for any (without credentials)."""
    allow_methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")
    allow_headers: tuple[str, ...] = ("Authorization", "Content-Type")
    """Request headers a page may send; ``["*"]`` allows whatever the preflight asks for."""
    expose_headers: tuple[str, ...] = ()
    """Response headers a page may read beyond the CORS-safelisted ones (e.g. ``RateLimit-Remaining``)."""
    allow_credentials: bool = False
    max_age: Duration = Field(default=600.0, le=86400.0)
    """How long a browser may cache a preflight answer."""

    @field_validator("allow_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise PydanticCustomError("cors", "expected a list of origins, got {value}", {"value": repr(value)})
        out: list[str] = []
        for item in value:
            if item == "*":
                if len(value) != 1:
                    raise PydanticCustomError("cors", "'*' stands alone: it cannot be listed with other origins")
                out.append(item)
                continue
            if not isinstance(item, str):
                raise PydanticCustomError("cors", "expected an origin like https://app.example.com, got {value}", {"value": repr(item)})
            origin = item.strip().lower()
            if origin == "null":
                raise PydanticCustomError(
                    "cors", "origin 'null' is sent by sandboxed and file:// pages; it cannot be trusted"
                )
            if not _ORIGIN_RE.match(origin):
                raise PydanticCustomError(
                    "cors",
                    "expected an origin like https://app.example.com (scheme://host[:port], no path, "
                    "no wildcard), got {value}",
                    {"value": repr(item)},
                )
            if origin not in out:
                out.append(origin)
        return tuple(out)

    @field_validator("allow_methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        return tuple(m.upper() for m in _tokens(value, what="methods", example="GET", star=False))

    @field_validator("allow_headers", "expose_headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        return _tokens(value, what="header names", example="Content-Type", star=True)


class RouteCors(CorsConfig):
    """A route's override: keys it sets replace the global section's."""


def effective_cors(global_cors: CorsConfig | None, route_cors: RouteCors | Literal[False] | None) -> CorsConfig | None:
    """The CORS policy a route runs with, or ``None`` when it has none."""
    if route_cors is False:
        return None
    if route_cors is None:
        policy = global_cors
    elif global_cors is None:
        policy = CorsConfig.model_validate(route_cors.model_dump(exclude_unset=True))
    else:
        overrides = {name: getattr(route_cors, name) for name in route_cors.model_fields_set}
        policy = global_cors.model_copy(update=overrides)
    if policy is None or not policy.allow_origins:
        return None
    return policy


def _policy_issues(policy: CorsConfig, where: str) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if policy.allow_credentials and policy.allow_origins == ("*",):
        issues.append(
            ConfigIssue(
                f"{where}.allow_credentials",
                "cannot be true with allow_origins ['*']: list the origins that may send credentials",
            )
        )
    if policy.allow_credentials and policy.expose_headers == ("*",):
        issues.append(
            ConfigIssue(f"{where}.expose_headers", "'*' is not honoured by browsers with credentials; list the headers")
        )
    return issues


def check_cors(config: Any) -> list[ConfigIssue]:
    """Cross-section rules for ``cors`` (called by ``parse_config``)."""
    issues: list[ConfigIssue] = []
    global_cors: CorsConfig | None = config.cors
    if global_cors is not None:
        issues += _policy_issues(global_cors, "cors")
    for index, route in enumerate(config.routes):
        if isinstance(route.cors, RouteCors):
            policy = effective_cors(global_cors, route.cors)
            if policy is not None:
                issues += _policy_issues(policy, f"routes[{index}].cors")
    return issues
