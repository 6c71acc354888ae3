"""A log line per kind of event at most once per interval, with a count of the rest.

For events an attacker can cause at will (firewall denies, requests the HTTP parser
refuses): one synchronous line per event would let a flood fill the disk and stall
the event loop on writes. Every event is still counted in the metrics; the log only
keeps a sample, saying how many it left out (``(and 41 more suppressed)``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Writes the first event, then at most one line per ``interval`` seconds."""

    __slots__ = ("_logger", "_level", "_interval", "_clock", "_next", "_suppressed")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        level: int = logging.INFO,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._suppressed = 0

    def log(self, message: str, *args: object) -> None:
        """Log ``message % args`` unless a line was written less than ``interval`` ago."""
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self._interval
        suppressed, self._suppressed = self._suppressed, 0
        if not self._logger.isEnabledFor(self._level):
            return
        if suppressed:
            self._logger.log(self._level, message + " (and %d more suppressed)", *args, suppressed)
        else:
            self._logger.log(self._level, message, *args)
