"""The process's one response cache: the store, the in-flight fills, invalidation.

Created by the runtime when any route has ``cache`` (and kept across reloads whose
``store``/``cache`` sections are unchanged, like the throttle store). The cache stage
of each cached route uses it for lookups and fills; every route's forwarder tells it
of successful writes (:meth:`on_write`), cached route or not; the admin listener
purges through it.

Invalidation on writes (SPEC §4, RFC 9111 §4.4): a 2xx/3xx answer to POST, PUT, PATCH
or DELETE starts a new generation (see ``generations.py``) for the request's path,
its parent collection, and the same-origin ``Location`` / ``Content-Location`` it
answered with, each with and without a trailing slash (``/api/menu-items/3/`` is
listed under ``/api/menu-items/`` by Django, under ``/api/menu-items`` elsewhere). A
failed write invalidates nothing. The generation bump happens before the answer is
relayed, so a client that reads the answer and at once reads the collection never
gets the old one from this gateway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from gateway.cache.coalescing import Coalescer
from gateway.cache.store import CacheStore, CacheStoreDown, CacheStoreError, under_prefix
from gateway.edge_request import EdgeRequest
from gateway.exchange import Exchange
from gateway.metrics import Metrics
from gateway.path import PathError, normalise_path
from gateway.upstream.connection import ResponseHead
from gateway.upstream.forwarder import forwarded_host_proto

__all__ = ["ResponseCache", "invalidated_paths"]

log = logging.getLogger("gateway.cache")

_PURGES_KEPT = 64


def _variants(path: str) -> list[str]:
    bare = path.rstrip("/") or "/"
    return [bare] if bare == "/" else [bare, bare + "/"]


def _parent(path: str) -> str | None:
    bare = path.rstrip("/")
    if not bare:
        return None
    return bare.rsplit("/", 1)[0] or "/"


def invalidated_paths(
    path: str, host: str | None, locations: list[bytes], forwarded_host: str | None = None
) -> list[str]:
    """The paths a successful write to ``path`` makes stale (see the module doc).

    A ``Location`` is same-origin when it names the request's ``host`` or the
    ``forwarded_host`` the upstream was told (a trusted proxy's public name, which
    is what the entries are keyed on and what a backend writes its links with)."""
    origins = {name.lower() for name in (host, forwarded_host) if name}
    paths: list[str] = []
    for base in (path, _parent(path)):
        if base is not None:
            paths.extend(_variants(base))
    for location in locations:
        try:
            parts = urlsplit(location.decode("latin-1").strip())
        except ValueError:
            continue
        if parts.scheme or parts.netloc:
            # Same origin only (RFC 9111 §4.4): another host's entries are not ours to drop.
            if parts.scheme not in ("http", "https") or parts.netloc.lower() not in origins:
                continue
        if not parts.path.startswith("/"):
            continue
        try:
            paths.extend(_variants(normalise_path(parts.path)))
        except PathError:
            continue
    return list(dict.fromkeys(paths))


class ResponseCache:
    def __init__(
        self, *, store: CacheStore, metrics: Metrics, max_entry_size: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.max_entry_size = max_entry_size
        self.clock = clock
        self.coalescer = Coalescer()
        self.refreshing: set[bytes] = set()
        """Variants with a background refresh in flight in this process."""
        self._purges: deque[tuple[float, str | None, bool]] = deque(maxlen=_PURGES_KEPT)
        """Recent purges (wall-clock time, path or prefix or None for all, exact path):
        a fill whose request was sent before one of them must not store what it fetched."""
        self._background: set[asyncio.Task[Any]] = set()
        self._bytes = metrics.cache_bytes
        self._invalidations = {
            reason: metrics.cache_invalidations_total.labels(reason) for reason in ("write", "purge")
        }
        self._errors = {op: metrics.store_errors(op) for op in ("cache_get", "cache_put", "cache_invalidate")}

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.store.close()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work (a stale-while-revalidate refresh) off the request."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def failed(self, operation: str, exc: BaseException) -> None:
        if not isinstance(exc, CacheStoreDown):
            self._errors[operation].inc()
        log.debug("cache store %s failed: %s", operation, exc)

    def stored(self) -> None:
        used = self.store.bytes_used()
        if used is not None:
            self._bytes.set(used)

    async def on_write(self, request: EdgeRequest, ex: Exchange, head: ResponseHead) -> None:
        locations = [v for n, v in head.headers if n.lower() in (b"location", b"content-location")]
        forwarded_host, _ = forwarded_host_proto(request, ex)
        paths = invalidated_paths(ex.path, request.host, locations, forwarded_host)
        try:
            await self.store.invalidate(paths)
        except CacheStoreError as exc:
            self.failed("cache_invalidate", exc)
            return
        self._invalidations["write"].inc()

    def purged_since(self, path: str, sent_at: float) -> bool:
        for when, scope, exact in reversed(self._purges):
            if when < sent_at:
                return False
            if scope is None or (path == scope if exact else under_prefix(path, scope)):
                return True
        return False

    async def purge(self, *, path: str | None = None, prefix: str | None = None, everything: bool = False) -> int | None:
        # Recorded first: a fill in flight now fetched what the purge is meant to drop.
        self._purges.append((self.clock(), None if everything else (prefix if prefix is not None else path), path is not None))
        count = await self.store.purge(path=path, prefix=prefix, everything=everything)
        self._invalidations["purge"].inc()
        self.stored()
        return count

    def status(self) -> dict[str, Any]:
        return {**self.store.status(), "filling": len(self.coalescer), "refreshing": len(self.refreshing)}
