"""Invalidation generations: O(1) invalidation of every variant of a path.

A write to ``/api/menu-items`` must drop every cached variant of that path (each
query string, each ``vary`` value, each ``per_user`` subject) without scanning the
cache. Each path has a generation counter; an entry records the generation of its
path when its upstream request was sent, and is served only while that is still the
path's generation. Invalidating is one increment; the orphaned entries age out of
the LRU (memory) or their TTL (Redis). Recording the generation *before* the fetch
closes the race where a write lands while a stale answer is in flight: that answer
is stored under a generation that is already over.

The counters live in a fixed table indexed by a hash of the path, so memory is
bounded whatever the traffic; two paths sharing a slot only ever cause an extra
miss, never a stale hit. With ``workers`` > 1 the table is a file the supervisor
creates in its private run directory and every worker maps (``mmap``), so a write
answered by one worker invalidates the entries of all of them (with the memory store
each worker has its own entries but they share these counters). A lost update
between two processes incrementing one slot at once still changes its value, which
is all an invalidation needs.
"""

from __future__ import annotations

import mmap
import zlib
from pathlib import Path

__all__ = ["Generations", "SLOTS", "GENERATIONS_FILE"]

GENERATIONS_FILE = "cache-generations"
"""Its name in the supervisor's run directory, beside the workers' channels."""

SLOTS = 1 << 16
_WIDTH = 8  # one unsigned 64-bit counter per slot


class Generations:
    __slots__ = ("_map", "_table", "file")

    def __init__(self, file: Path | None = None) -> None:
        self.file = file
        size = SLOTS * _WIDTH
        if file is None:
            self._map = mmap.mmap(-1, size)
        else:
            with open(file, "a+b") as handle:
                if handle.seek(0, 2) < size:
                    handle.truncate(size)
                self._map = mmap.mmap(handle.fileno(), size)
        self._table = memoryview(self._map).cast("Q")

    @staticmethod
    def create_file(file: Path) -> None:
        """The supervisor's: a zeroed table for its workers to share."""
        with open(file, "wb") as handle:
            handle.truncate(SLOTS * _WIDTH)

    @staticmethod
    def _slot(path: str) -> int:
        # crc32, not hash(): every worker must find a path in the same slot, and
        # Python's str hash is salted per process.
        return zlib.crc32(path.encode("utf-8", "surrogateescape")) & (SLOTS - 1)

    def of(self, path: str) -> int:
        return self._table[self._slot(path)]

    def bump(self, path: str) -> None:
        slot = self._slot(path)
        self._table[slot] = (self._table[slot] + 1) & 0xFFFF_FFFF_FFFF_FFFF

    def close(self) -> None:
        self._table.release()
        self._map.close()
