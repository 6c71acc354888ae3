"""``GET /status/live``: what the status page shows, as one JSON document.

It joins three things the gateway already has: the runtime's ``/status`` (routes,
targets with health, in flight, pools, ejections; the store), figures over the last
minute from the ``/metrics`` counters (gateway/metrics_window.py), and the
configuration's history (gateway/reload_history.py). A single process and the
supervisor of several workers both build it here, from their own ``/status`` and
``/metrics`` views (the supervisor's are the merged ones), so the page reads the same
in both modes.

:class:`LiveCounters` keeps the minute of snapshots: one every
:data:`~gateway.metrics_window.INTERVAL_S` from a background task, so the last
minute is there when someone opens the page, plus one at each page refresh, so the
figures are current to the request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client.metrics_core import Metric

from gateway import __version__
from gateway.background import cancel_and_wait
from gateway.metrics_window import SnapshotRing, Window, take_snapshot

__all__ = ["LiveCounters", "live_status", "UNMATCHED_ROUTE"]

log = logging.getLogger("gateway.admin")

UNMATCHED_ROUTE = "none"
"""The ``route`` label of requests that matched no route (see gateway/edge.py)."""


class LiveCounters:
    """The snapshot ring, fed from ``collect`` (the families ``/metrics`` renders)."""

    def __init__(self, collect: Callable[[], Awaitable[Iterable[Metric]]], *, ring: SnapshotRing | None = None) -> None:
        self._collect = collect
        self.ring = ring or SnapshotRing()
        self._task: asyncio.Task[None] | None = None

    async def window(self) -> Window:
        """Read the counters now; the window from a minute ago to now."""
        families = await self._collect()
        current = take_snapshot(families, at=self.ring.clock())
        self.ring.record(current)
        return self.ring.window(current)

    async def _sample_forever(self) -> None:
        while True:
            try:
                await self.window()
            except Exception:  # a bad sample must not end the sampling for good
                log.exception("status page: reading the counters failed")
            await asyncio.sleep(self.ring.interval)

    async def cleanup_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """For ``app.cleanup_ctx``: sample while the admin app runs."""
        self._task = asyncio.get_running_loop().create_task(self._sample_forever(), name="status-page-sampler")
        yield
        await cancel_and_wait(self._task)
        self._task = None


def _route_row(route: Mapping[str, Any], window: Window) -> dict[str, Any]:
    return {
        "name": route["name"],
        "path": route.get("path"),
        "methods": route.get("methods"),
        "host": route.get("host"),
        "upstream": route.get("upstream"),
        "unmatched": False,
        **window.route(route["name"]),
    }


def _target_state(target: Mapping[str, Any]) -> str:
    if target.get("ejected"):
        return "ejected"
    return "up" if target.get("healthy", True) else "down"


def live_status(
    *,
    status: Mapping[str, Any],
    reasons: Sequence[str],
    window: Window,
    config: Mapping[str, Any],
    workers: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The page's document. ``status``: a ``Runtime.status()`` (or the supervisor's
    aggregate of its workers'); ``reasons``: why the gateway is not ready (empty when
    it is); ``config``: ``ReloadHistory.status()``; ``workers``: the supervisor's
    worker slots, when there are workers."""
    routes = [_route_row(route, window) for route in status.get("routes", [])]
    named = {route["name"] for route in routes}
    if UNMATCHED_ROUTE not in named and UNMATCHED_ROUTE in window.routes_seen():
        # Requests no route took (404) or the edge refused before routing (400, 431...).
        routes.append({
            "name": UNMATCHED_ROUTE, "path": None, "methods": None, "host": None, "upstream": None,
            "unmatched": True, **window.route(UNMATCHED_ROUTE),
        })
    upstreams = []
    for name, upstream in status.get("upstreams", {}).items():
        targets = [
            {**target, "state": _target_state(target), **window.target(name, str(target.get("target", "")))}
            for target in upstream.get("targets", [])
        ]
        upstreams.append({
            "name": name,
            "strategy": upstream.get("strategy"),
            "available": upstream.get("available"),
            "targets": targets,
        })
    store = dict(status.get("store", {}))
    store["recent_errors"] = window.store_errors()
    return {
        "version": __version__,
        "pid": os.getpid(),
        "generated_at": round(time.time(), 3),
        "window_s": round(window.seconds, 1),
        "ready": not reasons,
        "reasons": list(reasons),
        "totals": window.route(None),
        "routes": routes,
        "upstreams": upstreams,
        "store": store,
        "config": dict(config),
        "workers": list(workers) if workers is not None else None,
    }
