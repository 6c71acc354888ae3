"""The access log: cheap to record, the same JSON as before, bounded, never torn."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.access_log as access_log_module
from gateway.access_log import AccessLog, _atomic_write_limit

KEYS = ("request_id", "client_ip", "method", "path", "route", "status", "duration_ms", "upstream", "cache", "worker")


class RecordingStream(io.StringIO):
    """Remembers what each flush handed to the OS in one go."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.writes.append(self._pending)
            self._pending = ""


class Clock:
    def __init__(self, now: float = 1_700_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def log_to(stream: io.StringIO, limit: int | None, **options: Any) -> AccessLog:
    log = AccessLog(target=stream, **options)
    log._write_limit = limit
    return log


def record_request(log: AccessLog, n: int, path: str = "/api/menu-items") -> None:
    log.record(f"{n:08d}", "192.0.2.1", "GET", path, "main", 200, 1.25, "127.0.0.1:9001", None, 4242)


def lines_of(stream: RecordingStream) -> list[dict[str, Any]]:
    return [json.loads(line) for line in "".join(stream.writes).splitlines()]


@pytest.mark.parametrize("limit", [512, 4096])  # POSIX minimum PIPE_BUF, Linux
def test_batches_to_a_pipe_are_written_in_whole_lines_under_the_limit(limit):
    stream = RecordingStream()
    log = log_to(stream, limit)
    for n in range(100):
        record_request(log, n)
    log.flush()
    assert len(stream.writes) > 1
    assert all(len(w) <= limit and w.endswith("\n") for w in stream.writes)
    assert [line["request_id"] for line in lines_of(stream)] == [f"{n:08d}" for n in range(100)]


def test_a_regular_file_gets_one_write_per_batch(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(target=str(path))
    assert log._write_limit is None
    for n in range(100):
        record_request(log, n)
    log.flush()
    assert len(path.read_text().splitlines()) == 100
    log._stream.close()


def test_pipes_are_chunked_and_files_are_not(tmp_path):
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "w") as pipe, (tmp_path / "f").open("a") as file:
            assert _atomic_write_limit(pipe) == 4096
            assert _atomic_write_limit(file) is None
    finally:
        os.close(read_end)


# What a client controls (method, path) arrives as any str: aiohttp decodes the request
# line with surrogateescape, so lone surrogates too. json.dumps escaped all of it.
client_text = st.one_of(
    st.text(st.characters(exclude_categories=())),
    st.text(st.sampled_from('"\\/\n\r\t\x00\x1f\x7f\x80\xe9\u2028\ud800\udcff\U0001f600 aZ09-._~')),
    st.binary().map(lambda raw: raw.decode("utf-8", "surrogateescape")),
)
any_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), client_text)
durations = st.one_of(
    st.floats(allow_nan=False),
    st.floats(min_value=0, max_value=120_000),  # what the edge passes: elapsed ms
    st.integers(),
)


@settings(max_examples=500, deadline=None)
@given(
    values=st.tuples(
        st.one_of(client_text, any_scalar),  # request_id
        st.one_of(client_text, any_scalar),  # client_ip
        client_text,  # method
        client_text,  # path
        st.one_of(client_text, any_scalar),  # route
        st.one_of(st.integers(100, 599), any_scalar),  # status
        durations,
        st.one_of(st.none(), client_text, any_scalar),  # upstream
        st.one_of(st.none(), st.sampled_from(["HIT", "MISS", "BYPASS", "STALE"]), any_scalar),  # cache
        st.one_of(st.integers(1, 4_194_304), any_scalar),  # worker
    ),
    now=st.floats(min_value=0, max_value=253_402_300_799),  # up to 9999-12-31
)
def test_a_line_is_what_json_dumps_made_of_the_edges_dict(values, now):
    stream = RecordingStream()
    log = log_to(stream, None, clock=Clock(now))
    log.record(*values)
    log.flush()
    (line,) = stream.writes

    # The edge's dict as it was built and dumped before: rounded duration, time last.
    record = dict(zip(KEYS, values))
    record["duration_ms"] = round(values[6], 3)
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(now))) + "Z"
    assert json.loads(line) == record
    assert list(json.loads(line)) == [*KEYS, "time"]
    assert line == json.dumps(record, separators=(",", ":")) + "\n"
    assert line.isascii() and line.count("\n") == 1 and line.endswith("\n")


def test_the_time_is_when_the_request_finished_not_when_its_line_is_written():
    stream, clock = RecordingStream(), Clock(1_700_000_000.9)
    log = log_to(stream, None, clock=clock)
    record_request(log, 1)
    clock.now += 5  # the flush comes later
    log.flush()
    assert lines_of(stream)[0]["time"] == "2023-11-14T22:13:20Z"


@given(st.lists(st.floats(min_value=0, max_value=4_102_444_800), min_size=1, max_size=50))
def test_the_time_cached_per_second_is_always_the_seconds_own(moments):
    # Any order of clock readings, backwards too (NTP steps): each line carries its own second.
    stream, clock = RecordingStream(), Clock()
    log = log_to(stream, None, clock=clock)
    for n, moment in enumerate(moments):
        clock.now = moment
        record_request(log, n)
    log.flush()
    assert [line["time"] for line in lines_of(stream)] == [
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(moment))) for moment in moments
    ]


def test_the_time_string_is_made_once_per_second_not_per_request(monkeypatch):
    made: list[int] = []
    real = access_log_module._second_stamp
    monkeypatch.setattr(access_log_module, "_second_stamp", lambda second: made.append(second) or real(second))
    clock = Clock(1_700_000_000.0)
    log = log_to(RecordingStream(), None, clock=clock)
    for n in range(3000):
        clock.now = 1_700_000_000.0 + n / 1000  # 3000 requests over 3 seconds
        record_request(log, n)
    assert made == [1_700_000_000, 1_700_000_001, 1_700_000_002]


def test_off_records_nothing():
    log = AccessLog(target="off")
    assert not log.enabled
    for n in range(10):
        record_request(log, n)
    log.flush()
    assert log._records == [] and log._backlog == []


def test_requests_over_the_bound_between_flushes_are_dropped_and_counted():
    stream = RecordingStream()
    log = log_to(stream, None, max_records=10)
    for n in range(15):
        record_request(log, n)
    assert log.dropped == 5
    log.flush()
    assert [line["request_id"] for line in lines_of(stream)] == [f"{n:08d}" for n in range(10)]
    for n in range(15, 20):  # a flush makes room again
        record_request(log, n)
    assert log.dropped == 5


def test_a_failed_write_loses_no_request_and_counts_the_lines_it_lost():
    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    log = log_to(FullDisk(), 200)
    for n in range(30):
        record_request(log, n)
    log.flush()  # does not raise
    assert log.dropped == 30


def _drain(fd: int, into: list[bytes], go: threading.Event) -> None:
    # Also a watchdog: were the loop stuck behind the pipe, the drain starting after
    # 30 s frees it, and the test fails on its deadline instead of hanging.
    go.wait(30)
    while chunk := os.read(fd, 65536):
        into.append(chunk)


async def test_a_blocked_pipe_stalls_neither_requests_nor_memory_and_loses_nothing_silently(caplog):
    # A pipe nobody reads (docker's log driver stuck, `| less` paused): the writer
    # thread blocks, the event loop does not, what waits stays under the bound, and
    # every line is either written or counted as dropped.
    caplog.set_level(logging.WARNING, logger="gateway.access_log")
    read_end, write_end = os.pipe()
    log = AccessLog(target=f"/dev/fd/{write_end}", max_backlog=16 * 1024)
    os.close(write_end)  # the log holds its own descriptor; closing it ends the pipe
    loop = asyncio.get_running_loop()
    received: list[bytes] = []
    go = threading.Event()
    reader = threading.Thread(target=_drain, args=(read_end, received, go))
    reader.start()
    log.start()
    recorded = 0
    path = "/api/" + "x" * 200  # ~330-byte lines: the 64 KiB pipe fills after ~200

    async def serve_until(condition: Any) -> None:
        nonlocal recorded
        deadline = loop.time() + 20
        while not condition():
            assert loop.time() < deadline, "the access log never got there"
            for _ in range(50):
                record_request(log, recorded, path)
                recorded += 1
            await asyncio.sleep(0.01)  # returns: the loop is not stuck behind the pipe

    def writer_blocked() -> bool:
        return log._writing is not None and not log._writing.done()

    try:
        await serve_until(lambda: writer_blocked() and log.dropped > 3000)  # several flushes dropped
        assert writer_blocked()
        assert log._backlog_size <= 16 * 1024
        notes = [r.getMessage() for r in caplog.records if "dropped since start" in r.getMessage()]
        assert len(notes) == 1  # at most one line per 10 s however many flushes dropped
    finally:
        go.set()
        await log.close()
        reader.join(10)
        os.close(read_end)
    lines = [json.loads(line) for line in b"".join(received).decode("ascii").splitlines()]
    ids = [int(line["request_id"]) for line in lines]
    assert ids == sorted(ids)  # in order, the dropped ones missing
    assert len(lines) + log.dropped == recorded
    assert f"access log: {log.dropped} lines dropped in all" in caplog.messages


async def test_lines_flow_in_the_background_and_the_rest_at_close(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(target=str(path))
    log.start()
    for n in range(10):
        record_request(log, n)

    deadline = asyncio.get_running_loop().time() + 10
    while not path.read_text():  # the 200 ms flush, on the writer thread
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    record_request(log, 10)
    await log.close()
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == [
        f"{n:08d}" for n in range(11)
    ]
    assert log._writer is None and log._stream.closed
