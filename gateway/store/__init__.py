"""Shared state behind one small protocol, picked by ``store.kind`` from a registry.

``memory`` keeps buckets in the process; ``redis`` in one Redis or Redis Cluster
shared by every process and instance. The runtime creates the store once per
process (``create_store``), passes it to reloads whose ``store:`` section is
unchanged, and closes it with the process; stages reach it through their
dependencies, never through module state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.config.store import StoreConfig
from gateway.metrics import Metrics
from gateway.store.base import BucketPolicy, Decision, Store, StoreError, StoreUnavailable
from gateway.store.memory import MemoryStore

__all__ = [
    "STORES",
    "StoreFactory",
    "create_store",
    "BucketPolicy",
    "Decision",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "MemoryStore",
]

StoreFactory = Callable[[StoreConfig, Metrics], Store]


def _memory(config: StoreConfig, metrics: Metrics) -> Store:
    return MemoryStore()


def _redis(config: StoreConfig, metrics: Metrics) -> Store:
    # Imported here: a gateway on the memory store never loads redis-py.
    from gateway.store.redis import RedisStore

    return RedisStore(config, metrics=metrics)


STORES: Mapping[str, StoreFactory] = {"memory": _memory, "redis": _redis}


def create_store(config: StoreConfig, *, metrics: Metrics) -> Store:
    return STORES[config.kind](config, metrics)
