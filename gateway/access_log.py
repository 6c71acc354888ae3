"""One JSON line per request, buffered and flushed in the background.

Writing and flushing a line per request would cost a syscall on the hot path; the
lines are instead collected and written every 200 ms (and at shutdown), which keeps
``tail -f`` useful while costing one ``write`` per batch.

With ``server.workers`` > 1 every worker writes to the same stdout. A file opened
for appending takes each write whole, but a pipe or socket (docker, systemd) only
promises that for writes of up to PIPE_BUF bytes; so on those a batch is written in
chunks of whole lines no larger than that, and lines from two workers never tear.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
from typing import IO, Any

from gateway.background import cancel_and_wait

__all__ = ["AccessLog", "AccessLogError"]

_PIPE_BUF = 4096  # POSIX minimum is 512; Linux's is 4096


def _atomic_write_limit(stream: IO[str]) -> int | None:
    """None for a regular file (appends are whole), else PIPE_BUF."""
    try:
        return None if stat.S_ISREG(os.fstat(stream.fileno()).st_mode) else _PIPE_BUF
    except (OSError, ValueError, AttributeError):  # no real fd (a test's capture): be safe
        return _PIPE_BUF


class AccessLogError(RuntimeError):
    """The access log file cannot be opened (a directory that vanished, permissions)."""


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
            try:
                self._stream = open(target, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise AccessLogError(f"cannot open the access log {target}: {exc.strerror or exc}") from None
            self._owned = True
        self._write_limit = _atomic_write_limit(self._stream) if self._stream is not None else None
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
                if self._write_limit is None:
                    self._stream.write("".join(lines))
                else:
                    self._write_in_chunks(lines, self._write_limit)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed or full log must never take requests down

    def _write_in_chunks(self, lines: list[str], limit: int) -> None:
        assert self._stream is not None
        chunk: list[str] = []
        size = 0
        for line in lines:  # ASCII (json.dumps escapes the rest), so len() is bytes
            if chunk and size + len(line) > limit:
                self._stream.write("".join(chunk))
                self._stream.flush()
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._stream.write("".join(chunk))

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.flush()

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        self.flush()
        if self._owned and self._stream is not None:
            self._stream.close()
