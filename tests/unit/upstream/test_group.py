"""Availability, passive ejection, the circuit and the retry budget of an upstream."""

import asyncio

import pytest

from gateway.config.upstream import UpstreamConfig
from gateway.metrics import Metrics
from gateway.upstream.group import Upstream


def upstream(n=3, **config):
    cfg = UpstreamConfig.model_validate({"targets": [f"http://127.0.0.1:{9100 + i}" for i in range(n)], **config})
    return Upstream("u", cfg, metrics=Metrics())


def gauge(up, target):
    return up.metrics.registry.get_sample_value(
        "gateway_upstream_target_healthy", {"upstream": "u", "target": target.label}
    )


async def test_consecutive_failures_eject_and_a_timer_readmits():
    up = upstream(passive={"failures": 2, "eject_for": "100ms"})
    a = up.targets[0]
    up.record_failure(a)
    assert a in up.available
    up.record_failure(a)
    assert a not in up.available and a.ejected and a.ejections == 1
    assert gauge(up, a) == 0
    await asyncio.sleep(0.2)
    assert a in up.available and not a.ejected and a.consecutive_failures == 0
    assert gauge(up, a) == 1
    await up.close()


async def test_a_success_resets_the_streak():
    up = upstream(passive={"failures": 2})
    a = up.targets[0]
    up.record_failure(a)
    up.record_success(a)
    up.record_failure(a)
    assert a in up.available
    await up.close()


async def test_the_last_available_target_is_never_ejected():
    up = upstream(2, passive={"failures": 1, "eject_for": "10s"})
    a, b = up.targets
    up.record_failure(a)
    assert up.available == (b,)
    up.record_failure(b)
    up.record_failure(b)
    assert up.available == (b,)
    await up.close()


async def test_passive_off():
    up = upstream(2, passive=False)
    for _ in range(10):
        up.record_failure(up.targets[0])
    assert len(up.available) == 2
    await up.close()


async def test_circuit_opens_when_every_target_fails_and_probes_once_a_second():
    up = upstream(1, passive={"failures": 2})
    (a,) = up.targets
    assert up.admits()
    up.record_failure(a)
    up.record_failure(a)
    assert up.admits()  # the first probe goes through
    assert not up.admits() and not up.admits()
    assert up.retry_after() == 1
    up.record_success(a)
    assert up.admits()
    await up.close()


async def test_active_verdicts_change_availability():
    up = upstream(2)
    a, b = up.targets
    up.set_healthy(a, False)
    assert up.available == (b,)
    up.set_healthy(b, False)
    assert up.available == ()
    assert up.retry_after() >= 1
    up.set_healthy(a, True)
    assert up.available == (a,)
    await up.close()


@pytest.mark.parametrize(("in_flight", "saved"), [(0, 10), (3, 10), (25, 25), (64, 64), (500, 500)])
async def test_the_budget_saves_one_retry_per_request_in_flight(in_flight, saved):
    """A target that dies breaks every request in flight on it at once: each gets its retry."""
    up = upstream(2)
    a, b = up.targets
    for _ in range(1000):  # a long quiet spell saves no more than the floor
        up.deposit()
    for i in range(in_flight):
        up.deposit()
        (a, b)[i % 2].in_flight += 1  # its first attempt starts
    spent = 0
    while up.take_retry():
        spent += 1
    assert spent == saved
    assert not up.can_retry()
    await up.close()


@pytest.mark.parametrize("in_flight", [0, 10, 50, 400])
async def test_retries_never_exceed_one_per_request_beyond_the_first_burst(in_flight):
    """Everything fails and every request would retry without end: the budget allows
    one retry per request, plus the one-off burst of one per request in flight."""
    up = upstream(2)
    up.targets[0].in_flight = in_flight
    spent = 0
    for _ in range(1000):
        up.deposit()
        while up.take_retry():
            spent += 1
    assert spent <= 1000 + max(10, in_flight + 1)
    before = spent
    for _ in range(100):
        up.deposit()
        while up.take_retry():
            spent += 1
    assert spent - before == 100
    await up.close()


async def test_an_ejection_is_recorded_with_its_reason_for_the_status_page():
    up = upstream(2, passive={"failures": 2, "eject_for": "30s"})
    a, b = up.targets
    up.record_failure(a, reason="connect_error")
    assert up.status()["targets"][0]["last_ejection"] is None
    up.record_failure(a, reason="HTTP 502")
    shown = up.status()["targets"][0]["last_ejection"]
    assert shown["reason"] == "2 consecutive failures, last: HTTP 502"
    assert shown["duration_s"] == 30.0 and 0 <= shown["age_s"] < 5
    assert up.status()["targets"][1]["last_ejection"] is None
    # Kept after readmission: why it left matters once it is back, too.
    up._readmit(a)
    assert up.status()["targets"][0]["last_ejection"]["reason"].endswith("HTTP 502")
    await up.close()


async def test_without_active_checks_there_is_no_last_check():
    up = upstream(1)
    assert up.status()["targets"][0]["last_check"] is None
    await up.close()
