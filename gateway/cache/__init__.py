"""The response cache (SPEC §4 "Caching rules", §4a "One key", §5 purge and metrics).

- ``control.py``: the origin's ``Cache-Control``, parsed once per response;
- ``policy.py``: which requests look up, which answers store, for how long;
- ``key.py``: the key, built from what the gateway sends upstream;
- ``entry.py``: a stored answer and its age (RFC 9111 §4.2.3);
- ``generations.py``: O(1) invalidation of every variant of a path;
- ``store.py``: the store protocol and the memory store (LRU bounded by bytes);
  ``redis_store.py``: entries shared by every instance;
- ``coalescing.py``: one upstream request per key at a time;
- ``response_cache.py``: the process's cache: store, fills, write invalidation, purge.

The stage that uses them is :mod:`gateway.stages.cache`. ``store.kind`` picks the
cache's store as it picks the throttle's: one Redis holds both.
"""

from __future__ import annotations

import time

from gateway.cache.generations import Generations
from gateway.cache.response_cache import ResponseCache
from gateway.cache.store import CacheStore, MemoryCacheStore
from gateway.config.models import GatewayConfig
from gateway.metrics import Metrics

__all__ = ["create_cache", "ResponseCache", "Generations"]


def create_cache(config: GatewayConfig, *, metrics: Metrics, generations: Generations) -> ResponseCache:
    store: CacheStore
    if config.store.kind == "redis":
        # Imported here: a gateway on the memory store never loads redis-py.
        from gateway.cache.redis_store import RedisCacheStore

        store = RedisCacheStore(config.store, metrics=metrics, max_entry_size=config.cache.max_entry_size)
    else:
        store = MemoryCacheStore(max_memory=config.cache.max_memory, generations=generations, clock=time.time)
    return ResponseCache(store=store, metrics=metrics, max_entry_size=config.cache.max_entry_size, clock=time.time)
