"""Run the real ``gateway`` command as a process for integration tests.

The gateway is started exactly as an operator starts it (``gateway run -c FILE``),
on free loopback ports, and is considered up when its admin ``/healthz`` answers.
Stopping sends SIGTERM and checks that the process drains and exits 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["free_port", "GatewayProcess", "gateway_command"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_command() -> list[str]:
    """The installed console script next to this interpreter (fails loudly if missing)."""
    script = Path(sys.executable).with_name("gateway")
    if not script.exists():
        found = shutil.which("gateway")
        if found is None:
            raise RuntimeError("the `gateway` console script is not installed (pip install -e .)")
        return [found]
    return [str(script)]


class GatewayProcess:
    def __init__(
        self, config: dict[str, Any], workdir: Path, *, env: dict[str, str] | None = None, args: Sequence[str] = ()
    ) -> None:
        """``args``: extra ``gateway run`` arguments (e.g. ``--workers 2``)."""
        self.port = free_port()
        self.admin_port = free_port()
        config = dict(config)
        server = dict(config.get("server", {}))
        server.setdefault("listen", f"127.0.0.1:{self.port}")
        server.setdefault("access_log", str(workdir / "access.log"))
        config["server"] = server
        admin = dict(config.get("admin", {}))
        admin.setdefault("listen", f"127.0.0.1:{self.admin_port}")
        config["admin"] = admin
        self.config = config
        self.workdir = workdir
        self.config_path = workdir / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "gateway.log"
        self.env = {**os.environ, **(env or {})}
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 15.0) -> GatewayProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*gateway_command(), "run", "-c", str(self.config_path), *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.admin_port), timeout=0.5) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway did not become healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def access_log(self) -> list[dict[str, Any]]:
        import json

        path = self.workdir / "access.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
