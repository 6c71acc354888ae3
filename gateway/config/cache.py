"""The ``cache`` sections: the process-wide bounds and a route's caching policy.

A route caches only when it has a ``cache`` key (SPEC §4); the global section bounds
the memory a memory store may use and the size of one stored response, whatever the
store. Every value is checked here, once, so the cache stage compiles a route's
policy without re-validating anything per request.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.config.base import Model
from gateway.config.types import Duration, PositiveDuration, Size

__all__ = ["CacheConfig", "RouteCacheConfig", "UNCACHEABLE_VARY"]

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_PARAM = re.compile(r"^[^\s&=#]+$")

UNCACHEABLE_VARY = frozenset({"authorization", "cookie", "set-cookie", "host"})
"""Headers a route may not list in ``vary``: Authorization has ``per_user`` (keyed on
the verified subject, never the raw token), Cookie would make every caller a
variant (and is a credential), Host is always in the key already."""


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class CacheConfig(Model):
    """``cache:`` at the top level: bounds that apply to every cached route."""

    max_memory: Size = 64 * 1024 * 1024
    """Memory store: the LRU bound over whole entries (head and body), per process."""
    max_entry_size: Size = 1024 * 1024
    """Larger responses are streamed to the client and not stored."""

    @model_validator(mode="after")
    def _entry_fits(self) -> CacheConfig:
        if self.max_entry_size > self.max_memory:
            raise PydanticCustomError(
                "size", "max_entry_size ({entry} bytes) is larger than max_memory ({memory} bytes)",
                {"entry": self.max_entry_size, "memory": self.max_memory},
            )
        return self


class RouteCacheConfig(Model):
    """A route's ``cache:``: what its GET/HEAD answers may be stored and served as."""

    ttl: PositiveDuration
    """How long a stored answer is fresh; an origin ``s-maxage``/``max-age`` shortens it."""
    vary: Annotated[tuple[str, ...], BeforeValidator(_as_list, json_schema_input_type=str | list[str])] = ()
    """Request headers whose values are part of the key (e.g. Accept, Accept-Language)."""
    ignore_params: Annotated[tuple[str, ...], BeforeValidator(_as_list, json_schema_input_type=str | list[str])] = ()
    """Query parameters left out of the key (tracking parameters like utm_source)."""
    per_user: bool = False
    """Requests with a verified token are cached per subject; without it they bypass."""
    stale_if_error: Duration = 0.0
    """How long past expiry an entry may answer while the upstream fails."""
    stale_while_revalidate: Duration = 0.0
    """How long past expiry an entry may answer at once while one background request
    refreshes it."""

    @field_validator("vary")
    @classmethod
    def _vary(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for name in value:
            if not _HEADER_NAME.match(name):
                raise PydanticCustomError("vary", "expected a header name like Accept, got {value}", {"value": repr(name)})
            lower = name.lower()
            if lower in UNCACHEABLE_VARY:
                raise PydanticCustomError(
                    "vary",
                    "{value} cannot be a cache key header (Authorization: use per_user; Cookie: never cached; "
                    "Host: always in the key)",
                    {"value": name},
                )
            if lower not in out:
                out.append(lower)
        return tuple(out)

    @field_validator("ignore_params")
    @classmethod
    def _params(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _PARAM.match(name):
                raise PydanticCustomError(
                    "ignore_params", "expected a query parameter name, got {value}", {"value": repr(name)}
                )
        return tuple(dict.fromkeys(value))

