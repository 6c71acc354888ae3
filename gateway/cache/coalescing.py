"""Concurrent misses for one key make one upstream request (per process, and with a
shared store, per cluster of instances).

The first request for a key that finds no usable entry leads: it fetches, and when
its answer has been stored (or found unstorable) every request that arrived
meanwhile is woken with the entry (or ``None``, and then fetches for itself, as
Varnish's hit-for-miss does). A leader that fails or is cancelled wakes its
followers with ``None`` too, so nobody waits on a request that will never finish.
Followers wait at most ``wait`` seconds (the upstream's response timeout).
"""

from __future__ import annotations

import asyncio
import contextlib

from gateway.cache.entry import Entry

__all__ = ["Coalescer"]


class Coalescer:
    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[bytes, asyncio.Future[Entry | None]] = {}

    def follow(self, variant: bytes) -> asyncio.Future[Entry | None] | None:
        """The flight to wait for, or None: then the caller leads (see :meth:`lead`)."""
        return self._flights.get(variant)

    def lead(self, variant: bytes) -> None:
        self._flights[variant] = asyncio.get_running_loop().create_future()

    def land(self, variant: bytes, entry: Entry | None) -> None:
        """The leader is done: wake the followers (``None``: fetch for yourselves)."""
        flight = self._flights.pop(variant, None)
        if flight is not None and not flight.done():
            flight.set_result(entry)

    @staticmethod
    async def wait(flight: asyncio.Future[Entry | None], seconds: float) -> Entry | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                return await asyncio.shield(flight)
        return None

    def __len__(self) -> int:
        return len(self._flights)
