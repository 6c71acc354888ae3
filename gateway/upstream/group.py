"""An upstream: a named group of targets and what decides which of them take traffic.

A target takes traffic while it is *available*: the active checks say healthy (or
there are none) and passive ejection has not taken it out. The tuple of available
targets is recomputed only when a verdict changes, so picking a target costs the
strategy's own work and nothing else.

Passive ejection (Envoy's outlier detection): ``passive.failures`` consecutive
connect errors, resets, timeouts or 5xx answers eject a target for
``passive.eject_for``. The last available target is never ejected: when everything
looks broken, one target that might still answer beats a certain 503.

Circuit: when every available target is on a streak of ``passive.failures``
consecutive failures (everything is down, but nothing could be ejected because the
last target never is), requests are answered 503 at once instead of each paying a
connect timeout; one probe request per second still goes through, and its success
closes the circuit.

Retry budget: every request deposits one token and every retry spends one, so over
time retries can never more than double the load on a sick upstream. The tokens saved
are capped at one per request in flight (at least ``_BUDGET_FLOOR``): a target that
dies breaks every request in flight on it at the same instant, and each of those
deserves its one retry elsewhere, however many there are; a fixed small cap turned
that burst into 502s for idempotent requests the healthy targets would have served.
The cap still bounds what a burst can add: at most one extra attempt per request in
flight, once, before retries are again limited to one per new request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config.upstream import UpstreamConfig
from gateway.edge_request import EdgeRequest
from gateway.exchange import Exchange
from gateway.metrics import Metrics
from gateway.upstream.balancer import Balancer, Target, make_balancer
from gateway.upstream.health import ActiveHealthChecker

__all__ = ["Upstream", "Ejection"]

log = logging.getLogger("gateway.upstream")

_BUDGET_FLOOR = 10.0
"""Tokens an upstream may save however few requests are in flight: a quiet upstream
can still retry a handful of failures at once."""
_PROBE_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Ejection:
    """The latest passive ejection of a target, kept for the status page (why a
    target left the rotation matters after it is back, too)."""

    reason: str
    """e.g. ``3 consecutive failures, last: connect_error``."""
    at: float
    """Wall-clock time of the ejection (``time.time()``)."""
    duration: float
    """``passive.eject_for`` at the time, in seconds."""


class Upstream:
    def __init__(self, name: str, config: UpstreamConfig, *, metrics: Metrics) -> None:
        self.name = name
        self.config = config
        self.metrics = metrics
        self.response_timeout = config.timeouts.response
        self.targets = tuple(
            Target.from_url(
                t.url,
                weight=t.weight,
                max_connections=config.max_connections,
                connect_timeout=config.timeouts.connect,
            )
            for t in config.targets
        )
        self.balancer: Balancer = make_balancer(config.strategy, self.targets)
        self.available: tuple[Target, ...] = self.targets
        self._passive = config.passive
        self._retry_tokens = _BUDGET_FLOOR
        self._next_probe = 0.0
        self._hash_header = config.hash_on[7:] if config.hash_on.startswith("header:") else None
        self._hash_subject = config.hash_on == "subject"
        self._checker: ActiveHealthChecker | None = None
        if config.health_check is not None:
            self._checker = ActiveHealthChecker(
                upstream=name, targets=self.targets, config=config.health_check, on_change=self.set_healthy
            )
        self._readmissions: dict[int, asyncio.TimerHandle] = {}
        self._last_ejection: dict[int, Ejection] = {}
        self._gauges = {t.label: metrics.upstream_target_healthy.labels(name, t.label) for t in self.targets}
        self._retries = metrics.upstream_retries_total.labels(name)
        for gauge in self._gauges.values():
            gauge.set(1)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._checker is not None:
            self._checker.start()

    async def stop_health_checks(self) -> None:
        """A reload replaced this upstream: its checker must not write the health
        gauge the new one now owns, even while old requests finish on its pools."""
        if self._checker is not None:
            await self._checker.close()

    async def close(self) -> None:
        await self.stop_health_checks()
        for timer in self._readmissions.values():
            timer.cancel()
        self._readmissions.clear()
        for target in self.targets:
            await target.pool.close()

    # -- choosing ---------------------------------------------------------------------

    def pick(self, request: EdgeRequest, ex: Exchange, candidates: Sequence[Target]) -> Target:
        balancer = self.balancer
        key = self._key(request, ex) if balancer.needs_key else None
        return balancer.pick(candidates, key)

    def _key(self, request: EdgeRequest, ex: Exchange) -> str:
        if self._hash_header is not None:
            return request.headers.get(self._hash_header) or ex.client_ip
        if self._hash_subject and ex.subject is not None:
            return "sub:" + ex.subject
        return ex.client_ip

    def _circuit_open(self) -> bool:
        passive = self._passive
        if passive is None:
            return False
        threshold = passive.failures
        for target in self.available:
            if target.consecutive_failures < threshold:
                return False
        return True

    def admits(self) -> bool:
        """False while every available target is failing (see the circuit above)."""
        if not self._circuit_open():
            return True
        now = asyncio.get_running_loop().time()
        if now >= self._next_probe:
            self._next_probe = now + _PROBE_INTERVAL
            return True
        return False

    def retry_after(self) -> int:
        """Seconds until a target may be back: the nearest readmission or check."""
        loop = asyncio.get_running_loop()
        waits = [t.ejected_until - loop.time() for t in self.targets if t.ejected]
        if self.available and self._circuit_open():
            waits.append(_PROBE_INTERVAL)
        if self.config.health_check is not None:
            waits.append(self.config.health_check.interval)
        return max(1, math.ceil(min(waits))) if waits else 5

    # -- retry budget -----------------------------------------------------------------

    def deposit(self) -> None:
        """A request starts: it earns the upstream one retry (see the module docstring)."""
        tokens = self._retry_tokens
        # The cap is one token per request in flight: attempts count in ``in_flight``
        # until their response is relayed, and this request (not started yet) is the +1.
        if tokens < _BUDGET_FLOOR or tokens < sum(t.in_flight for t in self.targets) + 1:
            self._retry_tokens = tokens + 1.0

    def can_retry(self) -> bool:
        return self._retry_tokens >= 1.0

    def take_retry(self) -> bool:
        if self._retry_tokens >= 1.0:
            self._retry_tokens -= 1.0
            self._retries.inc()
            return True
        return False

    # -- verdicts ---------------------------------------------------------------------

    def _recompute(self) -> None:
        self.available = tuple(t for t in self.targets if t.available)
        for target in self.targets:
            self._gauges[target.label].set(1 if target.available else 0)

    def set_healthy(self, target: Target, healthy: bool) -> None:
        """The active checker's verdict."""
        target.healthy = healthy
        if healthy:
            target.consecutive_failures = 0
        self._recompute()

    def record_success(self, target: Target) -> None:
        if target.consecutive_failures:
            target.consecutive_failures = 0

    def record_failure(self, target: Target, *, reason: str = "failure") -> None:
        """``reason``: what failed (``connect_error``, ``timeout``, ``HTTP 502``...),
        named in the ejection record when this failure ejects the target."""
        passive = self._passive
        if passive is None:
            return
        target.consecutive_failures += 1
        if target.consecutive_failures < passive.failures or target.ejected:
            return
        if not target.available or len(self.available) <= 1:
            return  # never eject the last target that might still answer
        loop = asyncio.get_running_loop()
        target.ejected = True
        target.ejections += 1
        target.ejected_until = loop.time() + passive.eject_for
        self._last_ejection[id(target)] = Ejection(
            reason=f"{target.consecutive_failures} consecutive failure{'s' if target.consecutive_failures != 1 else ''}, "
            f"last: {reason}",
            at=time.time(),
            duration=passive.eject_for,
        )
        log.warning(
            "upstream %s target %s ejected for %ss after %d consecutive failures",
            self.name, target.label, passive.eject_for, target.consecutive_failures,
        )
        self._recompute()
        self._readmissions[id(target)] = loop.call_later(passive.eject_for, self._readmit, target)

    def _readmit(self, target: Target) -> None:
        self._readmissions.pop(id(target), None)
        target.ejected = False
        target.consecutive_failures = 0
        log.info("upstream %s target %s readmitted", self.name, target.label)
        self._recompute()

    def status(self) -> dict[str, object]:
        loop = asyncio.get_event_loop()
        now = time.time()
        return {
            "strategy": self.config.strategy,
            "available": len(self.available),
            "targets": [
                {
                    "url": t.url,
                    "target": t.label,
                    "weight": t.weight,
                    "healthy": t.healthy,
                    "ejected": t.ejected,
                    "ejected_for": round(max(0.0, t.ejected_until - loop.time()), 1) if t.ejected else 0,
                    "ejections": t.ejections,
                    "in_flight": t.in_flight,
                    "connections": t.pool.size,
                    "idle_connections": t.pool.idle,
                    "last_check": self._check_status(t, now),
                    "last_ejection": self._ejection_status(t, now),
                }
                for t in self.targets
            ],
        }

    def _check_status(self, target: Target, now: float) -> dict[str, object] | None:
        result = self._checker.last_result(target) if self._checker is not None else None
        if result is None:
            return None
        return {"ok": result.ok, "result": result.detail, "at": round(result.at, 3),
                "age_s": round(max(0.0, now - result.at), 1), "took_ms": round(result.took * 1000, 1)}

    def _ejection_status(self, target: Target, now: float) -> dict[str, object] | None:
        ejection = self._last_ejection.get(id(target))
        if ejection is None:
            return None
        return {"reason": ejection.reason, "at": round(ejection.at, 3),
                "age_s": round(max(0.0, now - ejection.at), 1), "duration_s": ejection.duration}
