"""Start and stop the real processes of the e2e stack, and wait for them.

Each process gets its own process group (gunicorn forks workers; stopping the
master's group stops them all) and a log file, whose tail goes into the
failure message when a process does not come up -- a broken stack must fail
the run loudly and say why, never skip.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["ManagedProcess", "free_port", "http_ok", "port_open", "run_checked", "start_process"]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
LOG_TAIL_CHARS = 4000


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ManagedProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return text[-LOG_TAIL_CHARS:]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``timeout``."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait()
        # Workers may outlive a master that died on its own.
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def wait_until(self, ready: Callable[[], bool], *, what: str, timeout: float = 20.0) -> None:
        """Poll ``ready`` until it holds; fail with the log if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with status {self.process.returncode} before {what}; "
                    f"log {self.log}:\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"{self.name}: no {what} within {timeout:.0f}s; log {self.log}:\n{self.log_tail()}")


def start_process(
    name: str, argv: Sequence[str], *, cwd: Path, env: dict[str, str], log_dir: Path
) -> ManagedProcess:
    log = log_dir / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ManagedProcess(name, process, log)


def run_checked(argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> str:
    """Run a one-shot command; a failure fails the test run with its output."""
    result = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(argv)}` failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness probe: GET ``url`` answers 200."""

    def probe() -> bool:
        try:
            with _OPENER.open(url, timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    return probe


def port_open(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return probe

