"""Many instances, one limit: the shape deploy/kubernetes describes, without
Kubernetes. Three ``gateway run`` processes started as the Deployment's container
(its config, key and environment: tests/kubernetes_pod.py) share one redis-server
in place of redis.yaml's; the test client is the Service, spreading requests
round-robin over the instances it considers endpoints.

- One limit: the throttle is exact across the instances, as if there were one.
- A pod going away: the instance leaves the client's rotation (the endpoints
  controller's part, which the preStop pause gives time to spread), then gets
  SIGTERM. Every request it had accepted completes with 200; new connections go to
  the others; a client still aiming at it fails to connect (safe to retry
  elsewhere), never gets a reset or a 5xx after being accepted.

- One cache: an entry filled through one instance is a hit through the others, and
  a write through any instance invalidates it for all of them.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from tests.integration.conftest import StubUpstream
from tests.integration.gateway_process import GatewayProcess
from tests.kubernetes_pod import PodGateways
from tests.redis_server import RedisServer

ADMIN_TOKEN = "many-instances-admin-token"
INSTANCES = 3
SLOW_SECONDS = 3.0
"""How long the upstream takes on /slow: long enough that requests are still in
flight on the terminated instance when it gets SIGTERM, on a loaded machine too."""


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[PodGateways]:
    gateways = PodGateways(tmp_path, admin_token=ADMIN_TOKEN)
    yield gateways
    gateways.stop_all()


def slow_upstream(app: web.Application) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW_SECONDS)
        return web.Response(text=request.query["id"])

    app.router.add_get("/slow", slow)


def start_instances(pods: PodGateways, stub: StubUpstream, redis_server: RedisServer) -> list[GatewayProcess]:
    upstreams = {"app": {"targets": [stub.url]}}
    routes = [
        {"name": "limited", "match": {"path": "/limited"}, "upstream": "app", "throttle": {"anonymous": "10/minute"}},
        {"name": "slow", "match": {"path": "/slow"}, "upstream": "app", "throttle": False},
        {"name": "menu", "match": {"path": "/menu"}, "upstream": "app", "throttle": False, "cache": {"ttl": "1h"}},
    ]
    # The pod's store, with a longer bound per Redis call: on a loaded test machine a
    # 50 ms timeout can pass, and the fallback to each process's own buckets
    # (on_error: local) would then let more than the limit through.
    store = {**pods.section("store"), "timeout": "2s"}
    return pods.start(INSTANCES, env={"REDIS_URL": redis_server.url}, upstreams=upstreams, routes=routes, store=store)


async def metric_sum(session: aiohttp.ClientSession, gateways: list[GatewayProcess], prefix: str) -> float:
    total = 0.0
    for gateway in gateways:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with session.get(gateway.admin_url + "/metrics", headers=headers) as response:
            assert response.status == 200
            text = await response.text()
        total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))
    return total


async def test_a_throttle_limit_is_exact_across_instances(
    pods: PodGateways, make_stub: Callable[..., Awaitable[StubUpstream]], make_redis: Callable[[], RedisServer]
) -> None:
    stub = await make_stub()
    gateways = start_instances(pods, stub, make_redis())

    async def one(session: aiohttp.ClientSession, gateway: GatewayProcess) -> tuple[GatewayProcess, int]:
        async with session.get(gateway.url + "/limited") as response:
            await response.read()
            return gateway, response.status

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        answers = await asyncio.gather(*(one(session, gateways[n % INSTANCES]) for n in range(40)))
        throttled = await metric_sum(session, gateways, 'gateway_throttled_total{caller="anonymous",route="limited"}')

    assert sorted(status for _, status in answers) == [200] * 10 + [429] * 30
    assert len([r for r in stub.requests if r["path_qs"] == "/limited"]) == 10
    # Each instance refused some: none counted on its own (each would have let 10 through).
    assert all(any(g is gateway and s == 429 for g, s in answers) for gateway in gateways)
    assert throttled == 30


async def test_an_entry_filled_through_one_instance_is_a_hit_on_the_others(
    pods: PodGateways, make_stub: Callable[..., Awaitable[StubUpstream]], make_redis: Callable[[], RedisServer]
) -> None:
    stub = await make_stub()
    gateways = start_instances(pods, stub, make_redis())
    host = {"Host": "menu.example"}  # the host is in the key: every instance must see the same one

    async def x_cache(session: aiohttp.ClientSession, gateway: GatewayProcess) -> str:
        async with session.get(gateway.url + "/menu?page=1", headers=host) as response:
            assert response.status == 200
            await response.read()
            return response.headers["X-Cache"]

    def upstream_reads() -> int:
        return len([r for r in stub.requests if r["method"] == "GET" and r["path_qs"] == "/menu?page=1"])

    async with aiohttp.ClientSession() as session:
        assert await x_cache(session, gateways[0]) == "MISS"
        assert [await x_cache(session, g) for g in gateways] == ["HIT"] * INSTANCES
        assert upstream_reads() == 1
        async with session.post(gateways[2].url + "/menu", headers=host, data=b"{}") as response:
            assert response.status == 200
        assert await x_cache(session, gateways[1]) == "MISS"  # invalidated for every instance
        assert [await x_cache(session, g) for g in gateways] == ["HIT"] * INSTANCES
    assert upstream_reads() == 2


@dataclass
class Sent:
    id: int
    gateway: GatewayProcess
    task: asyncio.Task[int | str]
    after_sigterm: bool


async def get_slow(session: aiohttp.ClientSession, gateway: GatewayProcess, request_id: int) -> int | str:
    """The status, ``"connect failed"``, or the name of any other failure (a reset,
    a disconnect after the request was accepted: what must never happen)."""
    try:
        async with session.get(f"{gateway.url}/slow?id={request_id}") as response:
            await response.read()
            return response.status
    except aiohttp.ClientConnectorError:
        return "connect failed"
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


def refuses_connections(port: int) -> bool:
    """A bare connect, closed at once: it sends no request, so it loses none."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


async def test_an_instance_terminated_mid_load_loses_no_accepted_request(
    pods: PodGateways, make_stub: Callable[..., Awaitable[StubUpstream]], make_redis: Callable[[], RedisServer]
) -> None:
    stub = await make_stub(slow_upstream)
    gateways = start_instances(pods, stub, make_redis())
    victim = gateways[0]
    rotation = list(gateways)  # the Service's endpoints, as the client sees them
    sent: list[Sent] = []
    sigterm_sent = False

    def reached_upstream() -> Counter[int]:
        return Counter(int(parse_qs(urlsplit(r["path_qs"]).query)["id"][0]) for r in stub.requests)

    # A fresh connection per request: each one is accepted (or refused) on its own.
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        def send(gateway: GatewayProcess) -> None:
            request_id = len(sent)
            task = asyncio.ensure_future(get_slow(session, gateway, request_id))
            sent.append(Sent(request_id, gateway, task, sigterm_sent))

        for n in range(3 * INSTANCES):  # load on all three
            send(rotation[n % len(rotation)])
            await asyncio.sleep(0.05)

        # The pod is terminating: it leaves the endpoints first ...
        rotation.remove(victim)
        on_victim = {s.id for s in sent if s.gateway is victim}
        # ... and by the time SIGTERM comes, everything sent its way has been accepted
        # (it reached the upstream through it): the preStop pause's job in a cluster.
        await wait_until(lambda: on_victim <= set(reached_upstream()), "the victim forwarded its requests")
        in_flight_at_sigterm = [s for s in sent if s.gateway is victim and not s.task.done()]
        victim.signal(signal.SIGTERM)
        sigterm_sent = True

        # A client that has not heard yet: once the listener is closed it is refused
        # at connect, while the victim is still draining what it accepted.
        await wait_until(lambda: refuses_connections(victim.port), "the victim stopped accepting")
        assert victim.proc is not None and victim.proc.poll() is None, "the drain should still be running"
        for _ in range(3):
            send(victim)

        for n in range(2 * len(rotation)):  # load goes on, on the others
            send(rotation[n % len(rotation)])
            await asyncio.sleep(0.05)

        outcomes = {s.id: await s.task for s in sent}

    assert victim.proc is not None
    assert await asyncio.get_running_loop().run_in_executor(None, victim.proc.wait, 30) == 0
    assert in_flight_at_sigterm, "no request was in flight on the victim at SIGTERM: the test proved nothing"

    stale = {s.id for s in sent if s.gateway is victim and s.after_sigterm}
    assert {outcomes[i] for i in stale} == {"connect failed"}
    others = {i: outcome for i, outcome in outcomes.items() if i not in stale}
    assert set(others.values()) == {200}, {i: o for i, o in others.items() if o != 200}
    assert any(s.after_sigterm and s.gateway is not victim for s in sent)
    # Each answered request reached the upstream exactly once; refused ones never did.
    assert reached_upstream() == Counter(others.keys())
    assert "stopping: draining in-flight requests" in victim.log()
