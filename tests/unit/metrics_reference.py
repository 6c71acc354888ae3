"""The ``Metrics`` class as it was built on prometheus-client's Counter and Histogram
(gateway/metrics.py at 51f4556), kept verbatim as the reference for
tests/unit/test_metrics.py: the lock-free families must render the same exposition,
byte for byte, after the same calls. Not used by the gateway."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ReferenceMetrics"]

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ReferenceMetrics:
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
        self.upstream_target_healthy = Gauge(
            "gateway_upstream_target_healthy", "1 while a target takes traffic (healthy and not ejected), else 0.",
            ("upstream", "target"), registry=r,
        )
        self.upstream_retries_total = Counter(
            "gateway_upstream_retries_total", "Requests sent again to another target after a failure.",
            ("upstream",), registry=r,
        )
        self.upstream_queue_timeouts_total = Counter(
            "gateway_upstream_queue_timeouts_total", "Requests answered 503 because every pooled connection "
            "to the target stayed busy for timeouts.queue (the gateway's own congestion; no health penalty).",
            ("upstream", "target"), registry=r,
        )
        self.config_reloads_total = Counter(
            "gateway_config_reloads_total", "Configuration reloads (SIGHUP), by result.",
            ("result",), registry=r,
        )
        # Both series exist from the start at 0, so increase() sees the first failure.
        for result in ("success", "failure"):
            self.config_reloads_total.labels(result)
        self.firewall_denied_total = Counter(
            "gateway_firewall_denied_total", "Requests refused by the firewall (403), by route.",
            ("route",), registry=r,
        )
        self.auth_failures_total = Counter(
            "gateway_auth_failures_total", "Requests whose token was missing where required or failed "
            "verification (answered 401, or 429 when their anonymous bucket was empty first), or that "
            "lacked require_claims (403, reason insufficient_claims), by route and reason.",
            ("route", "reason"), registry=r,
        )
        self.throttled_total = Counter(
            "gateway_throttled_total", "Requests refused by throttling (429), by route and caller class.",
            ("route", "caller"), registry=r,
        )
        self.store_errors_total = Counter(
            "gateway_store_errors_total", "Store calls that failed (timeout, refused, reset), by operation: "
            "take (a throttle decision), connect (the start-up check), cache_get, cache_put, cache_invalidate.",
            ("operation",), registry=r,
        )
        self.cache_requests_total = Counter(
            "gateway_cache_requests_total", "Requests on cached routes by what the cache did: hit (served a fresh "
            "entry), miss (asked the upstream), bypass (not cacheable as sent), stale (served an expired entry).",
            ("route", "result"), registry=r,
        )
        self.cache_bytes = Gauge(
            "gateway_cache_bytes", "Bytes held by the memory cache (summed over workers; 0 with the redis store).",
            registry=r,
        )
        self.cache_invalidations_total = Counter(
            "gateway_cache_invalidations_total", "Cache invalidations: write (a successful POST/PUT/PATCH/DELETE) "
            "or purge (the admin endpoint).",
            ("reason",), registry=r,
        )
        for reason in ("write", "purge"):
            self.cache_invalidations_total.labels(reason)
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

    def firewall_denied(self, route: str) -> Counter:
        """The labelled child for one route, bound once when its chain is built."""
        return self.firewall_denied_total.labels(route)

    def auth_failures(self, route: str, reasons: Iterable[str]) -> dict[str, Counter]:
        """Labelled children for one route and each reason, bound once at build time;
        every child is created up front so the series exist (at 0) before a failure."""
        return {reason: self.auth_failures_total.labels(route, reason) for reason in reasons}

    def throttled(self, route: str, callers: Iterable[str]) -> dict[str, Counter]:
        """Labelled children for one route and each caller class, bound at build time."""
        return {caller: self.throttled_total.labels(route, caller) for caller in callers}

    def cache_results(self, route: str) -> dict[str, Counter]:
        """Labelled children for one cached route, bound at build time, all at 0."""
        return {result: self.cache_requests_total.labels(route, result) for result in ("hit", "miss", "bypass", "stale")}

    def store_errors(self, operation: str) -> Counter:
        """The labelled child for one store operation, bound when the store is created."""
        return self.store_errors_total.labels(operation)
