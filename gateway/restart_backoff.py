"""How long the supervisor waits before restarting a worker that died.

A worker that served for a while and then crashed is restarted at once: it was a
one-off (an OOM kill, a bug hit by one request), and its share of the port should
come back quickly. A worker that dies soon after it started is in a crash loop (a
port taken by a stranger, a key file gone, a bug hit at start-up); restarting it at
once would spin a core on interpreter start-ups and flood the log. Those waits
double from ``initial`` up to ``max_delay``, and the count resets once a worker
stays up for ``stable_after`` seconds.
"""

from __future__ import annotations

__all__ = ["RestartBackoff"]


class RestartBackoff:
    """One per worker slot; not shared, so one crashing slot does not slow the others."""

    def __init__(self, *, initial: float = 0.5, max_delay: float = 30.0, stable_after: float = 10.0) -> None:
        if initial <= 0 or max_delay < initial or stable_after <= 0:
            raise ValueError("expected 0 < initial <= max_delay and stable_after > 0")
        self.initial = initial
        self.max_delay = max_delay
        self.stable_after = stable_after
        self.failures = 0
        """Consecutive exits that came sooner than ``stable_after``."""

    def after_exit(self, lived: float) -> float:
        """Seconds to wait before the next start of a worker that ran ``lived`` seconds."""
        if lived >= self.stable_after:
            self.failures = 0
            return 0.0
        self.failures += 1
        # Cap the exponent too: 2.0 ** 2000 overflows a float.
        return min(self.max_delay, self.initial * 2.0 ** min(self.failures - 1, 32))
