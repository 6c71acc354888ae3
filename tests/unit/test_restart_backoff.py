"""Restart delays: at once after a long life, doubling in a crash loop, capped."""

from __future__ import annotations

import pytest

from gateway.restart_backoff import RestartBackoff


@pytest.mark.parametrize(
    ("lifetimes", "delays"),
    [
        ([3600.0], [0.0]),  # a one-off crash: restart at once
        ([0.2, 0.2, 0.2, 0.2], [0.5, 1.0, 2.0, 4.0]),  # a crash loop doubles
        ([0.1] * 10, [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]),  # capped at max_delay
        ([0.2, 0.2, 60.0, 0.2], [0.5, 1.0, 0.0, 0.5]),  # a stable run resets the count
        ([10.0, 9.99], [0.0, 0.5]),  # stable_after is inclusive
    ],
)
def test_delays(lifetimes, delays):
    backoff = RestartBackoff(initial=0.5, max_delay=30.0, stable_after=10.0)
    assert [backoff.after_exit(lived) for lived in lifetimes] == delays


def test_a_very_long_crash_loop_does_not_overflow():
    backoff = RestartBackoff()
    for _ in range(5000):
        delay = backoff.after_exit(0.0)
    assert delay == backoff.max_delay


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"initial": 5, "max_delay": 1}, {"stable_after": 0}]
)
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        RestartBackoff(**kwargs)
