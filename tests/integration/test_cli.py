"""The `gateway` command as an operator runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import aiohttp
import yaml

from tests.integration.conftest import simple_config, slow_routes
from tests.integration.gateway_process import free_port, gateway_command
from tests.integration.test_proxy import raw_request

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gateway_command(), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def test_check_accepts_the_shipped_config_and_summarises_it():
    result = run("check", "-c", str(ROOT / "config" / "gateway.yaml"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "menu-items" in result.stdout and "http://127.0.0.1:8001" in result.stdout


def test_check_reports_every_error_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "server:\n  max_body_size: lots\n  max_body_size: more\n"
        "upstreams:\n  menu:\n    targets: [http://127.0.0.1:1]\n"
        "routes:\n  - name: a\n    match: {path: /a}\n    upstream: menu\n"
        "  - name: b\n    match: {path: /b}\n    upstream: menu\n"
        "  - name: c\n    match: {path: /c}\n    upstream: menu\n    cache: {ttl: soon}\n"
    )
    result = run("check", "-c", str(bad))
    assert result.returncode == 2
    assert "server.max_body_size: duplicate key (first defined on line 2)" in result.stderr
    bad.write_text(bad.read_text().replace("  max_body_size: more\n", ""))
    result = run("check", "-c", str(bad))
    assert result.returncode == 2
    assert "server.max_body_size: expected a size like 10MiB, got 'lots'" in result.stderr
    assert "routes[2].cache.ttl: expected a duration like 30s, got 'soon'" in result.stderr


def test_check_on_a_missing_file(tmp_path):
    result = run("check", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read the file" in result.stderr


def test_schema_is_json_schema():
    result = run("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"server", "admin", "upstreams", "routes"} <= set(schema["properties"])


def test_run_refuses_a_bad_config_with_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: []\n")
    result = run("run", "-c", str(bad))
    assert result.returncode == 2
    assert "routes: expected at least 1 entry" in result.stderr


async def test_the_proxy_port_parses_strictly_without_aiohttps_extensions(stub, gateway_factory):
    # The proxy port parses with llhttp (httptools) itself; aiohttp's pure-Python
    # parser, which AIOHTTP_NO_EXTENSIONS selects, serves only the admin listener.
    gw = gateway_factory(simple_config(stub.url), env={"AIOHTTP_NO_EXTENSIONS": "1"})
    reply = await raw_request(
        gw.port, b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:80]
    assert stub.requests == []


def test_run_says_when_the_port_is_taken(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = simple_config("http://127.0.0.1:1")
        config["server"] = {"listen": f"127.0.0.1:{port}"}
        config["admin"] = {"listen": f"127.0.0.1:{free_port()}"}
        path = tmp_path / "g.yaml"
        path.write_text(yaml.safe_dump(config))
        result = run("run", "-c", str(path))
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as client:
        async with client.get(url) as resp:
            return resp.status, await resp.text()


async def test_sighup_swaps_a_valid_config_and_keeps_the_old_on_error(stub, gateway_factory):
    config = simple_config(stub.url, match={"path": "/old"})
    gw = gateway_factory(config)
    assert (await _get(gw.url + "/old"))[0] == 200
    assert (await _get(gw.url + "/new"))[0] == 404

    new = simple_config(stub.url, match={"path": "/new"})
    new["server"], new["admin"] = gw.config["server"], gw.config["admin"]
    gw.config_path.write_text(yaml.safe_dump(new))
    gw.signal(signal.SIGHUP)
    for _ in range(50):
        if (await _get(gw.url + "/new"))[0] == 200:
            break
        await asyncio.sleep(0.1)
    assert (await _get(gw.url + "/new"))[0] == 200
    assert (await _get(gw.url + "/old"))[0] == 404

    gw.config_path.write_text("routes: [oops\n")
    gw.signal(signal.SIGHUP)
    await asyncio.sleep(0.5)
    assert (await _get(gw.url + "/new"))[0] == 200
    status, metrics = await _get(gw.admin_url + "/metrics")
    assert 'gateway_config_reloads_total{result="failure"} 1.0' in metrics
    assert 'gateway_config_reloads_total{result="success"} 1.0' in metrics
    assert "reload refused" in gw.log()


async def test_sigterm_lets_an_in_flight_request_finish(make_stub, gateway_factory):
    upstream = await make_stub(slow_routes(1.5, "finished"))
    gw = gateway_factory(simple_config(upstream.url))
    pending = asyncio.ensure_future(_get(gw.url + "/slow"))
    await asyncio.sleep(0.4)
    gw.signal(signal.SIGTERM)
    assert await pending == (200, "finished")
    assert await asyncio.get_running_loop().run_in_executor(None, gw.proc.wait, 10) == 0
