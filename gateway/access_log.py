"""One JSON line per request, recorded cheaply and written off the request path.

A dict, ``json.dumps`` and ``strftime`` per request were a measurable share of the
gateway's per-request CPU (issue 10), and operators run with the access log on. So
the request path only appends a tuple of the line's values (:meth:`AccessLog.record`),
with the time as a string made once per second and taken when the request finished.
Every 200 ms (and at shutdown) a background task turns the tuples into JSON lines from
one precompiled template, and a writer thread hands them to the log in one write
(chunks of whole lines on a pipe, below).

The write has its own thread so that a log which stops taking data (a stalled pipe
to docker or systemd, a full or hung disk) never stalls the event loop, and with it
every request. What waits meanwhile is bounded: at most ``MAX_BACKLOG`` bytes of
formatted lines (16 MiB, some 60 000 typical lines) and at most ``MAX_RECORDS``
tuples between two flushes. Lines beyond either, and lines a failed write lost, are
dropped and counted; a warning gives the count at most once per 10 s, and once more at
shutdown.

With ``server.workers`` > 1 every worker writes to the same stdout. A file opened
for appending takes each write whole, but a pipe or socket (docker, systemd) only
promises that for writes of up to PIPE_BUF bytes; so on those a batch is written in
chunks of whole lines no larger than that, and lines from two workers never tear.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from json.encoder import encode_basestring_ascii
from typing import IO, Any

from gateway.background import cancel_and_wait
from gateway.rate_limited_log import RateLimitedLog

__all__ = ["AccessLog", "AccessLogError", "FLUSH_INTERVAL", "MAX_BACKLOG", "MAX_RECORDS"]

log = logging.getLogger("gateway.access_log")

FLUSH_INTERVAL = 0.2
"""Seconds between background flushes: ``tail -f`` stays live, one write per batch."""
MAX_RECORDS = 100_000
"""Requests recorded between two flushes, at most (a flush every 200 ms empties them)."""
MAX_BACKLOG = 16 * 1024 * 1024
"""Bytes of formatted lines waiting for a log that does not keep up, at most."""

_PIPE_BUF = 4096  # POSIX minimum is 512; Linux's is 4096

_Record = tuple[Any, ...]
"""The ten values of :meth:`AccessLog.record` and the time string."""


def _atomic_write_limit(stream: IO[str]) -> int | None:
    """None for a regular file (appends are whole), else PIPE_BUF."""
    try:
        return None if stat.S_ISREG(os.fstat(stream.fileno()).st_mode) else _PIPE_BUF
    except (OSError, ValueError, AttributeError):  # no real fd (a test's capture): be safe
        return _PIPE_BUF


def _second_stamp(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def _json_value(value: Any) -> str:
    """``value`` as json.dumps writes it (ensure_ascii), for the types off the fast path."""
    if value is None:
        return "null"
    # repr for what JSON has no form for: a line is never lost to a stray type.
    return json.dumps(value, default=repr)


def _json_duration(ms: Any) -> str:
    """Milliseconds to 3 decimals, exactly as json.dumps wrote the edge's ``round(elapsed * 1000, 3)``."""
    if type(ms) is float and -1e12 < ms < 1e12:
        # repr(round(ms, 3)) is the 3-decimal string without its trailing zeros: both
        # round the exact binary value the same way, and below 1e12 the doubles are
        # dense enough that no shorter string means the same one. About half the cost of
        # round() + repr().
        text = ("%.3f" % ms).rstrip("0")
        return text + "0" if text[-1] == "." else text
    if type(ms) is float:
        return json.dumps(round(ms, 3))
    if type(ms) is int:
        return int.__repr__(ms)
    return _json_value(ms)


def _render(records: list[_Record]) -> list[str]:
    """The lines json.dumps(record, separators=(",", ":")) would give, byte for byte.

    The keys keep the order the edge's dict gave json.dumps before (operators' parsers
    and docs/configuration.md list them so), then the time. The template is one
    f-string (compiled once, cheaper than %-formatting). Strings go through json's own
    C encoder (``encode_basestring_ascii``, what json.dumps calls for each string): it
    escapes quotes, backslashes, control characters, non-ASCII and lone surrogates
    (aiohttp decodes the request line with surrogateescape) exactly as before, and
    costs less than a regex that would only check whether escaping is needed. Values of
    the types the edge passes (str, int, None, a float duration) are written inline;
    anything else takes json.dumps.
    """
    text, other, duration = encode_basestring_ascii, _json_value, _json_duration
    lines: list[str] = []
    append = lines.append
    for request_id, client_ip, method, path, route, status, ms, upstream, cache, worker, stamp in records:
        request_id = text(request_id) if type(request_id) is str else other(request_id)
        client_ip = text(client_ip) if type(client_ip) is str else other(client_ip)
        method = text(method) if type(method) is str else other(method)
        path = text(path) if type(path) is str else other(path)
        route = text(route) if type(route) is str else other(route)
        status = int.__repr__(status) if type(status) is int else other(status)
        upstream = text(upstream) if type(upstream) is str else other(upstream)
        cache = text(cache) if type(cache) is str else other(cache)
        worker = int.__repr__(worker) if type(worker) is int else other(worker)
        append(
            f'{{"request_id":{request_id},"client_ip":{client_ip},"method":{method},"path":{path},'
            f'"route":{route},"status":{status},"duration_ms":{duration(ms)},"upstream":{upstream},'
            f'"cache":{cache},"worker":{worker},"time":"{stamp}"}}\n'
        )
    return lines


def _prefix_within(lines: list[str], room: int) -> tuple[list[str], int]:
    """The first lines of ``lines`` that fit in ``room`` bytes, and their size."""
    size = 0
    for n, line in enumerate(lines):
        if size + len(line) > room:
            return lines[:n], size
        size += len(line)
    return lines, size


class AccessLogError(RuntimeError):
    """The access log file cannot be opened (a directory that vanished, permissions)."""


class AccessLog:
    """``target``: ``stdout``, ``stderr``, ``off``, a file path, or an open text stream."""

    def __init__(
        self,
        *,
        target: str | IO[str],
        max_records: int = MAX_RECORDS,
        max_backlog: int = MAX_BACKLOG,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stream: IO[str] | None
        self._owned = False
        if not isinstance(target, str):
            self._stream = target
        elif target == "off":
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
        self._clock = clock
        self._second = -1
        self._stamp = ""
        self._records: list[_Record] = []
        # Off takes nothing, so a stray record() cannot pile up where no flush runs.
        self._max_records = max_records if self._stream is not None else 0
        self._backlog: list[str] = []
        self._backlog_size = 0
        self._max_backlog = max_backlog
        self._dropped = 0
        self._noted = 0
        self._drop_note = RateLimitedLog(log, level=logging.WARNING)
        self._writer: ThreadPoolExecutor | None = None
        self._writing: Future[int] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    @property
    def dropped(self) -> int:
        """Lines lost so far: over a bound, or taken by a write that failed."""
        return self._dropped

    def start(self) -> None:
        if self._stream is not None and self._task is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log")
            self._task = asyncio.get_running_loop().create_task(self._flush_periodically())

    def record(
        self,
        request_id: str,
        client_ip: str,
        method: str,
        path: str,
        route: str,
        status: int,
        duration_ms: float,
        upstream: str | None,
        cache: str | None,
        worker: int,
    ) -> None:
        """Log one request, as it finishes; ``duration_ms`` unrounded (lines carry 3 decimals).

        On the request path: a clock read, a compare and an append. Everything else
        waits for the background flush.
        """
        second = int(self._clock())
        if second != self._second:
            self._second = second
            self._stamp = _second_stamp(second)
        records = self._records
        if len(records) < self._max_records:
            records.append(
                (request_id, client_ip, method, path, route, status, duration_ms, upstream, cache, worker, self._stamp)
            )
        else:
            self._dropped += 1

    def flush(self) -> None:
        """Write everything recorded so far, now, on this thread (close(), tests).

        A background write still running is waited for first, so lines keep their order.
        """
        self._collect(wait=True)
        self._render_waiting()
        if self._backlog and self._stream is not None:
            self._dropped += self._write(self._take_backlog())

    def _tick(self) -> None:
        """The periodic flush: format, hand over to the writer if it is free, tell of drops."""
        self._collect(wait=False)
        self._render_waiting()
        if self._backlog and self._writing is None and self._writer is not None:
            self._writing = self._writer.submit(self._write, self._take_backlog())
        if self._dropped != self._noted:
            self._noted = self._dropped
            self._drop_note.log(
                "access log: %d lines dropped since start; the log is not taking them as fast as requests"
                " come (blocked pipe, slow or full disk?). At most %d bytes of lines wait in memory.",
                self._dropped,
                self._max_backlog,
            )

    def _collect(self, *, wait: bool) -> None:
        """Count what the last background write lost, once it has finished."""
        writing = self._writing
        if writing is not None and (wait or writing.done()):
            self._writing = None
            self._dropped += writing.result()

    def _render_waiting(self) -> None:
        """Format the recorded tuples onto the backlog, as far as its bound allows."""
        records, self._records = self._records, []
        if not records:
            return
        lines = _render(records)
        size = sum(map(len, lines))
        room = self._max_backlog - self._backlog_size
        if size > room:  # the writer is behind: keep the oldest lines, drop the rest
            lines, size = _prefix_within(lines, room)
            self._dropped += len(records) - len(lines)
        self._backlog += lines
        self._backlog_size += size

    def _take_backlog(self) -> list[str]:
        lines, self._backlog, self._backlog_size = self._backlog, [], 0
        return lines

    def _write(self, lines: list[str]) -> int:
        """Hand ``lines`` to the log (on the writer thread); returns how many it did not take."""
        assert self._stream is not None
        stream = self._stream
        written = 0
        try:
            if self._write_limit is None:
                stream.write("".join(lines))
                stream.flush()
                return 0
            for chunk in self._chunks(lines, self._write_limit):
                stream.write("".join(chunk))
                stream.flush()
                written += len(chunk)
        except (OSError, ValueError):
            return len(lines) - written  # a closed or full log must never take requests down
        return 0

    @staticmethod
    def _chunks(lines: list[str], limit: int) -> list[list[str]]:
        """Whole lines in groups of at most ``limit`` bytes (ASCII lines: len() is bytes)."""
        chunks: list[list[str]] = []
        chunk: list[str] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > limit:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            chunks.append(chunk)
        return chunks

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self._tick()

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._writing is not None:
            await asyncio.wrap_future(self._writing)  # off the loop: it may be a slow pipe
        self.flush()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        if self._stream is not None and self._dropped:
            log.warning("access log: %d lines dropped in all", self._dropped)
        if self._owned and self._stream is not None:
            self._stream.close()
