"""The throttle stage: keys, classes, overrides, headers, 429 and 503 forms."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.config.store import StoreConfig
from gateway.exchange import EXCHANGE
from gateway.metrics import Metrics
from gateway.pipeline import StageDeps
from gateway.stages import throttle
from gateway.stages.throttle import caller_ip_key
from gateway.store import MemoryStore, Store
from gateway.store.redis import RedisStore
from tests.contract.conftest import FakeClock
from tests.unit.stages.stage_harness import Upstream, call, config_with, metric

JWT = {"jwt": {"algorithms": ["HS256"], "secret": "x" * 32}}


def build(
    *, route: dict[str, Any] | None = None, store: Store | None = None, **sections: Any
) -> tuple[Any, StageDeps, FakeClock]:
    if "throttle" in (route or {}) or "auth" in (route or {}):
        sections.setdefault("auth", JWT)
    config: GatewayConfig = config_with(route=route, **sections)
    clock = FakeClock()
    deps = StageDeps(config=config, metrics=Metrics(), upstreams={}, store=store or MemoryStore(clock=clock))
    return throttle.build(config.routes[0], deps), deps, clock


async def hit(stage: Any, *, subject: str | None = None, client_ip: str = "192.0.2.10") -> tuple[int, dict[str, str]]:
    """One request as ``subject`` (None: anonymous); the status and every header the
    edge would send (the stage's own are added by the edge on success)."""

    def as_subject(request: Any, ex: Any) -> Any:
        ex.subject = subject  # what the authenticate stage sets
        return stage(request, ex)

    response, ex = await call(as_subject, client_ip=client_ip)
    headers = dict(response.headers.items())
    headers.update(ex.extra_response_headers)
    return response.status, headers


@pytest.mark.parametrize(
    ("client_ip", "key"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::1", "::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unix-socket", "unix-socket"),
        ("not:an:address", "not:an:address"),
    ],
)
def test_caller_ip_key(client_ip: str, key: str) -> None:
    assert caller_ip_key(client_ip) == key


def test_not_in_the_chain_without_limits() -> None:
    assert build()[0] is None
    assert build(throttle={"anonymous": "5/minute"}, route={"throttle": False})[0] is None
    assert build(throttle={"burst": 5})[0] is None


async def test_anonymous_bucket_headers_and_429() -> None:
    stage, deps, _ = build(throttle={"anonymous": "3/minute"})
    answers = [await hit(stage) for _ in range(4)]
    assert [status for status, _ in answers] == [200, 200, 200, 429]
    assert [h["RateLimit-Remaining"] for _, h in answers] == ["2", "1", "0", "0"]
    assert {h["RateLimit-Limit"] for _, h in answers} == {"3"}
    assert [h["RateLimit-Reset"] for _, h in answers] == ["20", "40", "60", "60"]
    refused = answers[3][1]
    assert refused["Retry-After"] == "20" and refused["Cache-Control"] == "no-store"
    assert refused["Content-Type"] == "application/problem+json"
    assert metric(deps, "gateway_throttled_total", route="r", caller="anonymous") == 1
    assert metric(deps, "gateway_throttled_total", route="r", caller="authenticated") == 0


async def test_retry_after_is_at_least_one_second() -> None:
    stage, _, clock = build(throttle={"anonymous": "10/second"})
    for _ in range(10):
        await hit(stage)
    status, headers = await hit(stage)
    assert status == 429 and headers["Retry-After"] == "1" and headers["RateLimit-Reset"] == "1"
    clock.now += 0.1
    assert (await hit(stage))[0] == 200


async def test_clients_and_ipv6_networks_have_their_own_buckets() -> None:
    stage, _, _ = build(throttle={"anonymous": "1/minute"})
    assert (await hit(stage, client_ip="192.0.2.1"))[0] == 200
    assert (await hit(stage, client_ip="192.0.2.1"))[0] == 429
    assert (await hit(stage, client_ip="192.0.2.2"))[0] == 200
    assert (await hit(stage, client_ip="2001:db8::1"))[0] == 200
    assert (await hit(stage, client_ip="2001:db8::ffff:1"))[0] == 429  # same /64
    assert (await hit(stage, client_ip="2001:db8:0:1::1"))[0] == 200  # next /64


async def test_subjects_are_keyed_by_subject_not_ip() -> None:
    stage, deps, _ = build(throttle={"anonymous": "1/minute", "authenticated": "2/minute"}, auth=JWT)
    assert (await hit(stage, subject="alice", client_ip="192.0.2.1"))[0] == 200
    assert (await hit(stage, subject="alice", client_ip="192.0.2.2"))[0] == 200
    status, headers = await hit(stage, subject="alice", client_ip="192.0.2.3")
    assert status == 429 and headers["RateLimit-Limit"] == "2"
    assert (await hit(stage, subject="bob", client_ip="192.0.2.1"))[0] == 200
    # The anonymous bucket of that IP is untouched by authenticated traffic.
    assert (await hit(stage, client_ip="192.0.2.1"))[0] == 200
    assert metric(deps, "gateway_throttled_total", route="r", caller="authenticated") == 1


async def test_a_class_without_a_rate_passes_without_headers() -> None:
    stage, _, _ = build(route={"auth": "optional", "throttle": {"authenticated": "1/minute"}})
    for _ in range(5):
        status, headers = await hit(stage)
        assert status == 200 and "RateLimit-Limit" not in headers


async def test_route_overrides_beat_the_defaults_key_by_key() -> None:
    stage, _, _ = build(
        throttle={"anonymous": "100/minute", "authenticated": "100/minute", "burst": 50},
        route={"auth": "optional", "throttle": {"authenticated": "2/minute", "burst": 2}},
    )
    assert (await hit(stage, subject="alice"))[1]["RateLimit-Limit"] == "2"
    assert (await hit(stage))[1]["RateLimit-Limit"] == "2"  # the route's burst, the global anonymous rate


async def test_routes_have_separate_buckets() -> None:
    config = config_with(throttle={"anonymous": "1/minute"})
    store = MemoryStore(clock=FakeClock())
    deps = StageDeps(config=config, metrics=Metrics(), upstreams={}, store=store)
    other = config.routes[0].model_copy(update={"name": "other"})
    first, second = throttle.build(config.routes[0], deps), throttle.build(other, deps)
    assert (await hit(first))[0] == 200 and (await hit(first))[0] == 429
    assert (await hit(second))[0] == 200


async def test_refused_requests_never_reach_the_upstream() -> None:
    stage, _, _ = build(throttle={"anonymous": "1/minute"})
    upstream = Upstream()
    await call(stage, upstream=upstream)
    await call(stage, upstream=upstream)
    assert len(upstream.calls) == 1


async def test_deny_mode_answers_503_while_the_store_is_down() -> None:
    # Nothing listens on port 9 (discard): the start-up probe fails, the circuit opens.
    store = RedisStore(StoreConfig(kind="redis", url="redis://127.0.0.1:9/0", on_error="deny"), metrics=Metrics())
    await store.start()
    try:
        stage, _, _ = build(throttle={"anonymous": "5/minute"}, store=store)
        status, headers = await hit(stage)
        assert status == 503 and int(headers["Retry-After"]) >= 1
        assert "RateLimit-Limit" not in headers
    finally:
        await store.close()


def test_a_throttled_route_needs_a_store() -> None:
    config = config_with(throttle={"anonymous": "5/minute"})
    with pytest.raises(ValueError, match="no store"):
        throttle.build(config.routes[0], StageDeps(config=config, metrics=Metrics(), upstreams={}))
