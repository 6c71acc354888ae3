"""The admin listener: health and metrics for operators and their tooling.

Separate from the proxy port so that it can be bound to loopback or a management
network. When ``admin.token`` is set, every endpoint except ``/healthz`` (which load
balancers and Docker's HEALTHCHECK call anonymously) needs ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.metrics import Metrics
from gateway.problem import problem_response

__all__ = ["build_admin_app"]

_OPEN_PATHS = frozenset({"/healthz"})


def _token_middleware(token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in _OPEN_PATHS:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return problem_response(
                    401, "this admin endpoint needs the admin token",
                    headers={"WWW-Authenticate": 'Bearer realm="gateway-admin"'},
                )
        return await handler(request)

    return require_token


def build_admin_app(*, metrics: Metrics, token: str | None) -> web.Application:
    app = web.Application(middlewares=[_token_middleware(token)] if token else [])

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics_endpoint(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
