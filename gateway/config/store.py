"""``store:``: where shared state (throttle buckets, cache entries) lives.

``kind: memory`` keeps it in each process: nothing to run, but every worker process
counts on its own, so with ``server.workers > 1`` a limit is enforced per process
(``gateway check`` warns). ``kind: redis`` keeps it in one Redis (or Redis Cluster
with ``cluster: true``) shared by every process and every gateway instance.

``url`` and ``cluster`` may be written with ``kind: memory`` (an operator flips only
``kind``), and are then unused; the URL is still checked, so a typo does not wait
for the day someone switches to Redis.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from gateway.config.base import Model
from gateway.config.errors import ConfigIssue
from gateway.config.types import PositiveDuration

__all__ = ["StoreConfig", "REDIS_SCHEMES", "check_store", "redacted_url"]

REDIS_SCHEMES = frozenset({"redis", "rediss"})


class StoreConfig(Model):
    kind: Literal["memory", "redis"] = "memory"
    url: str | None = Field(default=None, validate_default=True)
    """``redis://[[user]:password@]host:port[/db]`` or ``rediss://`` (TLS)."""
    cluster: bool = False
    """The URL names one node of a Redis Cluster; the client discovers the others."""
    timeout: PositiveDuration = 0.05
    """Bound on each store call (connect, or one round trip), so an unreachable store
    costs a request at most this long."""
    on_error: Literal["allow", "deny", "local"] = "local"
    """While the store is unreachable: throttling lets every request through
    (``allow``), refuses every request with 503 (``deny``), or counts in in-process
    buckets until the store is back (``local``)."""

    @field_validator("url", mode="before")
    @classmethod
    def _empty_url(cls, value: Any) -> Any:
        # ``url: ${REDIS_URL:-}`` with the variable unset means "no URL".
        return None if value == "" else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("kind") == "redis":
                raise PydanticCustomError("url", "required with kind: redis (e.g. redis://127.0.0.1:6379/0)")
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise PydanticCustomError(
                "url", "expected a URL like redis://127.0.0.1:6379/0, got {value}", {"value": repr(value)}
            ) from None
        if parts.scheme not in REDIS_SCHEMES:
            raise PydanticCustomError(
                "url", "expected a redis:// or rediss:// URL, got {value}", {"value": repr(value)}
            )
        if not parts.hostname:
            raise PydanticCustomError("url", "expected a host in the URL, got {value}", {"value": repr(value)})
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise PydanticCustomError(
                "url", "expected a database number as the URL path (/0), got {value}", {"value": repr(value)}
            )
        return value



def check_store(config: Any) -> list[ConfigIssue]:
    """Cross-field rules for ``store`` (called by ``parse_config``)."""
    store: StoreConfig = config.store
    if store.cluster and store.url is not None and urlsplit(store.url).path.strip("/") not in ("", "0"):
        return [ConfigIssue("store.url", "Redis Cluster has only database 0; drop the /N from the URL")]
    return []


def redacted_url(url: str) -> str:
    """``url`` with its password masked, for logs, ``/status`` and ``gateway check``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
