"""What the kubelet runs in the pods of deploy/kubernetes, run here for real: the
gateway container's readiness and liveness probes against a gateway started as that
container (tests/kubernetes_pod.py), and the Redis container's command line against
a real redis-server. The offline checks of the same manifests are in
tests/unit/test_kubernetes.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
import aiohttp
import pytest
import redis

from tests.integration.conftest import StubUpstream, start_stub
from tests.integration.gateway_process import GatewayProcess, free_port
from tests.kubernetes_pod import PodGateways, container_of
from tests.redis_server import RedisServer, redis_binary

ADMIN_TOKEN = "pod-test-admin-token"


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[PodGateways]:
    gateways = PodGateways(tmp_path, admin_token=ADMIN_TOKEN)
    yield gateways
    gateways.stop_all()


def readiness_probe(pods: PodGateways, gateway: GatewayProcess, token: str) -> subprocess.CompletedProcess[str]:
    """The probe's command as the manifest writes it, with two local substitutions:
    this interpreter for the image's ``python``, and the gateway's loopback admin
    port for 9901 (tests/unit/test_kubernetes.py checks 9901 is admin.listen's)."""
    command = list(pods.container["readinessProbe"]["exec"]["command"])
    assert command[0] == "python" and command[-1].count("127.0.0.1:9901") == 1
    command[0] = sys.executable
    command[-1] = command[-1].replace("127.0.0.1:9901", f"127.0.0.1:{gateway.admin_port}")
    timeout = pods.container["readinessProbe"]["timeoutSeconds"]
    # The kubelet gives an exec probe the container's environment; the one that matters is the token.
    return subprocess.run(command, env={"ADMIN_TOKEN": token}, capture_output=True, text=True, timeout=timeout * 10)


async def liveness(pods: PodGateways, gateway: GatewayProcess) -> int:
    probe = pods.container["livenessProbe"]["httpGet"]
    assert probe["port"] == "admin"
    async with aiohttp.ClientSession() as session:  # the kubelet sends no Authorization
        async with session.get(f"{gateway.admin_url}{probe['path']}") as response:
            return response.status


async def test_the_probes_tell_ready_from_live(pods: PodGateways, make_redis: Callable[[], RedisServer]) -> None:
    stub: StubUpstream = await start_stub()
    stopped = False
    try:
        upstreams = {
            "menu": {
                "targets": [stub.url],
                # The pod's checks run every 5 s; a fast interval only shortens the wait.
                "health_check": {"path": "/healthz", "interval": "200ms", "timeout": "1s", "unhealthy_after": 2},
            }
        }
        [gateway] = pods.start(upstreams=upstreams, env={"REDIS_URL": make_redis().url})

        ready = readiness_probe(pods, gateway, ADMIN_TOKEN)
        assert ready.returncode == 0, ready.stderr
        wrong = readiness_probe(pods, gateway, "not-the-token")
        assert wrong.returncode == 1 and "/readyz answered 401" in wrong.stderr
        empty = readiness_probe(pods, gateway, "")
        assert empty.returncode == 1 and "ADMIN_TOKEN is empty" in empty.stderr
        assert await liveness(pods, gateway) == 200

        await stub.runner.cleanup()  # the backend goes away: not ready, still alive
        stopped = True
        deadline = time.monotonic() + 20
        while (probe := readiness_probe(pods, gateway, ADMIN_TOKEN)).returncode == 0:
            assert time.monotonic() < deadline, "the readiness probe never failed with the upstream down"
            await asyncio.sleep(0.2)
        assert probe.returncode == 1
        assert "/readyz answered 503" in probe.stderr and "upstream 'menu' has no healthy target" in probe.stderr
        assert await liveness(pods, gateway) == 200
    finally:
        if not stopped:
            await stub.runner.cleanup()


def test_a_probe_of_a_gateway_that_is_not_listening_fails(pods: PodGateways) -> None:
    """Before the gateway listens (or after it exits) the probe fails, not hangs."""

    class Nowhere:
        admin_port = free_port()

    probe = readiness_probe(pods, Nowhere(), ADMIN_TOKEN)  # type: ignore[arg-type]
    assert probe.returncode == 1 and "/readyz:" in probe.stderr and "refused" in probe.stderr


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_the_redis_command_line_runs_as_written(pods: PodGateways, tmp_path: Path) -> None:
    """redis.yaml's arguments, given to a real redis-server (only the port, bind
    address and directory are added for loopback), mean what the comments say."""
    _, spec = container_of(pods.rendered, "StatefulSet", "gateway-redis", "redis")
    command: list[str] = [*spec["command"], *spec.get("args", [])]
    assert command[0] == "redis-server"
    port = free_port()
    argv = [redis_binary(), *command[1:], "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port, socket_timeout=2, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)
        settings: dict[str, str] = {}
        for name in ("save", "appendonly", "protected-mode", "maxmemory", "maxmemory-policy"):
            settings.update({str(k): str(v) for k, v in client.config_get(name).items()})
        assert settings == {
            "save": "",
            "appendonly": "no",
            "protected-mode": "no",
            "maxmemory": str(192 * 1024 * 1024),
            "maxmemory-policy": "allkeys-lru",
        }
        # Redis must evict before the kubelet OOM-kills it: room for its own overhead.
        limit = memory_bytes(spec["resources"]["limits"]["memory"])
        assert int(settings["maxmemory"]) <= limit * 0.8
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
