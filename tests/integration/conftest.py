"""Fixtures for integration tests: a recording stub upstream and the real gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.integration.gateway_process import GatewayProcess, free_port

RECORDS: web.AppKey[list[dict[str, Any]]] = web.AppKey("records", list)


class StubUpstream:
    """An aiohttp server on loopback that records every request it receives."""

    def __init__(self, app: web.Application, runner: web.AppRunner, port: int) -> None:
        self.app = app
        self.runner = runner
        self.port = port
        self.requests: list[dict[str, Any]] = app[RECORDS]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def start_stub(routes: Callable[[web.Application], None] | None = None) -> StubUpstream:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[RECORDS] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        app[RECORDS].append(
            {
                "method": request.method,
                "path_qs": request.raw_path,
                "headers": list(request.raw_headers),
                "header_map": {k.lower(): v for k, v in request.headers.items()},
            }
        )
        return await handler(request)

    app.middlewares.append(record)

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path_qs": request.raw_path,
                "headers": [[k, v] for k, v in request.headers.items()],
                "body_len": len(body),
            }
        )

    if routes is not None:
        routes(app)
    try:
        app.router.add_route("*", "/{tail:.*}", echo)
    except RuntimeError:
        pass  # the test's own catch-all answers instead
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return StubUpstream(app, runner, port)


@pytest.fixture
async def stub() -> AsyncIterator[StubUpstream]:
    upstream = await start_stub()
    yield upstream
    await upstream.runner.cleanup()


@pytest.fixture
async def make_stub() -> AsyncIterator[Callable[..., Any]]:
    """``await make_stub(routes)`` starts another stub; ``routes(app)`` adds handlers."""
    started: list[StubUpstream] = []

    async def make(routes: Callable[[web.Application], None] | None = None) -> StubUpstream:
        upstream = await start_stub(routes)
        started.append(upstream)
        return upstream

    yield make
    for upstream in started:
        await upstream.runner.cleanup()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """``gateway_factory(config_dict)`` starts a gateway and stops it at teardown,
    asserting a clean exit (SIGTERM -> exit 0)."""
    started: list[GatewayProcess] = []

    def make(config: dict[str, Any], **kwargs: Any) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(started)}"
        workdir.mkdir()
        gw = GatewayProcess(config, workdir, **kwargs)
        started.append(gw)
        return gw.start()

    yield make
    for gw in started:
        code = gw.stop()
        assert code == 0, f"gateway exited with {code}:\n{gw.log()}"


def slow_routes(seconds: float, text: str, path: str = "/slow") -> Callable[[web.Application], None]:
    """Stub routes with one GET ``path`` that answers ``text`` after ``seconds``."""

    def routes(app: web.Application) -> None:
        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(seconds)
            return web.Response(text=text)

        app.router.add_get(path, slow)

    return routes


def simple_config(upstream_url: str, **route: Any) -> dict[str, Any]:
    """One upstream ``app`` and one catch-all route ``main`` (overridable)."""
    base_route: dict[str, Any] = {"name": "main", "match": {"path": "/"}, "upstream": "app"}
    base_route.update(route)
    return {
        "upstreams": {"app": {"targets": [upstream_url]}},
        "routes": [base_route],
    }
