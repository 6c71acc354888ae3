"""The admin listener: health and metrics for operators and their tooling.

Separate from the proxy port so that it can be bound to loopback or a management
network. When ``admin.token`` is set, every endpoint except ``/healthz`` (which load
balancers and Docker's HEALTHCHECK call anonymously) needs ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from html import escape
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.cache.purge import purge_handler
from gateway.metrics import Metrics
from gateway.problem import problem_response

if TYPE_CHECKING:
    from gateway.runtime import Runtime

__all__ = ["build_admin_app", "admin_middlewares", "render_status_page"]

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


def admin_middlewares(token: str | None) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    """What guards every admin app, the supervisor's (gateway/supervisor_admin.py) too:
    the ``admin.token`` check when a token is set."""
    return [_token_middleware(token)] if token else []


def build_admin_app(
    *, metrics: Metrics, token: str | None, runtime: Callable[[], Runtime] | None = None
) -> web.Application:
    """``runtime`` returns the runtime in force (it changes on reload)."""
    app = web.Application(middlewares=[_token_middleware(token)] if token else [])

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

        async def index(request: web.Request) -> web.Response:
            return web.Response(text=render_status_page(runtime().status(), runtime().readiness()), content_type="text/html")

        app.router.add_post("/cache/purge", purge_handler(runtime))
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/status", status)
        app.router.add_get("/", index)
    return app


def render_status_page(status: dict[str, Any], reasons: list[str]) -> str:
    """A small page for people: the same facts as /status, refreshing every 5 s."""
    rows = []
    for name, upstream in status["upstreams"].items():
        for t in upstream["targets"]:
            state = "ejected" if t["ejected"] else ("healthy" if t["healthy"] else "unhealthy")
            rows.append(
                f"<tr><td>{escape(name)}</td><td>{escape(t['url'])}</td><td class={state}>{state}</td>"
                f"<td>{t['in_flight']}</td><td>{t['connections']}</td><td>{t['ejections']}</td></tr>"
            )
    routes = "".join(
        f"<tr><td>{escape(r['name'])}</td><td>{escape(', '.join(r['methods'] or ['*']))}</td>"
        f"<td>{escape(r['path'])}</td><td>{escape(r['upstream'])}</td><td>{escape(' → '.join(r['stages']) or '-')}</td></tr>"
        for r in status["routes"]
    )
    ready = "ready" if not reasons else "not ready: " + "; ".join(reasons)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5"><title>gateway status</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}.healthy{{color:green}}.unhealthy,.ejected{{color:#b00}}</style>
</head><body><h1>gateway</h1><p>{escape(ready)}</p>
<h2>Upstreams</h2><table><tr><th>upstream</th><th>target</th><th>state</th><th>in flight</th><th>connections</th><th>ejections</th></tr>
{"".join(rows)}</table>
<h2>Routes</h2><table><tr><th>route</th><th>methods</th><th>path</th><th>upstream</th><th>stages</th></tr>{routes}</table>
<p>JSON: <a href="/status">/status</a> · <a href="/readyz">/readyz</a> · <a href="/metrics">/metrics</a></p>
</body></html>"""
