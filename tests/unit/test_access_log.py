"""The access log: buffered JSON lines, never torn when several workers share a pipe."""

from __future__ import annotations

import io
import json
import os

import pytest

from gateway.access_log import AccessLog, _atomic_write_limit


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


def log_to(stream: io.StringIO, limit: int | None) -> AccessLog:
    log = AccessLog(target="off")
    log._stream, log._write_limit = stream, limit
    return log


@pytest.mark.parametrize("limit", [200, 4096])
def test_batches_to_a_pipe_are_written_in_whole_lines_under_the_limit(limit):
    stream = RecordingStream()
    log = log_to(stream, limit)
    for n in range(100):
        log.write({"request_id": f"{n:04d}", "path": "/api/menu-items", "status": 200})
    log.flush()
    assert len(stream.writes) > 1
    assert all(len(w) <= limit and w.endswith("\n") for w in stream.writes)
    lines = "".join(stream.writes).splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"{n:04d}" for n in range(100)]


def test_a_regular_file_gets_one_write_per_batch(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(target=str(path))
    assert log._write_limit is None
    for n in range(100):
        log.write({"n": n})
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
