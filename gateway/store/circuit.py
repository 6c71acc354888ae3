"""A circuit breaker for a remote store: an outage costs one timeout per probe, not
one per request.

Closed (the normal state), every call goes to the store. After a failure the circuit
opens: calls skip the store (the caller applies ``store.on_error`` at once) until the
probe time, when exactly one call is let through. Its success closes the circuit
again -- so a store that comes back is noticed within one probe interval, without a
restart -- and its failure pushes the next probe one interval further.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Circuit", "PROBE_INTERVAL"]

PROBE_INTERVAL = 1.0
"""Seconds between probes of a store that failed: short enough that limits are
exact again a second after Redis is back, long enough that a dead Redis costs the
gateway one timeout per second, not one per request."""


class Circuit:
    __slots__ = ("_interval", "_clock", "_open", "_probe_at", "failures")

    def __init__(self, *, interval: float = PROBE_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._open = False
        self._probe_at = 0.0
        self.failures = 0
        """Calls that failed since the process started (for /status)."""

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def is_open(self) -> bool:
        return self._open

    def allows(self) -> bool:
        """May this call go to the store? When open, True once per probe interval."""
        if not self._open:
            return True
        now = self._clock()
        if now < self._probe_at:
            return False
        # The next probe is due an interval from now whatever becomes of this one,
        # so a probe that never reports back (its request cancelled) cannot wedge
        # the circuit open.
        self._probe_at = now + self._interval
        return True

    def succeeded(self) -> None:
        self._open = False

    def failed(self) -> None:
        self.failures += 1
        self._open = True
        self._probe_at = self._clock() + self._interval

    def retry_after(self) -> float:
        """Seconds until the next probe (0 when closed)."""
        return max(0.0, self._probe_at - self._clock()) if self._open else 0.0
