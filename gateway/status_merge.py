"""One ``/status`` view of several worker processes.

Every worker runs the same configuration, so routes are the same everywhere; what
differs is each worker's own view of its upstream targets (its health checker, its
passive ejections, its connection pools). The aggregate answers "what can the
gateway as a whole do with this target":

- ``healthy``: any worker sees it healthy (as ``gateway_upstream_target_healthy``
  takes the max across workers, see metrics_merge.py);
- ``ejected``: every worker has ejected it (one worker's outlier ejection does not
  stop the others sending traffic); ``ejected_for``: the longest remaining;
- counts (``in_flight``, ``connections``, ``idle_connections``, ``ejections``):
  summed over workers;
- ``last_check`` and ``last_ejection``: the most recent any worker made (each
  worker runs its own health checks and passive ejection);
- an upstream's ``available``: targets that take traffic in at least one worker;
- the store: ``reachable`` only if every worker reaches it (one that cannot is
  applying ``on_error``), ``state`` ``down`` if any is down, counts summed,
  ``last_error`` the most recent;
- anything else: the first worker's value.

Targets are matched by ``url``; a target only some workers know (a reload in
progress) is listed with what those workers say.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["aggregate_status"]

def _newest(records: list[Any]) -> Any:
    """The most recent of several workers' dated records (each has ``age_s``)."""
    dated = [r for r in records if isinstance(r, dict) and isinstance(r.get("age_s"), (int, float))]
    return min(dated, key=lambda r: r["age_s"]) if dated else None


def _down_if_any(states: list[Any]) -> Any:
    return "down" if "down" in states else states[0]


_TARGET_RULES: tuple[tuple[str, Callable[[list[Any]], Any]], ...] = (
    ("healthy", any),
    ("ejected", all),
    ("ejected_for", max),
    ("in_flight", sum),
    ("connections", sum),
    ("idle_connections", sum),
    ("ejections", sum),
    ("last_check", _newest),
    ("last_ejection", _newest),
)

_STORE_RULES: tuple[tuple[str, Callable[[list[Any]], Any]], ...] = (
    ("reachable", all),
    ("state", _down_if_any),
    ("failures", sum),
    ("buckets", sum),
    ("local_buckets", sum),
    ("evictions", sum),
    ("last_error", _newest),
)


def _merge_targets(views: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    by_url: dict[Any, list[dict[str, Any]]] = {}
    for targets in views:
        for target in targets:
            by_url.setdefault(target.get("url"), []).append(target)
    merged = []
    for same in by_url.values():
        out = copy.deepcopy(same[0])
        for key, rule in _TARGET_RULES:
            values = [t[key] for t in same if key in t]
            if values:
                out[key] = rule(values)
        # Available somewhere = healthy and not ejected in the same worker.
        out["_available"] = any(t.get("healthy", True) and not t.get("ejected", False) for t in same)
        merged.append(out)
    return merged


def aggregate_status(statuses: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge per-worker ``Runtime.status()`` dicts (empty input -> empty dict)."""
    if not statuses:
        return {}
    out = copy.deepcopy(dict(statuses[0]))
    upstream_views: dict[str, list[dict[str, Any]]] = {}
    for status in statuses:
        upstreams = status.get("upstreams")
        if isinstance(upstreams, dict):
            for name, view in upstreams.items():
                if isinstance(view, dict):
                    upstream_views.setdefault(name, []).append(view)
    stores = [s["store"] for s in statuses if isinstance(s.get("store"), dict)]
    if stores:
        store = copy.deepcopy(stores[0])
        for key, rule in _STORE_RULES:
            values = [view[key] for view in stores if key in view]
            if values:
                store[key] = rule(values)
        out["store"] = store
    if upstream_views:
        merged_upstreams: dict[str, Any] = {}
        for name, views in upstream_views.items():
            upstream = copy.deepcopy(views[0])
            targets = _merge_targets([v["targets"] for v in views if isinstance(v.get("targets"), list)])
            if targets:
                upstream["targets"] = targets
                if "available" in upstream:
                    upstream["available"] = sum(1 for t in targets if t["_available"])
                for target in targets:
                    del target["_available"]
            merged_upstreams[name] = upstream
        out["upstreams"] = merged_upstreams
    return out
