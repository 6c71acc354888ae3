"""What a cache store promises, and the memory store.

The cache stage talks to this protocol only; ``store.kind`` picks the memory store
here or the Redis one (``redis_store.py``), the same choice that places throttle
buckets. A shared store's methods may fail with :class:`CacheStoreError`; the
stage turns any such failure into a pass-through (counted), never a 5xx.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gateway.cache.entry import Entry
from gateway.cache.generations import Generations
from gateway.cache.key import CacheKey

__all__ = ["CacheStore", "CacheStoreDown", "CacheStoreError", "MemoryCacheStore", "under_prefix"]


class CacheStoreError(Exception):
    """A shared store could not answer (down, timed out, refused). The cache then
    passes requests through (counted in ``gateway_store_errors_total``), never 5xx."""


class CacheStoreDown(CacheStoreError):
    """Refused at once because the store's circuit is open: the failure that opened
    it was counted; these are not (one count per probe, like the throttle store's),
    so a short outage on a busy gateway does not look like thousands of errors."""


def under_prefix(path: str, prefix: str) -> bool:
    """Segment-aware, like route matching: ``/api`` covers ``/api`` and ``/api/x``,
    not ``/apix``. A trailing slash on the prefix means the same."""
    prefix = prefix.rstrip("/")
    if not prefix:
        return True
    return path == prefix or path.startswith(prefix + "/")


class CacheStore(Protocol):
    kind: str
    shared: bool
    """Entries are seen by every gateway instance (Redis); coalescing then also
    takes a lease in the store."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def generation(self, path: str) -> int:
        """The path's generation now: read before a fill's upstream request is sent."""

    async def get(self, key: CacheKey) -> Entry | None:
        """The entry, or None when absent, expired past keeping, or stored under a
        generation of its path that has since been invalidated."""

    async def put(self, key: CacheKey, entry: Entry, now: float) -> None:
        """Store (or replace) it for ``entry.keep_for(now)`` seconds."""

    async def invalidate(self, paths: Sequence[str]) -> None:
        """Start a new generation for each path: all their variants stop being served."""

    async def purge(self, *, path: str | None = None, prefix: str | None = None, everything: bool = False) -> int | None:
        """Drop entries; how many, when the store can know."""

    async def lease(self, key: CacheKey, seconds: float) -> bool:
        """Try to become the one instance filling ``key`` (always True unless shared)."""

    async def release(self, key: CacheKey) -> None: ...

    def bytes_used(self) -> int | None:
        """Bytes held by entries, when the store knows (memory), else None."""

    def status(self) -> dict[str, Any]: ...


class MemoryCacheStore:
    """Entries in this process, least recently used dropped first past ``max_memory``.

    Sizes count head and body (``Entry.size``), so the bound holds for many small
    entries as well as for few large ones. Expired entries are dropped when met.
    """

    kind = "memory"
    shared = False

    def __init__(self, *, max_memory: int, generations: Generations, clock: Callable[[], float]) -> None:
        self._max = max_memory
        self._generations = generations
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[Entry, float]] = OrderedDict()
        """variant -> (entry, keep until)"""
        self._bytes = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0

    async def generation(self, path: str) -> int:
        return self._generations.of(path)

    def get_now(self, key: CacheKey) -> Entry | None:
        """:meth:`get` without awaiting: the hit path of the memory store."""
        found = self._entries.get(key.variant)
        if found is None:
            return None
        entry, until = found
        if entry.generation != self._generations.of(key.path) or self._clock() >= until or entry.path != key.path:
            self._drop(key.variant)
            return None
        self._entries.move_to_end(key.variant)
        return entry

    async def get(self, key: CacheKey) -> Entry | None:
        return self.get_now(key)

    async def put(self, key: CacheKey, entry: Entry, now: float) -> None:
        keep = entry.keep_for(now)
        if keep <= 0 or entry.size > self._max:
            return
        self._drop(key.variant)
        self._entries[key.variant] = (entry, self._clock() + keep)
        self._bytes += entry.size
        while self._bytes > self._max and self._entries:
            variant = next(iter(self._entries))
            self._drop(variant)

    def _drop(self, variant: bytes) -> bool:
        found = self._entries.pop(variant, None)
        if found is None:
            return False
        self._bytes -= found[0].size
        return True

    async def invalidate(self, paths: Sequence[str]) -> None:
        for path in paths:
            self._generations.bump(path)

    async def purge(self, *, path: str | None = None, prefix: str | None = None, everything: bool = False) -> int:
        if everything:
            count = len(self._entries)
            self._entries.clear()
            self._bytes = 0
            return count
        doomed = [
            variant
            for variant, (entry, _) in self._entries.items()
            if (path is not None and entry.path == path) or (prefix is not None and under_prefix(entry.path, prefix))
        ]
        for variant in doomed:
            self._drop(variant)
        if path is not None:
            # A fill already in flight for this path must not store what it fetched
            # before the purge.
            self._generations.bump(path)
        return len(doomed)

    async def lease(self, key: CacheKey, seconds: float) -> bool:
        return True

    async def release(self, key: CacheKey) -> None:
        return None

    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def status(self) -> dict[str, Any]:
        return {"kind": self.kind, "entries": len(self._entries), "bytes": self._bytes, "max_memory": self._max}
