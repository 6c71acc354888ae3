"""Figures over the last minute, computed from the counters ``/metrics`` exposes.

The status page shows per-route request rates, error ratios and p50/p99 latency
"over the last minute". Counting them on the request path would add work to every
request for the sake of a page few people open, so nothing here runs per request:
the admin side takes a :class:`Snapshot` of the cumulative counters every few
seconds (the same families ``/metrics`` renders: one process's registry, or the
supervisor's merge of its workers'), keeps about a minute of them in a
:class:`SnapshotRing`, and a figure is the difference between the snapshot taken
now and the one taken a minute ago, as Prometheus's ``increase()`` and
``histogram_quantile()`` would compute it from two scrapes.

- Only the families the page shows are kept, pre-summed to the page's labels
  (route, status class, histogram bound; upstream and target), so a snapshot is a
  few numbers per route and target whatever the label cardinality of the methods.
- The ring starts with an all-zero snapshot at process start: every counter is 0
  then, so during the first minute a figure covers everything since start, and the
  window reported (:attr:`Window.seconds`) says how long that is.
- A counter that went down (a worker died after its last scrape; see
  metrics_merge.py) counts as no increase rather than a negative one.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric

__all__ = ["Snapshot", "SnapshotRing", "Window", "histogram_quantile", "take_snapshot", "WINDOW_S", "INTERVAL_S"]

WINDOW_S = 60.0
"""What "the last minute" means."""
INTERVAL_S = 5.0
"""Seconds between the snapshots kept: the window's edge is at most this coarse."""

_Key = tuple[str, ...]

_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_CACHE_HITS = ("hit", "stale")
"""Answers served from the cache (a stale entry is served from it too)."""
_CACHE_LOOKUPS = ("hit", "stale", "miss")
"""Requests the cache was asked about; ``bypass`` (not cacheable) is not one."""
_NOT_TARGET_ERRORS = frozenset({"aborted"})
"""Upstream codes that are the client's doing (a body too large or too slow)."""


def _status_class(code: str) -> str:
    return code[0] + "xx" if len(code) == 3 and code.isdigit() and "1" <= code[0] <= "5" else "other"


def _target_failed(code: str) -> bool:
    if code.isdigit():
        return code[0] == "5"
    return code not in _NOT_TARGET_ERRORS  # connect_error, timeout, reset, bad_response


def _add(values: dict[_Key, float], key: _Key, value: float) -> None:
    values[key] = values.get(key, 0.0) + value


def _requests(values: dict[_Key, float], labels: Mapping[str, str], value: float) -> None:
    _add(values, ("requests", labels.get("route", ""), _status_class(labels.get("code", ""))), value)


def _latency(values: dict[_Key, float], labels: Mapping[str, str], value: float) -> None:
    _add(values, ("latency", labels.get("route", ""), labels.get("le", "")), value)


def _per_route(kind: str) -> Callable[[dict[_Key, float], Mapping[str, str], float], None]:
    def count(values: dict[_Key, float], labels: Mapping[str, str], value: float) -> None:
        _add(values, (kind, labels.get("route", "")), value)

    return count


def _cache(values: dict[_Key, float], labels: Mapping[str, str], value: float) -> None:
    _add(values, ("cache", labels.get("route", ""), labels.get("result", "")), value)


def _upstream(values: dict[_Key, float], labels: Mapping[str, str], value: float) -> None:
    upstream, target, code = labels.get("upstream", ""), labels.get("target", ""), labels.get("code", "")
    _add(values, ("upstream", upstream, target), value)
    if _target_failed(code):
        _add(values, ("upstream_errors", upstream, target), value)


def _store_errors(values: dict[_Key, float], labels: Mapping[str, str], value: float) -> None:
    _add(values, ("store_errors", labels.get("operation", "")), value)


_SAMPLES: dict[str, Callable[[dict[_Key, float], Mapping[str, str], float], None]] = {
    "gateway_requests_total": _requests,
    "gateway_request_duration_seconds_bucket": _latency,
    "gateway_throttled_total": _per_route("throttled"),
    "gateway_firewall_denied_total": _per_route("denied"),
    "gateway_auth_failures_total": _per_route("auth_failures"),
    "gateway_cache_requests_total": _cache,
    "gateway_upstream_requests_total": _upstream,
    "gateway_store_errors_total": _store_errors,
}
"""The samples the page uses, and how each is folded into a snapshot."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float
    """Monotonic time the counters were read."""
    values: Mapping[_Key, float]


def take_snapshot(families: Iterable[Metric], *, at: float) -> Snapshot:
    """Fold the page's samples out of ``families`` (a registry's ``collect()`` or the
    supervisor's merge) into one snapshot."""
    values: dict[_Key, float] = {}
    for family in families:
        for sample in family.samples:
            fold = _SAMPLES.get(sample.name)
            if fold is not None:
                fold(values, sample.labels, sample.value)
    return Snapshot(at, values)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(upper bound, count)`` buckets sorted by bound
    and ending with ``+Inf``, interpolated linearly inside the bucket it falls in, as
    Prometheus's ``histogram_quantile`` does (a rank in the ``+Inf`` bucket gives the
    highest finite bound). None when the buckets are empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


class Window:
    """The increase of every kept counter between two snapshots."""

    def __init__(self, older: Snapshot, newer: Snapshot) -> None:
        self.seconds = max(0.0, newer.at - older.at)
        before = older.values
        # Grouped by (kind, first label) once, so each route or target reads only its
        # own few numbers (the page asks for every route on every refresh).
        self._groups: dict[tuple[str, str], dict[tuple[str, ...], float]] = {}
        self._route_totals: dict[str, float] = {}
        for key, value in newer.values.items():
            delta = max(0.0, value - before.get(key, 0.0))
            self._groups.setdefault((key[0], key[1]), {})[key[2:]] = delta
            if key[0] == "requests":
                self._route_totals[key[1]] = self._route_totals.get(key[1], 0.0) + value

    def _parts(self, kind: str, first: str | None) -> list[dict[tuple[str, ...], float]]:
        if first is not None:
            part = self._groups.get((kind, first))
            return [part] if part is not None else []
        return [part for (k, _), part in self._groups.items() if k == kind]

    def _sum(self, kind: str, first: str | None = None, *, last_in: Iterable[str] | None = None) -> float:
        """Sum of one kind's increases, for one first label (None: all), optionally
        only where the last label is one of ``last_in``."""
        wanted = None if last_in is None else frozenset(last_in)
        return sum(
            value
            for part in self._parts(kind, first)
            for rest, value in part.items()
            if wanted is None or (rest and rest[-1] in wanted)
        )

    def _latency_buckets(self, route: str | None) -> list[tuple[float, float]]:
        counts: dict[float, float] = {}
        for part in self._parts("latency", route):
            for (le,), value in part.items():
                bound = float(le)
                counts[bound] = counts.get(bound, 0.0) + value
        # Deltas of cumulative counts stay cumulative unless a counter went down
        # (clamped to 0 above); keep them non-decreasing so the search stays sound.
        running = 0.0
        out = []
        for bound, count in sorted(counts.items()):
            running = max(running, count)
            out.append((bound, running))
        return out

    def routes_seen(self) -> set[str]:
        """Route labels with any request since the process started."""
        return {route for route, total in self._route_totals.items() if total > 0}

    def route(self, route: str | None) -> dict[str, Any]:
        """The page's figures for one route label (None: every route together)."""
        by_class = {c: self._sum("requests", route, last_in=(c,)) for c in _STATUS_CLASSES}
        requests = self._sum("requests", route)
        buckets = self._latency_buckets(route)
        p50 = histogram_quantile(0.5, buckets)
        p99 = histogram_quantile(0.99, buckets)
        hits = self._sum("cache", route, last_in=_CACHE_HITS)
        lookups = self._sum("cache", route, last_in=_CACHE_LOOKUPS)
        total = self._route_totals.get(route, 0.0) if route is not None else sum(self._route_totals.values())
        return {
            "requests": _count(requests),
            "rate": _rate(requests, self.seconds),
            "status_classes": {c: _count(v) for c, v in by_class.items()},
            "ratio_4xx": _ratio(by_class["4xx"], requests),
            "ratio_5xx": _ratio(by_class["5xx"], requests),
            "p50_ms": None if p50 is None else round(p50 * 1000, 2),
            "p99_ms": None if p99 is None else round(p99 * 1000, 2),
            "throttled": _count(self._sum("throttled", route)),
            "denied": _count(self._sum("denied", route)),
            "auth_failures": _count(self._sum("auth_failures", route)),
            "cache_hit_ratio": _ratio(hits, lookups),
            "requests_total": _count(total),
        }

    def target(self, upstream: str, target: str) -> dict[str, Any]:
        """Requests sent to one target and how many failed (5xx or no answer)."""
        requests = self._sum("upstream", upstream, last_in=(target,))
        errors = self._sum("upstream_errors", upstream, last_in=(target,))
        return {
            "requests": _count(requests),
            "rate": _rate(requests, self.seconds),
            "errors": _count(errors),
            "error_ratio": _ratio(errors, requests),
        }

    def store_errors(self) -> int:
        return _count(self._sum("store_errors"))


def _count(value: float) -> int:
    return int(round(value))


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 3) if seconds > 0 else 0.0


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole > 0 else None


class SnapshotRing:
    """About a minute of snapshots, one per ``interval`` at most.

    The oldest snapshot kept is always the newest one that is at least ``window``
    old (once there is one), so ``window(now)`` spans ``window`` to ``window +
    interval`` seconds in steady state.
    """

    def __init__(
        self, *, window: float = WINDOW_S, interval: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window
        self.interval = interval
        self.clock = clock
        self._snapshots: deque[Snapshot] = deque([Snapshot(clock(), {})])

    def __len__(self) -> int:
        return len(self._snapshots)

    def record(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` if the newest kept one is ``interval`` old; drop what the
        window no longer needs."""
        snapshots = self._snapshots
        if snapshot.at - snapshots[-1].at < self.interval:
            return
        snapshots.append(snapshot)
        edge = snapshot.at - self.window_s
        while len(snapshots) >= 2 and snapshots[1].at <= edge:
            snapshots.popleft()

    def window(self, current: Snapshot) -> Window:
        """From the newest kept snapshot at least ``window`` older than ``current``
        (else the oldest kept) to ``current``."""
        edge = current.at - self.window_s
        baseline = self._snapshots[0]
        for snapshot in self._snapshots:
            if snapshot.at > edge:
                break
            baseline = snapshot
        return Window(baseline, current)
