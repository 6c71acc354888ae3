"""Fault drill: a target SIGKILLed under load, the gateway reloaded, the target back.

The operator's drill, bounded and on loopback: ``gateway run --workers 2`` with two
real target processes and ``retries: 2``; many keep-alive clients; one target is
SIGKILLed mid-load (every request in flight on it, and every pooled connection to it,
breaks at once), the gateway gets SIGHUP, the target is restarted on the same port,
SIGHUP again. Every request is an idempotent GET and the other target stays healthy
throughout, so the promise is zero failed requests.

Phases move on conditions (request counts, metrics, who served), never on sleeps;
each has a generous deadline so a loaded 2-core box only makes the drill slower.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.integration.gateway_process import GatewayProcess, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Enough keep-alive clients that, per gateway worker, more requests are in flight on
# the killed target than a small fixed retry allowance covers (the reported failure).
CLIENTS = 64
# Target think time: keeps those requests in flight on the target (Little's law), so
# the size of the burst at the kill depends on CLIENTS, not on how busy the CPU is.
THINK_TIME = "0.05"
PHASE_DEADLINE = 20.0


class TargetProcess:
    """One upstream target as its own process, killable and restartable on its port."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.upstream_app", str(self.port), self.name, THINK_TIME], cwd=ROOT
        )
        deadline = time.monotonic() + PHASE_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"target {self.name} exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"target {self.name} did not listen on {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def target_factory() -> Iterator[Callable[[str], TargetProcess]]:
    made: list[TargetProcess] = []

    def make(name: str) -> TargetProcess:
        target = TargetProcess(name)
        made.append(target)
        target.start()
        return target

    yield make
    for target in made:
        target.kill()


class Load:
    """``CLIENTS`` keep-alive GET loops against the gateway, tallying every answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0
        self.served: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = False

    @property
    def done(self) -> int:
        return sum(self.served.values()) + len(self.failures)

    async def _loop(self, client: aiohttp.ClientSession) -> None:
        while not self._stop:
            self.sent += 1
            path = f"/drill/{self.sent}"
            try:
                async with client.get(self.url + path) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        self.served[(await resp.json())["served_by"]] += 1
                    else:
                        self.failures.append(f"{path}: {resp.status} {body[:300]!r}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.failures.append(f"{path}: {exc!r}")

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=CLIENTS)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
            await asyncio.gather(*(self._loop(client) for _ in range(CLIENTS)))

    def stop(self) -> None:
        self._stop = True


async def reloads(gw: GatewayProcess) -> float:
    """``gateway_config_reloads_total{result="success"}`` as the supervisor counts it."""
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.admin_url + "/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith('gateway_config_reloads_total{result="success"}'):
                    return float(line.rsplit(" ", 1)[1])
    return 0.0


async def until(what: str, ready: Callable[[], Awaitable[bool]], gw: GatewayProcess, load: Load) -> None:
    deadline = time.monotonic() + PHASE_DEADLINE
    while not await ready():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"drill stuck waiting for {what} (served {dict(load.served)}, failures {load.failures[:10]})\n"
                f"{log_excerpt(gw)}"
            )
        await asyncio.sleep(0.02)


async def more_answers(what: str, count: int, gw: GatewayProcess, load: Load) -> None:
    goal = load.done + count

    async def reached() -> bool:
        return load.done >= goal

    await until(what, reached, gw, load)


async def served_by(name: str, count: int, gw: GatewayProcess, load: Load) -> None:
    goal = load.served[name] + count

    async def reached() -> bool:
        return load.served[name] >= goal

    await until(f"{count} more answers from {name}", reached, gw, load)


async def reloaded(times: int, gw: GatewayProcess, load: Load) -> None:
    async def counted() -> bool:
        return await reloads(gw) >= times

    await until(f"reload number {times}", counted, gw, load)


def log_excerpt(gw: GatewayProcess) -> str:
    """The gateway log minus the routine lines a drill makes by the hundred, so a
    traceback or an unexpected verdict is in view."""
    routine = ("retrying", "cannot connect", "readmitted", "ejected for", "upstream closed the connection")
    lines = [line for line in gw.log().splitlines() if not any(word in line for word in routine)]
    return "\n".join(lines)[-8000:]


def drill_config(a: TargetProcess, b: TargetProcess, *, max_connections: int = 100) -> dict[str, Any]:
    return {
        "server": {"access_log": "off"},
        "upstreams": {
            "app": {
                "targets": [a.url, b.url],
                "retries": 2,
                "max_connections": max_connections,
                # Short, so the killed target is readmitted (and fails again) while it
                # is down, and takes traffic again soon after it is back.
                "passive": {"failures": 3, "eject_for": "1s"},
            }
        },
        "routes": [{"name": "main", "match": {"path": "/"}, "upstream": "app"}],
    }


def rewrite_config(gw: GatewayProcess, config: dict[str, Any]) -> None:
    config = {**config, "server": gw.config["server"], "admin": gw.config["admin"]}
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


async def test_a_target_killed_under_load_with_reloads_fails_no_request(target_factory, gateway_factory):
    a = target_factory("a")
    b = target_factory("b")
    gw = gateway_factory(drill_config(a, b), args=["--workers", "2"])
    load = Load(gw.url)
    running = asyncio.get_running_loop().create_task(load.run())

    try:
        # Warm: both targets serve, so each worker has pooled connections to b to break.
        await served_by("a", 300, gw, load)
        await served_by("b", 300, gw, load)

        await asyncio.to_thread(b.kill)  # off the loop: the clients keep going meanwhile
        b_before_kill = load.served["b"]
        await more_answers("load after the kill", 1000, gw, load)

        # A reload while b is down that changes the upstream: the new upstream starts
        # cold and believes b is up, so it meets the dead target all over again.
        rewrite_config(gw, drill_config(a, b, max_connections=90))
        gw.signal(signal.SIGHUP)
        await reloaded(1, gw, load)
        await more_answers("load after the first reload", 1000, gw, load)

        await asyncio.to_thread(b.start)
        await served_by("b", 200, gw, load)

        gw.signal(signal.SIGHUP)  # unchanged upstream: kept with its pools and verdicts
        await reloaded(2, gw, load)
        await more_answers("load after the second reload", 1000, gw, load)
    finally:
        load.stop()
        await running

    assert load.failures == [], (
        f"{len(load.failures)} of {load.done} requests failed: {load.failures[:20]}\n{log_excerpt(gw)}"
    )
    assert load.served["a"] > 0 and b_before_kill > 0
    assert load.served["b"] > b_before_kill, "the restarted target never served again"
