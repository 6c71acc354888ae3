"""``server.workers`` > 1: the supervisor, its workers, and what operators see of them.

Each test runs the real ``gateway run`` with two workers against stub upstreams on
loopback. Requests go over fresh connections (``force_close``) so that SO_REUSEPORT
spreads them over both workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import simple_config, slow_routes
from tests.integration.gateway_process import GatewayProcess, free_port, gateway_command

ADMIN_TOKEN = "s3cret-admin"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def two_workers(upstream_url: str, **route: Any) -> dict[str, Any]:
    config = simple_config(upstream_url, **route)
    config["server"] = {"workers": 2, "shutdown_timeout": "5s"}
    return config


async def fetch(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as client:
        async with client.get(url, headers=headers) as resp:
            return resp.status, await resp.text()


async def fetch_many(url: str, count: int, *, concurrency: int = 10) -> list[int]:
    """``count`` GETs, each on its own connection, ``concurrency`` at a time."""
    statuses: list[int] = []
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=concurrency)) as client:

        async def one() -> None:
            async with limit, client.get(url) as resp:
                await resp.read()
                statuses.append(resp.status)

        await asyncio.gather(*(one() for _ in range(count)))
    return statuses


def metric_total(text: str, sample_name: str, **labels: str) -> float:
    """Sum of every sample called ``sample_name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


async def wait_for(predicate: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def worker_pids(gw: GatewayProcess, headers: dict[str, str] | None = None) -> list[int | None]:
    status, body = await fetch(gw.admin_url + "/status", headers=headers)
    assert status == 200, body
    return [w["pid"] if w["state"] == "ready" else None for w in json.loads(body)["workers"]]


def run_dir_of(worker_pid: int) -> Path:
    """The supervisor's private directory, read from a worker's command line."""
    with open(f"/proc/{worker_pid}/cmdline", "rb") as f:
        argv = f.read().decode().split("\0")
    return Path(argv[argv.index("--channel") + 1]).parent


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().split(") ", 1)[1].split()[1])


async def test_both_workers_serve_and_metrics_add_up_exactly(stub, gateway_factory):
    config = two_workers(stub.url)
    config["admin"] = {"token": ADMIN_TOKEN}
    gw = gateway_factory(config)
    supervisor = gw.proc.pid

    requests = 200
    statuses = await fetch_many(gw.url + "/items", requests)
    assert statuses == [200] * requests

    # The access log names the process that answered: both workers, both ours.
    async def logged() -> list[dict[str, Any]] | None:
        lines = gw.access_log()
        return lines if len(lines) >= requests else None

    lines = await wait_for(logged, what="the access log")
    served_by = {line["worker"] for line in lines}
    assert len(served_by) == 2, served_by
    assert supervisor not in served_by
    assert all(parent_of(pid) == supervisor for pid in served_by)

    # /metrics is the supervisor's merge: exactly the requests sent, across workers.
    status, text = await fetch(gw.admin_url + "/metrics", headers=AUTH)
    assert status == 200
    assert metric_total(text, "gateway_requests_total") == requests
    assert metric_total(text, "gateway_requests_total", route="main", code="200") == requests
    assert metric_total(text, "gateway_request_duration_seconds_count") == requests
    assert metric_total(text, "gateway_request_duration_seconds_bucket", le="+Inf") == requests
    assert metric_total(text, "gateway_upstream_requests_total") == requests
    assert "gateway_requests_created" not in text  # no single creation time for a merged series

    # The admin token guards the supervisor's endpoints too; /healthz stays open.
    for path in ("/metrics", "/status", "/readyz"):
        assert (await fetch(gw.admin_url + path))[0] == 401, path
    assert (await fetch(gw.admin_url + "/healthz"))[0] == 200
    assert (await fetch(gw.admin_url + "/readyz", headers=AUTH))[0] == 200
    pids = await worker_pids(gw, AUTH)
    assert sorted(pids) == sorted(served_by)

    # Workers do not bind the admin port: only the supervisor listens there.
    with pytest.raises(OSError):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", gw.admin_port))


async def test_a_killed_worker_is_restarted_and_the_port_keeps_answering(stub, gateway_factory):
    gw = gateway_factory(two_workers(stub.url))
    assert await fetch_many(gw.url + "/warm", 40) == [200] * 40
    before = metric_total((await fetch(gw.admin_url + "/metrics"))[1], "gateway_requests_total")
    assert before == 40
    victim, survivor = await worker_pids(gw)
    assert victim and survivor

    outcomes: list[str] = []
    killed_at: list[int] = []

    async def keep_asking() -> None:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                status, _ = await fetch(gw.url + "/loop")
                outcomes.append(str(status))
            except aiohttp.ClientConnectionError as exc:  # only the dead worker's connections
                outcomes.append(type(exc).__name__)
            await asyncio.sleep(0.005)

    loop_task = asyncio.ensure_future(keep_asking())
    await asyncio.sleep(0.5)
    killed_at.append(len(outcomes))
    os.kill(victim, signal.SIGKILL)
    await loop_task

    after_kill = outcomes[killed_at[0]:]
    assert set(outcomes) <= {"200", "ClientOSError", "ServerDisconnectedError", "ClientConnectorError"}, set(outcomes)
    assert len([o for o in after_kill if o != "200"]) <= 3, after_kill
    assert after_kill.count("200") >= 20  # the port kept answering through the restart

    async def replaced() -> list[int | None] | None:
        pids = await worker_pids(gw)
        return pids if all(pids) and victim not in pids and survivor in pids else None

    await wait_for(replaced, what="the killed worker's replacement")
    assert "worker 0 was killed by SIGKILL" in gw.log() or "worker 1 was killed by SIGKILL" in gw.log()
    assert (await fetch(gw.admin_url + "/readyz"))[0] == 200

    # The dead worker's counts are not lost from the merged counters (it was scraped
    # before it died), so the counter never goes backwards.
    text = (await fetch(gw.admin_url + "/metrics"))[1]
    assert metric_total(text, "gateway_requests_total") >= before + after_kill.count("200")
    assert await fetch_many(gw.url + "/again", 20) == [200] * 20


async def test_sighup_validates_once_then_every_worker_swaps(stub, gateway_factory):
    gw = gateway_factory(two_workers(stub.url, match={"path": "/old"}))

    gw.config_path.write_text("routes: [oops\n")
    gw.signal(signal.SIGHUP)

    async def refused() -> bool:
        text = (await fetch(gw.admin_url + "/metrics"))[1]
        return metric_total(text, "gateway_config_reloads_total", result="failure") == 1

    await wait_for(refused, what="the failure counter")
    assert "reload refused" in gw.log()
    assert await fetch_many(gw.url + "/old", 30) == [200] * 30

    # A worker restarted now starts with the configuration in force, not the bad file.
    first, _ = await worker_pids(gw)
    assert first is not None
    os.kill(first, signal.SIGKILL)

    async def restarted() -> bool:
        pids = await worker_pids(gw)
        return all(pids) and first not in pids

    await wait_for(restarted, what="the restart")
    assert await fetch_many(gw.url + "/old", 30) == [200] * 30

    new = two_workers(stub.url, match={"path": "/new"})
    new["server"] = {**gw.config["server"], **new["server"]}
    new["admin"] = gw.config["admin"]
    gw.config_path.write_text(yaml.safe_dump(new))
    gw.signal(signal.SIGHUP)

    async def swapped() -> bool:
        return await fetch_many(gw.url + "/new", 20) == [200] * 20

    await wait_for(swapped, what="every worker to serve the new route")
    assert await fetch_many(gw.url + "/new", 40) == [200] * 40
    assert await fetch_many(gw.url + "/old", 40) == [404] * 40

    async def both_served_new() -> bool:  # the access log is flushed every 200 ms
        return len({line["worker"] for line in gw.access_log() if line["path"] == "/new" and line["status"] == 200}) == 2

    await wait_for(both_served_new, timeout=3, what="both workers in the access log for /new")

    text = (await fetch(gw.admin_url + "/metrics"))[1]
    assert metric_total(text, "gateway_config_reloads_total", result="failure") == 1
    assert metric_total(text, "gateway_config_reloads_total", result="success") == 1


async def test_sigterm_lets_an_in_flight_request_finish_and_exits_0(make_stub, gateway_factory):
    upstream = await make_stub(slow_routes(2.0, "finished"))
    gw = gateway_factory(two_workers(upstream.url))
    pids = await worker_pids(gw)
    run_dir = run_dir_of(pids[0])
    pending = asyncio.ensure_future(fetch(gw.url + "/slow"))
    await asyncio.sleep(0.5)
    gw.signal(signal.SIGTERM)
    assert await pending == (200, "finished")
    code = await asyncio.get_running_loop().run_in_executor(None, gw.proc.wait, 15)
    assert code == 0, gw.log()
    assert not any(alive(pid) for pid in pids if pid)
    assert not run_dir.exists()


async def test_workers_on_the_command_line_override_the_file(stub, gateway_factory):
    config = simple_config(stub.url)
    config["server"] = {"workers": 1}
    gw = gateway_factory(config, args=["--workers", "2"])
    status, body = await fetch(gw.admin_url + "/healthz")
    assert status == 200 and '"workers": 2' in body
    assert len(await worker_pids(gw)) == 2

    config["server"] = {"workers": 2}
    single = gateway_factory(config, args=["--workers", "1"])
    status, body = await fetch(single.admin_url + "/status")
    assert status == 200 and "supervisor" not in json.loads(body)  # a single process


async def test_workers_exit_when_the_supervisor_is_killed(stub, tmp_path):
    gw = GatewayProcess(two_workers(stub.url), tmp_path).start()
    try:
        pids = [pid for pid in await worker_pids(gw) if pid]
        assert len(pids) == 2
        run_dir = run_dir_of(pids[0])
        assert run_dir.is_dir() and oct(run_dir.stat().st_mode & 0o777) == "0o700"
        gw.kill()  # SIGKILL: no chance to stop its workers

        async def gone() -> bool:
            return not any(alive(pid) for pid in pids)

        await wait_for(gone, timeout=10, what="orphaned workers to exit")
        assert not run_dir.exists()  # the last orphan out cleans up the private directory
    finally:
        gw.kill()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*gateway_command(), *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, 'server.workers: expected an integer >= 1 or "auto", got 0'),
        ("many", 'server.workers: expected an integer >= 1 or "auto", got \'many\''),
        (True, 'server.workers: expected an integer >= 1 or "auto", got True'),
    ],
)
def test_bad_workers_values_are_config_errors(tmp_path, value, message):
    config = simple_config("http://127.0.0.1:1")
    config["server"] = {"workers": value}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(config))
    for command in ("check", "run"):
        result = run_cli(command, "-c", str(path))
        assert result.returncode == 2, result
        assert message in result.stderr


@pytest.mark.parametrize("value", ["0", "many", "-1"])
def test_bad_workers_flags_are_usage_errors(tmp_path, value):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(simple_config("http://127.0.0.1:1")))
    result = run_cli("run", "-c", str(path), "--workers", value)
    assert result.returncode == 2
    assert "--workers: expected an integer >= 1 or \"auto\"" in result.stderr


def test_check_shows_the_worker_setting(tmp_path):
    config = simple_config("http://127.0.0.1:1")
    config["server"] = {"workers": "auto"}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert "workers: auto" in result.stdout


def test_a_taken_port_fails_the_start_with_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = two_workers("http://127.0.0.1:1")
        config["server"]["listen"] = f"127.0.0.1:{taken.getsockname()[1]}"
        config["admin"] = {"listen": f"127.0.0.1:{free_port()}"}
        path = tmp_path / "g.yaml"
        path.write_text(yaml.safe_dump(config))
        result = run_cli("run", "-c", str(path))
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
