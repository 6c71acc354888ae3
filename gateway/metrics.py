"""Every Prometheus metric the gateway exposes, declared in one place.

One :class:`Metrics` object per process hangs off the application (no module-level
state); stages receive it through their dependencies and count what they own.
Label values are bounded by construction: ``route`` is a configured route name (or
``none``), ``method`` one of the standard methods (or ``OTHER``), never raw input.
The per-request helpers cache labelled children, because ``.labels()`` builds a
tuple and takes a lock on every call.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "KNOWN_METHODS"]

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests_total = Counter(
            "gateway_requests_total", "Requests answered, by route, method and status code.",
            ("route", "method", "code"), registry=r,
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds", "Time from request accepted to response finished.",
            ("route",), buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.upstream_requests_total = Counter(
            "gateway_upstream_requests_total", "Requests sent to upstream targets, by status code "
            "(or error kind: connect_error, timeout, reset, bad_response).",
            ("upstream", "target", "code"), registry=r,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds", "Time from request sent upstream to response head received.",
            ("upstream",), buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.config_reloads_total = Counter(
            "gateway_config_reloads_total", "Configuration reloads (SIGHUP), by result.",
            ("result",), registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._upstream_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            label = method if method in KNOWN_METHODS else "OTHER"
            children = (
                self.requests_total.labels(route, label, str(status)),
                self.request_duration.labels(route),
            )
            if len(self._request_children) < 10_000:
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_upstream(self, upstream: str, target: str, code: str, seconds: float | None) -> None:
        key = (upstream, target, code)
        children = self._upstream_children.get(key)
        if children is None:
            children = (
                self.upstream_requests_total.labels(upstream, target, code),
                self.upstream_duration.labels(upstream),
            )
            if len(self._upstream_children) < 10_000:
                self._upstream_children[key] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)
