"""Counters and histograms whose per-request cost is an attribute add.

prometheus-client guards every value with a lock and, on each histogram observation,
walks the bucket bounds in a Python loop: with a counter and a histogram for the
request and the same for its upstream call, that was six lock round trips and two
loops per proxied request. Here a labelled child is a small slotted object: a
counter's ``inc()`` adds to an attribute, a histogram's ``observe()`` finds its bucket
with one ``bisect_left`` over the upper bounds and adds one to a slot of a list (plus
the sum). Everything Prometheus wants that can be derived -- cumulative bucket
counts, ``_count``, the label dicts, the ``le`` strings -- is computed when
``/metrics`` is scraped, every 15 s or so, not per request.

Each family is its own collector registered on the process's ``CollectorRegistry``,
in declaration order like a prometheus-client metric, so ``generate_latest``,
``registry.get_sample_value`` and the families gateway/metrics_merge.py and
gateway/metrics_window.py read come out exactly as before: same family names, HELP,
types, label names and values, ``le`` strings, sample order, and ``_created``
samples (per child, at its creation time; left out when prometheus-client's
created series are disabled, e.g. by ``PROMETHEUS_DISABLE_CREATED_SERIES``).

No lock, on purpose. The gateway runs one asyncio loop per process, and everything
that touches these objects runs on it: the stages and the edge that count, the admin
app that serves ``/metrics`` and the status page's snapshots, the supervisor's own
``config_reloads`` (signals arrive through ``loop.add_signal_handler``, so a handler
never runs between two bytecodes of a scrape). The one other thread in gateway/ is
the access log's writer (gateway/access_log.py), which only writes rendered lines;
nothing runs metrics code in an executor or a thread. A loop callback is never
interrupted by another, so an increment is never lost and a scrape, which builds each
family's samples in one synchronous call, sees no half-made child. Should counting or
scraping ever move to a thread, this module needs a lock again.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client import metrics as client_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

__all__ = ["CounterChild", "CounterFamily", "HistogramChild", "HistogramFamily"]


def _created_series_enabled() -> bool:
    """Whether prometheus-client writes ``_created`` samples (its default, switched off
    by ``PROMETHEUS_DISABLE_CREATED_SERIES`` or ``disable_created_metrics()``); read at
    scrape time, as prometheus-client does, so the gauges and these families agree.
    The flag is a module global of prometheus-client's with no public getter; if a
    release drops it, its documented default (on) applies."""
    return bool(getattr(client_metrics, "_use_created", True))


class CounterChild:
    """One labelled counter series."""

    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        # A counter that goes down reads as a process restart to Prometheus.
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class HistogramChild:
    """One labelled histogram series: per-bucket (not cumulative) counts and the sum."""

    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        """Upper bounds, ascending, the last one +Inf; shared by the family's children."""
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.sum += amount
        # The first bound >= amount, as prometheus-client's ``amount <= bound`` scan.
        # NaN is <= no bound, so it lands in no bucket (and not in _count), only in
        # _sum: bisect would put it in the first bucket instead.
        if amount == amount:
            self.counts[bisect_left(self.bounds, amount)] += 1


ChildT = TypeVar("ChildT", CounterChild, HistogramChild)


class _Family(Generic[ChildT]):
    """A labelled family: children by label values, turned into samples at scrape time."""

    kind = ""

    def __init__(
        self, name: str, documentation: str, labelnames: Iterable[str], *, registry: CollectorRegistry | None
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        if not self.labelnames:
            # Every counter and histogram the gateway declares is labelled; a label-less
            # one would be its own child, which this class does not model.
            raise ValueError(f"{name}: a family needs label names")
        self._children: dict[tuple[str, ...], ChildT] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, *labelvalues: object, **labelkwargs: object) -> ChildT:
        """The child for these label values (as ``str()``), created at zero on first
        use and kept, as prometheus-client's ``labels()`` does: callers bind it once."""
        if labelvalues and labelkwargs:
            raise ValueError("Can't pass both *args and **kwargs")
        if labelkwargs:
            if sorted(labelkwargs) != sorted(self.labelnames):
                raise ValueError("Incorrect label names")
            key = tuple(str(labelkwargs[name]) for name in self.labelnames)
        elif len(labelvalues) != len(self.labelnames):
            raise ValueError("Incorrect label count")
        else:
            key = tuple(str(value) for value in labelvalues)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def describe(self) -> list[Metric]:
        """What the registry reads to refuse a second family of the same name."""
        return [Metric(self.name, self.documentation, self.kind)]

    def collect(self) -> list[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        created = _created_series_enabled()
        for values, child in self._children.items():
            self._add_samples(metric, dict(zip(self.labelnames, values)), child, created)
        return [metric]

    def _new_child(self) -> ChildT:
        raise NotImplementedError

    def _add_samples(self, metric: Metric, labels: dict[str, str], child: ChildT, created: bool) -> None:
        raise NotImplementedError


class CounterFamily(_Family[CounterChild]):
    """prometheus-client's ``Counter`` with labels, minus the locks. As there, a name
    ending in ``_total`` names the family without it; the samples carry it."""

    kind = "counter"

    def __init__(
        self, name: str, documentation: str, labelnames: Iterable[str], *, registry: CollectorRegistry | None
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry=registry)

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def _add_samples(self, metric: Metric, labels: dict[str, str], child: CounterChild, created: bool) -> None:
        metric.add_sample(self.name + "_total", labels, child.value)
        if created:
            metric.add_sample(self.name + "_created", labels, child.created)


class HistogramFamily(_Family[HistogramChild]):
    """prometheus-client's ``Histogram`` with labels, minus the locks and the loop."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry | None,
    ) -> None:
        bounds = [float(b) for b in buckets]
        # prometheus-client's rules, so the same declaration gives the same buckets.
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if bounds and bounds[-1] != math.inf:
            bounds.append(math.inf)
        if len(bounds) < 2:
            raise ValueError("Must have at least two buckets")
        if "le" in labelnames:
            raise ValueError("le is the bucket label of a histogram")
        self.bounds = tuple(bounds)
        self._le = tuple(floatToGoString(b) for b in bounds)
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def _add_samples(self, metric: Metric, labels: dict[str, str], child: HistogramChild, created: bool) -> None:
        bucket = self.name + "_bucket"
        cumulative = 0.0
        for le, count in zip(self._le, child.counts):
            cumulative += count
            metric.add_sample(bucket, {**labels, "le": le}, cumulative)
        # _count is the +Inf bucket (so a NaN observation is in neither), as in prometheus-client.
        metric.add_sample(self.name + "_count", labels, cumulative)
        if self.bounds[0] >= 0:
            # A negative bound means negative observations, whose sum is not a counter.
            metric.add_sample(self.name + "_sum", labels, child.sum)
        if created:
            metric.add_sample(self.name + "_created", labels, child.created)
