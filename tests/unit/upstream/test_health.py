"""The active health checker's verdicts and the last check it keeps per target."""

import asyncio
import time

from aiohttp import web

from gateway.config.upstream import UpstreamConfig
from gateway.metrics import Metrics
from gateway.upstream.group import Upstream
from tests.integration.gateway_process import free_port


async def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_the_last_check_of_each_target_is_shown_with_its_result_and_age(aiohttp_server):
    sick = False

    async def healthz(request):
        return web.Response(status=503 if sick else 200)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    server = await aiohttp_server(app)
    dead = free_port()  # nothing listens: a connection error
    config = UpstreamConfig.model_validate({
        "targets": [f"http://127.0.0.1:{server.port}", f"http://127.0.0.1:{dead}"],
        "health_check": {"path": "/healthz", "interval": "100ms", "timeout": "1s",
                         "healthy_after": 1, "unhealthy_after": 1},
    })
    up = Upstream("u", config, metrics=Metrics())
    await up.start()
    try:
        def checks():
            return [t["last_check"] for t in up.status()["targets"]]

        await wait_for(lambda: all(checks()) and not up.targets[1].healthy)
        alive, down = checks()
        assert alive["ok"] is True and alive["result"] == "200"
        assert 0 <= alive["age_s"] < 5 and alive["took_ms"] >= 0
        assert down["ok"] is False and down["result"] == "ClientConnectorError"
        sick = True
        await wait_for(lambda: checks()[0]["result"] == "status 503")
        assert checks()[0]["ok"] is False
        await wait_for(lambda: not up.targets[0].healthy)
    finally:
        await up.close()
