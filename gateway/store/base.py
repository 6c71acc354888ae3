"""What every store promises, whatever keeps its state.

The throttle stage talks to this protocol only, so the memory and Redis stores are
interchangeable and one contract suite (tests/contract/) holds both to the same
arithmetic. A store is created once per process by the runtime and shared by every
route. The response cache picks its store by the same ``store:`` section but keeps
its own protocol and connections (``gateway/cache/store.py``, ``redis_store.py``):
a large cached value must never queue in front of a throttle decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = ["BucketPolicy", "Decision", "Store", "StoreError", "StoreUnavailable"]

ROUNDING = 1e-9
"""Slack when comparing token counts: ``6 s x (10/60 per s)`` is 0.9999999999999999
in floating point, and a caller who waited exactly long enough must get its token."""


@dataclass(frozen=True, slots=True)
class BucketPolicy:
    """One token bucket's shape: built once per route and caller class at start-up.

    ``capacity`` tokens at most (the burst); ``refill_per_second`` tokens come back
    each second up to the capacity. A request takes one token or is refused.
    """

    capacity: int
    refill_per_second: float

    def __post_init__(self) -> None:
        if self.capacity < 1 or not self.refill_per_second > 0:
            raise ValueError(f"a bucket needs capacity >= 1 and a positive refill rate, got {self}")


class Decision(NamedTuple):
    """The answer for one request (a tuple: it is built on every request)."""

    allowed: bool
    remaining: int
    """Whole tokens left after this request."""
    reset: float
    """Seconds until the bucket is full again (0 when it is full)."""
    retry_after: float
    """Seconds until the next token, when refused; 0 when allowed."""


class StoreError(Exception):
    """Base of the errors a store raises to its callers."""


class StoreUnavailable(StoreError):
    """The store cannot answer (``store.on_error: deny``): the caller refuses the request."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds until the store is tried again."""


class Store(Protocol):
    """Shared state for the gateway's stages. Created once per process, started by
    ``Runtime.start()`` and closed by ``Runtime.close()``."""

    kind: str

    async def start(self) -> None:
        """Connect (or try to: an unreachable store must not keep the gateway down)."""

    async def close(self) -> None: ...

    async def take(self, key: str, policy: BucketPolicy) -> Decision:
        """Take one token from the bucket ``key`` of shape ``policy``, atomically.

        Raises :class:`StoreUnavailable` only when the store cannot answer and its
        configuration says to refuse rather than guess.
        """

    def status(self) -> dict[str, Any]:
        """What ``/status`` shows about the store."""
