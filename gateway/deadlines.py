"""Coarse timeouts: one sweep for every waiter of a loop, instead of a timer each.

Every upstream request waits for its response head with a timeout. A timer per
request (``loop.call_later`` + ``cancel``) costs a timer-heap insert and removal on
every request, almost all of which finish long before their deadline. Here a waiter
is one dict entry; a single callback, scheduled only while the dict is not empty,
fails the ones past their deadline. A deadline is met late by at most the sweep
interval (``_INTERVAL``), which no timeout worth configuring notices.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

__all__ = ["Deadlines", "deadlines_for"]

_INTERVAL = 0.05


class Deadlines:
    __slots__ = ("_loop", "_due", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[asyncio.Future[object], tuple[float, Callable[[], BaseException]]] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(self, waiter: asyncio.Future[object], timeout: float, error: Callable[[], BaseException]) -> None:
        """Fail ``waiter`` with ``error()`` if it is not done ``timeout`` seconds from now."""
        self._due[waiter] = (self._loop.time() + timeout, error)
        if self._handle is None:
            self._handle = self._loop.call_later(min(_INTERVAL, timeout), self._sweep)

    def discard(self, waiter: asyncio.Future[object]) -> None:
        self._due.pop(waiter, None)

    def __len__(self) -> int:
        return len(self._due)

    def _sweep(self) -> None:
        self._handle = None
        now = self._loop.time()
        due = self._due
        late = [waiter for waiter, (deadline, _) in due.items() if deadline <= now]
        for waiter in late:
            _, error = due.pop(waiter)
            if not waiter.done():
                waiter.set_exception(error())
        if due:
            self._handle = self._loop.call_later(_INTERVAL, self._sweep)


_PER_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = weakref.WeakKeyDictionary()


def deadlines_for(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The loop's one :class:`Deadlines`."""
    deadlines = _PER_LOOP.get(loop)
    if deadlines is None:
        deadlines = _PER_LOOP[loop] = Deadlines(loop)
    return deadlines
