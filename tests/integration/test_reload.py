"""SIGHUP reloads of the real ``gateway run`` process: what a reload hands over, and
what it changes, seen from the outside (answers, metrics, the log)."""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.integration.conftest import simple_config
from tests.integration.gateway_process import GatewayProcess
from tests.jwt_keys import jwks_document, jwt_section, key_pair


class SlowIdP:
    """A JWKS endpoint in its own thread that takes ``delay`` seconds to answer, and
    remembers how many fetches it ever served at the same time."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.fetches = 0
        self.concurrent = 0
        self.most_concurrent = 0
        lock = threading.Lock()
        owner = self
        body = json.dumps(jwks_document(key_pair("rsa").jwk("k1"))).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's spelling)
                with lock:
                    owner.fetches += 1
                    owner.concurrent += 1
                    owner.most_concurrent = max(owner.most_concurrent, owner.concurrent)
                try:
                    time.sleep(owner.delay)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with lock:
                        owner.concurrent -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            await response.read()
            return response.status


async def wait_for(predicate: Callable[[], Any], *, timeout: float = 30.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def reloads_succeeded(gw: GatewayProcess) -> float:
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.admin_url + "/metrics") as response:
            text = await response.text()
    for line in text.splitlines():
        if line.startswith('gateway_config_reloads_total{result="success"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_overlapping_reloads_are_serialised_and_keep_the_live_runtime(tmp_path: Path, stub, gateway_factory):
    # Starting a runtime waits for the JWKS fetch, so two SIGHUPs a moment apart used
    # to overlap: both took over the first runtime's store and upstreams, and the
    # loser, retired, closed the store the winner serves with.
    idp = SlowIdP(delay=2.0)
    try:
        jwt = jwt_section(tmp_path, jwks_url=idp.url, jwks_timeout="10s")
        del jwt["public_key_file"]
        config = {
            **simple_config(stub.url, throttle={"anonymous": "3/hour"}),
            "server": {"shutdown_timeout": "0s"},  # retire replaced runtimes at once
            "auth": {"jwt": jwt},
        }
        gw = gateway_factory(config)
        url = gw.url + "/spend"
        assert [await status_of(url) for _ in range(4)] == [200, 200, 200, 429]

        gw.signal(signal.SIGHUP)
        # The second SIGHUP only once the first reload is busy fetching keys (two
        # signals sent at once may reach the process as one).
        await wait_for(lambda: fetched_at_least(idp, 2), what="the first reload's JWKS fetch")
        gw.signal(signal.SIGHUP)
        await wait_for(lambda: at_least(reloads_succeeded(gw), 2), what="two successful reloads")
        await wait_for(lambda: log_has(gw, "retired the runtime replaced by a reload", 2), what="both old runtimes retired")

        assert idp.fetches == 3
        assert idp.most_concurrent == 1, "two reloads built runtimes at the same time"
        # The store (unchanged config) was handed over and is still open: the spent
        # budget is still spent.
        assert await status_of(url) == 429
        assert "Traceback" not in gw.log()
    finally:
        idp.close()


async def at_least(value: Any, minimum: float) -> bool:
    return await value >= minimum


async def fetched_at_least(idp: SlowIdP, count: int) -> bool:
    return idp.fetches >= count


async def log_has(gw: GatewayProcess, text: str, times: int = 1) -> bool:
    return gw.log().count(text) >= times


def rewrite(gw: GatewayProcess, config: dict[str, Any]) -> None:
    """Write ``config`` as the gateway's file, keeping its listeners."""
    listeners = {key: gw.config["server"][key] for key in ("listen", "access_log")}
    config = {**config, "server": {**config.get("server", {}), **listeners}, "admin": gw.config["admin"]}
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def status_with_header(port: int, value_size: int) -> int:
    """Status of a request with one header of ``value_size`` bytes, on a new connection
    (a reload's limits apply to connections accepted after it)."""
    import socket

    request = (
        b"GET /big HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * value_size + b"\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


async def test_a_reloaded_max_header_size_reaches_the_parser(stub, gateway_factory):
    small = {**simple_config(stub.url), "server": {"max_header_size": "4KiB"}}
    large = {**simple_config(stub.url), "server": {"max_header_size": "32KiB"}}
    gw = gateway_factory(small)
    loop = asyncio.get_running_loop()

    async def status(size: int) -> int:
        return await loop.run_in_executor(None, status_with_header, gw.port, size)

    assert await status(6000) in (400, 431)
    expected_reloads = 0
    for config, refused in ((large, False), (small, True)):
        rewrite(gw, config)
        gw.signal(signal.SIGHUP)
        expected_reloads += 1
        await wait_for(lambda: at_least(reloads_succeeded(gw), expected_reloads), what="the reload")
        code = await status(6000)
        assert (code in (400, 431)) if refused else code == 200, code
    assert [r["path_qs"] for r in stub.requests] == ["/big"]
