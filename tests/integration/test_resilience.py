"""Bad days: targets dying, refusing, failing checks; reloads under load."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.integration.conftest import simple_config
from tests.integration.gateway_process import free_port

ROOT = Path(__file__).resolve().parents[2]


def start_target(name: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.upstream_app", str(port), name], cwd=ROOT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"target {name} did not start")


@pytest.fixture
def targets():
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> tuple[subprocess.Popen[bytes], int]:
        proc, port = start_target(name)
        started.append(proc)
        return proc, port

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def two_targets(port_a: int, port_b: int, **upstream) -> dict:
    return {
        "upstreams": {"app": {"targets": [f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"], **upstream}},
        "routes": [{"name": "main", "match": {"path": "/"}, "upstream": "app"}],
    }


async def metric(gw, text: str) -> float:
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.admin_url + "/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith(text):
                    return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_target_killed_under_load_loses_no_request(targets, gateway_factory):
    proc_a, port_a = targets("a")
    proc_b, port_b = targets("b")
    gw = gateway_factory(two_targets(port_a, port_b))
    statuses: Counter[int] = Counter()
    served: Counter[str] = Counter()
    odd: list[str] = []
    done = 0

    async def worker(client: aiohttp.ClientSession) -> None:
        nonlocal done
        while done < 300:
            done += 1
            async with client.get(gw.url + f"/item/{done}") as resp:
                statuses[resp.status] += 1
                if resp.status == 200:
                    served[(await resp.json())["served_by"]] += 1
                else:  # keep what answered, to tell the gateway's errors from a target's
                    odd.append(f"{resp.status} {dict(resp.headers)} {await resp.text()}")

    async def killer() -> None:
        while done < 100:
            await asyncio.sleep(0.005)
        proc_b.send_signal(signal.SIGKILL)

    async with aiohttp.ClientSession() as client:
        await asyncio.gather(killer(), *(worker(client) for _ in range(6)))
    assert statuses == Counter({200: sum(statuses.values())}), (statuses, odd, gw.log()[-3000:])
    assert served["a"] > 0 and served["b"] > 0


async def _closing_server(counter: list[bytes]) -> tuple[asyncio.AbstractServer, int]:
    """Reads a whole request, then closes without answering."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        counter.append(head.split(b" ", 1)[0])
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                await reader.readexactly(int(line.split(b":")[1]))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_post_the_upstream_may_have_acted_on_is_never_resent(gateway_factory):
    seen: list[bytes] = []
    server_a, port_a = await _closing_server(seen)
    server_b, port_b = await _closing_server(seen)
    try:
        gw = gateway_factory(two_targets(port_a, port_b, retries=3))
        async with aiohttp.ClientSession() as client:
            async with client.post(gw.url + "/orders", data=b'{"dish": "bruschetta"}') as resp:
                assert resp.status == 502
        assert seen == [b"POST"]
        # an idempotent GET, reset before any response byte, may go to the other target
        async with aiohttp.ClientSession() as client:
            async with client.get(gw.url + "/menu") as resp:
                assert resp.status == 502
        assert seen.count(b"GET") == 2
    finally:
        server_a.close()
        server_b.close()


async def test_a_post_that_never_connected_goes_to_another_target(targets, gateway_factory):
    _, port_a = targets("a")
    gw = gateway_factory(two_targets(free_port(), port_a, strategy="round_robin"))
    async with aiohttp.ClientSession() as client:
        for _ in range(4):
            async with client.post(gw.url + "/orders", data=b"{}") as resp:
                assert resp.status == 200
                assert (await resp.json())["served_by"] == "a"


async def test_all_targets_down_is_a_fast_503_with_health_checks(gateway_factory):
    config = two_targets(free_port(), free_port(), health_check={"interval": "100ms", "timeout": "100ms", "unhealthy_after": 1})
    gw = gateway_factory(config)
    await asyncio.sleep(0.6)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as client:
        started = loop.time()
        async with client.get(gw.url + "/x") as resp:
            assert resp.status == 503
            assert int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["status"] == 503
        assert loop.time() - started < 0.3
        async with client.get(gw.admin_url + "/readyz") as resp:
            assert resp.status == 503
            assert "has no healthy target" in (await resp.json())["reasons"][0]


async def test_all_targets_down_without_checks_turns_into_fast_503s(gateway_factory):
    gw = gateway_factory(two_targets(free_port(), free_port()))
    loop = asyncio.get_running_loop()
    statuses = []
    async with aiohttp.ClientSession() as client:
        for _ in range(10):
            started = loop.time()
            async with client.get(gw.url + "/x") as resp:
                statuses.append(resp.status)
                await resp.read()
            assert loop.time() - started < 0.5
    assert set(statuses) <= {502, 503}
    assert statuses[-1] == 503


async def test_5xx_from_one_target_is_retried_on_another_for_gets_only(make_stub, gateway_factory):
    def failing(app: web.Application) -> None:
        async def unavailable(request: web.Request) -> web.Response:
            return web.Response(status=503, text="busy")

        app.router.add_route("*", "/{tail:.*}", unavailable)

    bad = await make_stub(failing)
    good = await make_stub()
    gw = gateway_factory(two_targets(bad.port, good.port, passive=False))
    async with aiohttp.ClientSession() as client:
        for _ in range(6):
            async with client.get(gw.url + "/menu") as resp:
                assert resp.status == 200
        answers = []
        for _ in range(2):  # round robin: one of two POSTs meets the failing target
            async with client.post(gw.url + "/menu", data=b"{}") as resp:
                answers.append((resp.status, await resp.text()))
        # never retried: the failing target's own answer reaches the client
        assert (503, "busy") in answers
    assert await metric(gw, 'gateway_upstream_retries_total{upstream="app"}') >= 3


async def test_active_checks_take_a_target_out_and_bring_it_back(make_stub, gateway_factory):
    state = {"status": 200}

    def flaky(app: web.Application) -> None:
        async def healthz(request: web.Request) -> web.Response:
            return web.Response(status=state["status"])

        app.router.add_get("/healthz", healthz)

    a = await make_stub(flaky)
    b = await make_stub()
    config = two_targets(a.port, b.port, health_check={"path": "/healthz", "interval": "100ms", "healthy_after": 2, "unhealthy_after": 2})
    gw = gateway_factory(config)
    label = f'gateway_upstream_target_healthy{{target="127.0.0.1:{a.port}",upstream="app"}}'
    assert await metric(gw, label) == 1.0
    state["status"] = 500
    await asyncio.sleep(0.6)
    assert await metric(gw, label) == 0.0
    before = len(a.requests)
    async with aiohttp.ClientSession() as client:
        for _ in range(6):
            async with client.get(gw.url + "/x") as resp:
                assert resp.status == 200
        async with client.get(gw.admin_url + "/status") as resp:
            status = await resp.json()
    assert [r for r in a.requests[before:] if r["path_qs"] != "/healthz"] == []
    target = next(t for t in status["upstreams"]["app"]["targets"] if t["target"].endswith(str(a.port)))
    assert target["healthy"] is False
    state["status"] = 200
    await asyncio.sleep(0.6)
    assert await metric(gw, label) == 1.0


async def test_reload_under_load_fails_no_request(targets, gateway_factory):
    _, port_a = targets("a")
    _, port_b = targets("b")
    gw = gateway_factory(two_targets(port_a, port_b))
    statuses: Counter[int] = Counter()
    sent = 0

    async def worker(client: aiohttp.ClientSession) -> None:
        nonlocal sent
        while sent < 400:
            sent += 1
            async with client.get(gw.url + "/x") as resp:
                statuses[resp.status] += 1
                await resp.read()

    async def reloader() -> None:
        for i in range(3):
            while sent < 100 * (i + 1):
                await asyncio.sleep(0.005)
            config = two_targets(port_a, port_b, strategy=["least_conn", "p2c", "round_robin"][i])
            config["server"], config["admin"] = gw.config["server"], gw.config["admin"]
            gw.config_path.write_text(yaml.safe_dump(config))
            gw.signal(signal.SIGHUP)

    async with aiohttp.ClientSession() as client:
        await asyncio.gather(reloader(), *(worker(client) for _ in range(4)))
    assert statuses == Counter({200: 400}), statuses
    assert await metric(gw, 'gateway_config_reloads_total{result="success"}') == 3.0


async def test_admin_token_guards_everything_but_healthz(stub, gateway_factory):
    config = simple_config(stub.url)
    config["admin"] = {"token": "s3cret"}
    gw = gateway_factory(config)
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.admin_url + "/healthz") as resp:
            assert resp.status == 200
        # The status page's shell is open but holds no data; its data is guarded.
        async with client.get(gw.admin_url + "/") as resp:
            assert resp.status == 200 and stub.url not in await resp.text()
        async with client.post(gw.admin_url + "/") as resp:
            assert resp.status == 401
        for path in ("/metrics", "/status", "/readyz", "/status/live"):
            async with client.get(gw.admin_url + path) as resp:
                assert resp.status == 401, path
            async with client.get(gw.admin_url + path, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401, path
            async with client.get(gw.admin_url + path, headers={"Authorization": "Bearer s3cret"}) as resp:
                assert resp.status == 200, path


async def test_reload_counters_start_at_zero_and_removed_targets_lose_their_gauge(targets, gateway_factory):
    _, port_a = targets("a")
    _, port_b = targets("b")
    gw = gateway_factory(two_targets(port_a, port_b))
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.admin_url + "/metrics") as resp:
            text = await resp.text()
    # present from the start, so increase() sees the first failure
    assert 'gateway_config_reloads_total{result="failure"} 0.0' in text
    assert f'gateway_upstream_target_healthy{{target="127.0.0.1:{port_b}",upstream="app"}} 1.0' in text

    config = simple_config(f"http://127.0.0.1:{port_a}")
    config["server"], config["admin"] = gw.config["server"], gw.config["admin"]
    gw.config_path.write_text(yaml.safe_dump(config))
    gw.signal(signal.SIGHUP)
    for _ in range(50):
        if await metric(gw, 'gateway_config_reloads_total{result="success"}') == 1.0:
            break
        await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.admin_url + "/metrics") as resp:
            text = await resp.text()
    assert f'target="127.0.0.1:{port_b}"' not in text.split("gateway_upstream_target_healthy", 1)[1].split("# HELP", 1)[0]
    assert f'gateway_upstream_target_healthy{{target="127.0.0.1:{port_a}",upstream="app"}} 1.0' in text
