"""What the throttle store and the cache store share about talking to Redis.

Each store has its own redis-py client (a large cache entry must never sit in front
of a throttle decision on one connection), built the same way: our own deadlines
(``asyncio.timeout``) bound every call, so redis-py keeps no socket timeout of its
own (its per-read timers would cost on every call) and never retries (a retry would
multiply the bound).
"""

from __future__ import annotations

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from gateway.config.store import StoreConfig

__all__ = ["UNAVAILABLE", "describe", "make_client"]

UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError, TimeoutError)
"""What an unreachable or unhealthy Redis raises (redis-py's errors, the socket's,
our own deadline's). Anything else is a bug and propagates."""


def make_client(config: StoreConfig) -> Redis | RedisCluster:
    """A client for ``store.url`` (a cluster client with ``store.cluster``); it does
    no I/O until used."""
    if config.url is None:  # StoreConfig refuses this; a hand-built one may not
        raise ValueError("store.kind redis needs store.url")
    options = {"socket_connect_timeout": config.timeout, "socket_timeout": None, "retry": Retry(NoBackoff(), 0)}
    if config.cluster:
        return RedisCluster.from_url(config.url, **options)
    return Redis.from_url(config.url, **options)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
