"""Active health checks: one GET per target per ``interval``, per gateway process.

A target turns unhealthy after ``unhealthy_after`` consecutive failed checks (a
connection error, a timeout, or a status outside 200-399) and healthy again after
``healthy_after`` consecutive successes. The checker only reports verdicts through a
callback; what "unhealthy" means for traffic is the upstream group's business.
The last check of each target (its result, when, how long it took) is kept for the
status page: "unhealthy since when, and failing how" is the operator's first question.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from gateway.background import cancel_and_wait
from gateway.config.upstream import HealthCheckConfig
from gateway.upstream.balancer import Target

__all__ = ["ActiveHealthChecker", "CheckResult"]

log = logging.getLogger("gateway.health")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One finished check of one target."""

    ok: bool
    detail: str
    """The status code (``200``), ``status 503``, or the error's class name."""
    at: float
    """Wall-clock time the check finished (``time.time()``)."""
    took: float
    """Seconds from sending the check to its verdict."""


class ActiveHealthChecker:
    def __init__(
        self,
        *,
        upstream: str,
        targets: Sequence[Target],
        config: HealthCheckConfig,
        on_change: Callable[[Target, bool], None],
    ) -> None:
        self.upstream = upstream
        self.targets = tuple(targets)
        self.config = config
        self.on_change = on_change
        self._streaks: dict[int, int] = {id(t): 0 for t in self.targets}
        """Positive: consecutive successes; negative: consecutive failures."""
        self._last: dict[int, CheckResult] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"health:{self.upstream}")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
        )
        while True:
            await asyncio.gather(*(self.check(target) for target in self.targets))
            await asyncio.sleep(self.config.interval)

    async def _probe(self, target: Target) -> tuple[bool, str]:
        assert self._session is not None
        url = target.origin + self.config.path
        try:
            async with self._session.get(
                url,
                headers={"Host": target.host_header.decode("ascii"), "User-Agent": "gateway-health-check"},
                allow_redirects=False,
            ) as response:
                await response.read()
                if 200 <= response.status < 400:
                    return True, str(response.status)
                return False, f"status {response.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return False, type(exc).__name__

    def last_result(self, target: Target) -> CheckResult | None:
        """The target's latest check, None before the first one has finished."""
        return self._last.get(id(target))

    async def check(self, target: Target) -> None:
        started = time.perf_counter()
        ok, detail = await self._probe(target)
        key = id(target)
        self._last[key] = CheckResult(ok=ok, detail=detail, at=time.time(), took=time.perf_counter() - started)
        streak = self._streaks[key]
        streak = max(streak, 0) + 1 if ok else min(streak, 0) - 1
        self._streaks[key] = streak
        if ok and not target.healthy and streak >= self.config.healthy_after:
            log.warning("upstream %s target %s is healthy again", self.upstream, target.label)
            self.on_change(target, True)
        elif not ok and target.healthy and -streak >= self.config.unhealthy_after:
            log.warning("upstream %s target %s is unhealthy: %s", self.upstream, target.label, detail)
            self.on_change(target, False)
