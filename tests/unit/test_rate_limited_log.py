"""The sampled logger for attacker-driven events: bounded lines, nothing lost from the count."""

from __future__ import annotations

import logging

import pytest

from gateway.rate_limited_log import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sampled(caplog: pytest.LogCaptureFixture) -> tuple[RateLimitedLog, Clock]:
    caplog.set_level(logging.INFO, logger="test.sampled")
    clock = Clock()
    return RateLimitedLog(logging.getLogger("test.sampled"), interval=10.0, clock=clock), clock


def test_first_event_is_logged_then_one_line_per_interval_with_the_count(sampled, caplog):
    log, clock = sampled
    for i in range(1000):
        log.log("denied %s", f"10.0.0.{i % 250}")
    assert [r.getMessage() for r in caplog.records] == ["denied 10.0.0.0"]
    clock.now += 9.9
    log.log("denied %s", "a")
    assert len(caplog.records) == 1
    clock.now += 0.1
    log.log("denied %s", "b")
    assert caplog.records[-1].getMessage() == "denied b (and 1000 more suppressed)"
    clock.now += 60
    log.log("denied %s", "c")
    assert caplog.records[-1].getMessage() == "denied c"


@pytest.mark.parametrize(("events", "seconds", "at_most"), [(10_000, 0.0, 1), (10_000, 35.0, 5), (3, 100.0, 3)])
def test_lines_are_bounded_by_time_not_by_events(caplog, events, seconds, at_most):
    caplog.set_level(logging.INFO, logger="test.bounded")
    clock = Clock()
    log = RateLimitedLog(logging.getLogger("test.bounded"), interval=10.0, clock=clock)
    for _ in range(events):
        log.log("event")
        clock.now += seconds / events
    assert 1 <= len(caplog.records) <= at_most


def test_a_disabled_level_writes_nothing(caplog):
    caplog.set_level(logging.WARNING, logger="test.quiet")
    log = RateLimitedLog(logging.getLogger("test.quiet"), clock=Clock())
    log.log("event")
    assert caplog.records == []
