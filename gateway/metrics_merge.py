"""One ``/metrics`` for several worker processes, merged when it is scraped.

Why not prometheus-client's multiprocess mode: it turns every increment into a write
to an mmap'd file, a cost paid on the request path to save work at scrape time,
which comes every 15 s or so. Instead each worker keeps its ordinary in-memory
registry and serves it, as Prometheus text, on its private channel to the
supervisor (gateway/supervisor_admin.py); the supervisor parses the workers'
texts and merges them here, per metric family and label set:

- **counters, histograms (every ``le`` bucket, ``_sum``, ``_count``) and summaries
  are summed**: each worker counted the requests it answered, so the gateway's
  total is the sum, and summed cumulative buckets are still cumulative.
- **gauges take the maximum** across workers. The gauge that matters is
  ``gateway_upstream_target_healthy`` (1/0 per target, from each worker's own
  health checker): the merged value is 1 when *any* worker sees the target
  healthy, i.e. when the gateway as a whole can still send it traffic. Gauges named
  in :data:`SUMMED_GAUGES` are summed instead, because they measure something each
  process holds separately (``gateway_cache_bytes``: every process has its own
  memory cache, the memory used is the sum). Other family types take the max.
- ``*_created`` series are dropped: a merged series has no single creation time,
  and a sum of timestamps means nothing.
- families passed as ``own`` replace the workers' families of the same name. The
  supervisor counts ``gateway_config_reloads_total`` once per SIGHUP; the workers
  count their own reloads too, and a sum would say N reloads for one.

A worker that dies takes its counts with it, and the one that replaces it starts
from zero, so a plain sum over live workers would go *down* and Prometheus would
read a counter reset. :class:`WorkerMetrics` keeps each worker's last scraped
snapshot and, when the worker exits, folds its cumulative families into retired
totals that every later merge adds in. What a worker counted after its last scrape
and before it died is lost (unavoidable without writing on the request path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "CUMULATIVE_TYPES",
    "SUMMED_GAUGES",
    "ExpositionError",
    "WorkerMetrics",
    "merge_families",
    "parse_exposition",
    "render",
]

CUMULATIVE_TYPES = frozenset({"counter", "histogram", "summary"})
"""Families whose samples only grow in a process: summed, and kept when it dies."""

SUMMED_GAUGES = frozenset({"gateway_cache_bytes"})
"""Gauges that measure a per-process quantity: merged by summing, not by max."""

_SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class ExpositionError(ValueError):
    """A worker's /metrics text could not be parsed."""


def parse_exposition(text: str) -> list[Metric]:
    """Prometheus text (as ``generate_latest`` writes it) -> metric families."""
    try:
        return list(text_string_to_metric_families(text))
    except (ValueError, IndexError, KeyError) as exc:
        raise ExpositionError(f"unparseable metrics text: {exc}") from exc


def _summed(name: str, kind: str) -> bool:
    return kind in CUMULATIVE_TYPES or name in SUMMED_GAUGES


def merge_families(snapshots: Iterable[Sequence[Metric]], *, own: Sequence[Metric] = ()) -> list[Metric]:
    """Merge per-process snapshots by the rules in the module docstring.

    Families and samples keep the order in which they are first seen, so histogram
    buckets stay in ``le`` order and the output reads like one process's.
    """
    replaced = {family.name for family in own}
    kinds: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[_SampleKey, float]] = {}
    for families in snapshots:
        created = {f"{f.name}_created" for f in families if f.type in CUMULATIVE_TYPES}
        for family in families:
            if family.name in replaced or family.name in created:
                continue
            if family.name not in kinds:
                kinds[family.name] = (family.type, family.documentation)
                values[family.name] = {}
            kind = kinds[family.name][0]
            summed = _summed(family.name, kind)
            merged = values[family.name]
            for sample in family.samples:
                if sample.name.endswith("_created") and kind in CUMULATIVE_TYPES:
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                previous = merged.get(key)
                if previous is None:
                    merged[key] = sample.value
                elif summed:
                    merged[key] = previous + sample.value
                else:
                    merged[key] = max(previous, sample.value)
    out: list[Metric] = []
    for name, (kind, documentation) in kinds.items():
        metric = Metric(name, documentation, kind)
        for (sample_name, labels), value in values[name].items():
            metric.add_sample(sample_name, dict(labels), value)
        out.append(metric)
    out.extend(own)
    return out


class _Families:
    """The one method ``generate_latest`` needs from a registry."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def render(families: Sequence[Metric]) -> bytes:
    """Prometheus text exposition of already-merged families."""
    return generate_latest(_Families(families))


class WorkerMetrics:
    """The supervisor's memory of its workers' metrics between scrapes.

    Keyed by worker pid, not slot: a scrape that was waiting on a worker which then
    died must not overwrite what is known of its successor in the same slot.
    """

    def __init__(self) -> None:
        self._last: dict[int, list[Metric]] = {}
        self._retired: list[Metric] = []

    def merged(self, live: Mapping[int, Sequence[Metric]], *, own: Sequence[Metric] = ()) -> list[Metric]:
        """Remember ``live`` (pid -> snapshot just scraped) and merge it with the
        retired totals. The caller passes only pids that are still running."""
        for pid, families in live.items():
            self._last[pid] = list(families)
        return merge_families([self._retired, *live.values()], own=own)

    def retire(self, pid: int) -> None:
        """The worker ``pid`` has exited: keep its cumulative counts for good."""
        last = self._last.pop(pid, None)
        if last:
            # Gauges (even summed ones) describe the dead process's present, not its past.
            cumulative = [f for f in last if f.type in CUMULATIVE_TYPES]
            self._retired = merge_families([self._retired, cumulative])
