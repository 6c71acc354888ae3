"""One JSON line per request, buffered and flushed in the background.

Writing and flushing a line per request would cost a syscall on the hot path; the
lines are instead collected and written every 200 ms (and at shutdown), which keeps
``tail -f`` useful while costing one ``write`` per batch.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import IO, Any

__all__ = ["AccessLog"]


class AccessLog:
    def __init__(self, *, target: str) -> None:
        self._stream: IO[str] | None
        self._owned = False
        if target == "off":
            self._stream = None
        elif target == "stdout":
            self._stream = sys.stdout
        elif target == "stderr":
            self._stream = sys.stderr
        else:
            self._stream = open(target, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._owned = True
        self._buffer: list[str] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def start(self) -> None:
        if self._stream is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_periodically())

    def write(self, record: dict[str, Any]) -> None:
        record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        self._buffer.append(json.dumps(record, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        if self._buffer and self._stream is not None:
            lines, self._buffer = self._buffer, []
            try:
                self._stream.write("".join(lines))
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed or full log must never take requests down

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.flush()
        if self._owned and self._stream is not None:
            self._stream.close()
