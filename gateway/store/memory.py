"""Token buckets in this process's memory (``store.kind: memory``).

Exact within one process and free of I/O, so it is also what the Redis store falls
back to while Redis is unreachable (``on_error: local``). Each worker process has its
own, so with ``server.workers > 1`` a limit is enforced per process.

Keys are bounded: a flood of distinct callers (a botnet, or one network cycling
through the 65536 /64s of its IPv6 /48) must not grow memory without limit. Buckets are kept in least-recently-used order and the idlest is
dropped when the bound is reached. Dropping a bucket is the same as finding it full,
which an idle bucket almost always is: the only caller who gains from an eviction is
one who has been idle longer than every one of ``max_keys`` others.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from gateway.store.base import ROUNDING, BucketPolicy, Decision

__all__ = ["MemoryStore", "DEFAULT_MAX_KEYS"]

DEFAULT_MAX_KEYS = 100_000
"""About 30 MB of buckets at most; far more callers than one process can serve at once."""


class MemoryStore:
    kind = "memory"

    __slots__ = ("_buckets", "_max_keys", "_clock", "evictions")

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        # key -> [tokens, stamp]: a list is updated in place, no allocation per request.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock
        self.evictions = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._buckets.clear()

    async def take(self, key: str, policy: BucketPolicy) -> Decision:
        return self.take_now(key, policy)

    def take_now(self, key: str, policy: BucketPolicy) -> Decision:
        """:meth:`take` without the coroutine, for callers that are already in one."""
        now = self._clock()
        capacity = policy.capacity
        rate = policy.refill_per_second
        buckets = self._buckets
        state = buckets.get(key)
        if state is None:
            if len(buckets) >= self._max_keys:
                buckets.popitem(last=False)
                self.evictions += 1
            tokens = float(capacity)
            state = buckets[key] = [tokens, now]
        else:
            buckets.move_to_end(key)
            tokens = state[0]
            elapsed = now - state[1]
            if elapsed > 0:  # a clock that stood still (or a test's) adds nothing
                tokens = min(capacity, tokens + elapsed * rate)
        if tokens >= 1.0 - ROUNDING:
            tokens = max(0.0, tokens - 1.0)
            state[0] = tokens
            state[1] = now
            return Decision(True, int(tokens + ROUNDING), (capacity - tokens) / rate, 0.0)
        # Refused: nothing is written; the next call computes the refill from the
        # same stamp and gets the same answer plus the time that passed since.
        return Decision(False, 0, (capacity - tokens) / rate, (1.0 - tokens) / rate)

    def __len__(self) -> int:
        return len(self._buckets)

    def status(self) -> dict[str, Any]:
        # In-process: always reachable, never fails; the keys keep /status one shape.
        return {"kind": self.kind, "reachable": True, "last_error": None, "buckets": len(self._buckets),
                "max_buckets": self._max_keys, "evictions": self.evictions}
