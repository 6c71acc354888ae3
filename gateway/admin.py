"""The admin listener: health and metrics for operators and their tooling.

Separate from the proxy port so that it can be bound to loopback or a management
network. When ``admin.token`` is set, every endpoint except ``/healthz`` (which load
balancers and Docker's HEALTHCHECK call anonymously) and ``/`` (the status page's
HTML shell, which holds no data: gateway/status_page.py) needs
``Authorization: Bearer``; the data the page shows comes from ``/status/live``,
which does.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric

from gateway.cache.purge import purge_handler
from gateway.metrics import Metrics
from gateway.problem import problem_response
from gateway.reload_history import ReloadHistory
from gateway.status_live import LiveCounters, live_status
from gateway.status_page import status_page_response

if TYPE_CHECKING:
    from gateway.runtime import Runtime

__all__ = ["build_admin_app", "admin_middlewares", "NO_STORE"]

_OPEN_PATHS = frozenset({"/healthz", "/"})
_OPEN_METHODS = frozenset({"GET", "HEAD"})

NO_STORE = {"Cache-Control": "no-store"}
"""Live figures: never from a cache, never kept by one."""


def _token_middleware(token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Open means readable: a POST to an open path (which the supervisor would
        # forward to every worker) needs the token like any other.
        if request.method not in _OPEN_METHODS or request.path not in _OPEN_PATHS:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return problem_response(
                    401, "this admin endpoint needs the admin token",
                    headers={"WWW-Authenticate": 'Bearer realm="gateway-admin"'},
                )
        return await handler(request)

    return require_token


def admin_middlewares(token: str | None) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    """What guards every admin app, the supervisor's (gateway/supervisor_admin.py) too:
    the ``admin.token`` check when a token is set."""
    return [_token_middleware(token)] if token else []


def build_admin_app(
    *,
    metrics: Metrics,
    token: str | None,
    runtime: Callable[[], Runtime] | None = None,
    reloads: ReloadHistory | None = None,
) -> web.Application:
    """``runtime`` returns the runtime in force (it changes on reload). ``reloads``:
    given when this app is the one operators reach (``admin.listen``), which then
    also serves the status page; a worker's private app leaves the page to the
    supervisor (gateway/supervisor_admin.py)."""
    app = web.Application(middlewares=admin_middlewares(token))

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics_endpoint(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    if runtime is not None:

        async def readyz(request: web.Request) -> web.Response:
            reasons = runtime().readiness()
            if reasons:
                return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
            return web.json_response({"status": "ready"})

        async def status(request: web.Request) -> web.Response:
            return web.json_response(runtime().status())

        app.router.add_post("/cache/purge", purge_handler(runtime))
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/status", status)

        if reloads is not None:

            async def collect() -> list[Metric]:
                # The very families /metrics renders, so the page and Prometheus agree.
                return list(metrics.registry.collect())

            live = LiveCounters(collect)
            app.cleanup_ctx.append(live.cleanup_ctx)

            async def status_live(request: web.Request) -> web.Response:
                window = await live.window()
                current = runtime()
                document = live_status(
                    status=current.status(), reasons=current.readiness(), window=window, config=reloads.status()
                )
                return web.json_response(document, headers=NO_STORE)

            app.router.add_get("/status/live", status_live)
            app.router.add_get("/", status_page_response)
    return app
