#!/usr/bin/env python3
"""``make demo``: the whole stack on one machine, stopped by one Ctrl-C.

    keys -> migrate -> seed -> backend-1 :8001, backend-2 :8002 -> gateway :8080 (admin :9901)

Run with the repository's virtual environment (``.venv/bin/python
scripts/demo.py``): the backends are started with this interpreter's gunicorn
and the gateway with the ``gateway`` script beside it. Every long-running
child gets its own process group, so stopping the demo stops the gunicorn
workers too, and a second run finds the ports free again. Only the standard
library is used, so the launcher works before anything else is importable.

Exit status: 0 after Ctrl-C / SIGTERM, 2 when a port is taken, 1 when
something failed to start or died.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

REPO = Path(__file__).resolve().parent.parent
BACKEND_DIR = REPO / "backends" / "sample_django"
KEYS_DIR = REPO / "keys"
DEFAULT_CONFIG = REPO / "config" / "gateway.yaml"

HOST = "127.0.0.1"
BACKEND_PORTS = (8001, 8002)
# Where config/gateway.yaml listens; the launcher checks and prints these.
GATEWAY_PORT = 8080
ADMIN_PORT = 9901

MANAGER_PASSWORD = os.environ.get("MANAGER_PASSWORD") or "lemon-manager-1"
CUSTOMER_PASSWORD = os.environ.get("CUSTOMER_PASSWORD") or "lemon-customer-1"

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0  # the gateway drains for up to server.shutdown_timeout (15s)

# Loopback only: never send the demo's requests through a configured HTTP proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoFailed(Exception):
    """Something the demo needs did not happen; the message says what to do."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived: stop everything and exit 0."""


@dataclass
class Service:
    """One long-running child: a gunicorn instance or the gateway."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    health_url: str
    process: subprocess.Popen[bytes] | None = None
    _pump: threading.Thread | None = field(default=None, repr=False)

    def start(self, output_lock: threading.RLock) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own session and process group: the terminal's Ctrl-C reaches only
            # the launcher, which then stops each group (master and workers).
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self._pump = threading.Thread(
            target=_prefix_lines,
            args=(self.process.stdout, f"[{self.name}] ", output_lock),
            daemon=True,
        )
        self._pump.start()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal_group(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        if self._pump is not None:
            self._pump.join(timeout=1)
        return True


def _prefix_lines(stream: IO[bytes], prefix: str, lock: threading.RLock) -> None:
    """Copy a child's output to ours, each line tagged with the child's name."""
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            print(f"{prefix}{line}", flush=True)
    stream.close()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the servers use: a port in TIME_WAIT after a previous run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def check_ports(ports: dict[int, str]) -> None:
    taken = [port for port in ports if not _port_is_free(port)]
    if taken:
        raise DemoFailed(
            "already in use: "
            + ", ".join(f"{HOST}:{port} (for {ports[port]})" for port in taken)
            + ".\nIs another `make demo` still running? See who holds the ports with:\n  ss -ltnp '"
            + " or ".join(f"sport = :{port}" for port in taken)
            + "'",
            exit_code=2,
        )


def _http_status(url: str, timeout: float = 1.0) -> tuple[int, dict[str, str]] | None:
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)
    except (OSError, ValueError):
        return None


def wait_until_healthy(services: Sequence[Service], stop: threading.Event) -> None:
    pending = list(services)
    deadline = time.monotonic() + START_TIMEOUT_S
    while pending:
        for service in list(pending):
            code = service.exited()
            if code is not None:
                raise DemoFailed(f"{service.name} exited with status {code} while starting (its output is above)")
            answer = _http_status(service.health_url)
            if answer is not None and answer[0] == 200:
                pending.remove(service)
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"{s.name} ({s.health_url})" for s in pending)
            raise DemoFailed(f"not healthy after {START_TIMEOUT_S:.0f}s: {names}")
        if stop.wait(0.2):
            raise StopRequested


def run_manage(env: dict[str, str], *args: str) -> str:
    """Run a one-shot ``manage.py`` command, returning its output; fail loudly."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BACKEND_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise DemoFailed(
            f"`manage.py {' '.join(args)}` failed with status {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def backend_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="littlelemon.settings",
        # The gateway's config verifies with keys/jwt.pub: sign with its private half.
        JWT_PRIVATE_KEY_FILE=str(KEYS_DIR / "jwt.key"),
        JWT_PUBLIC_KEY_FILE=str(KEYS_DIR / "jwt.pub"),
        MANAGER_PASSWORD=MANAGER_PASSWORD,
        CUSTOMER_PASSWORD=CUSTOMER_PASSWORD,
        PYTHONUNBUFFERED="1",
    )
    return env


def gateway_executable() -> str:
    beside_python = Path(sys.executable).parent / "gateway"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("gateway")
    if found:
        return found
    raise DemoFailed(
        "the `gateway` command is not installed in this environment; "
        "run `make demo` (it installs it), or `.venv/bin/pip install -e .`, "
        "or pass --no-gateway to start only the backends"
    )


def curl_lines(with_gateway: bool) -> list[str]:
    base = f"http://{HOST}:{GATEWAY_PORT}" if with_gateway else f"http://{HOST}:{BACKEND_PORTS[0]}"
    login = shlex.quote(json.dumps({"username": "manager", "password": MANAGER_PASSWORD}))
    extract = shlex.quote('import json, sys; print(json.load(sys.stdin)["access"])')
    dish = '{"title": "Lemon Sorbet $(date +%s)", "price": "4.50", "category": "desserts"}'
    dish_arg = '"' + dish.replace('"', '\\"') + '"'
    return [
        "# the menu, five items a page",
        f"curl -s '{base}/api/menu-items?perpage=5&page=2'",
        "# the same with response headers: X-Served-By shows which backend answered"
        + (" (RateLimit-* and X-Cache appear on routes that throttle or cache)" if with_gateway else ""),
        f"curl -si '{base}/api/menu-items?perpage=5&page=1'",
        "# filter, search, order",
        f"curl -s '{base}/api/menu-items?category=desserts&ordering=-price'",
        f"curl -s '{base}/api/menu-items?search=lemon'",
        "# log in as the manager: a JWT pair signed RS256 by the backend",
        f"TOKEN=$(curl -s -X POST {base}/auth/jwt/create/ -H 'Content-Type: application/json' "
        f"-d {login} | python3 -c {extract})",
        f"curl -s {base}/auth/users/me/ -H \"Authorization: Bearer $TOKEN\"",
        "# add a dish (Manager group only: the customer gets 403, no token 401)",
        f"curl -si -X POST {base}/api/menu-items -H \"Authorization: Bearer $TOKEN\" "
        f"-H 'Content-Type: application/json' -d {dish_arg}",
    ]


def banner(with_gateway: bool, seed_output: str) -> str:
    lines = ["", "=" * 78, "Little Lemon demo is up", ""]
    if with_gateway:
        lines += [
            f"  gateway          http://{HOST}:{GATEWAY_PORT}/api/menu-items",
            f"  gateway admin    http://{HOST}:{ADMIN_PORT}/  (status page; /healthz /readyz /status /metrics)",
        ]
    for n, port in enumerate(BACKEND_PORTS, start=1):
        lines.append(f"  {f'backend-{n}':<16} http://{HOST}:{port}/api/menu-items  (/healthz)")
    lines += ["", "Seeded:", *(f"  {line}" for line in seed_output.strip().splitlines()), ""]
    lines += ["Try:", *(f"  {line}" for line in curl_lines(with_gateway)), ""]
    lines += ["Ctrl-C stops everything the demo started.", "=" * 78, ""]
    return "\n".join(lines)


def smoke_check() -> str:
    """One request through the gateway, so a broken route shows up now, not in the user's curl."""
    answer = _http_status(f"http://{HOST}:{GATEWAY_PORT}/api/menu-items?perpage=1", timeout=5)
    if answer is None:
        return "warning: the gateway did not answer GET /api/menu-items"
    status, headers = answer
    served_by = headers.get("X-Served-By", "?")
    verdict = "ok" if status == 200 else "warning"
    return f"{verdict}: GET /api/menu-items through the gateway -> {status} (served by {served_by})"


class Demo:
    def __init__(self, *, config: Path, with_gateway: bool, workers: int) -> None:
        self.config = config
        self.with_gateway = with_gateway
        self.workers = workers
        self.services: list[Service] = []
        self.stop = threading.Event()
        # Re-entrant: the signal handler prints from the main thread, which may
        # already hold the lock when the signal arrives.
        self.output_lock = threading.RLock()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """First signal: ask for a graceful stop. Another one: kill without waiting.

        The handler only sets a flag; the main flow checks it between steps, so
        a signal can never land between starting a child and recording it.
        """
        if self.stop.is_set():
            for service in self.services:
                service.signal_group(signal.SIGKILL)
            return
        self.say(f"demo: {signal.Signals(signum).name} received")
        self.stop.set()

    def checkpoint(self) -> None:
        if self.stop.is_set():
            raise StopRequested

    def say(self, text: str) -> None:
        with self.output_lock:
            print(text, flush=True)

    def run(self) -> None:
        ports = {port: f"backend-{n}" for n, port in enumerate(BACKEND_PORTS, start=1)}
        gateway: str | None = None
        if self.with_gateway:
            ports |= {GATEWAY_PORT: "gateway", ADMIN_PORT: "gateway admin"}
            if not self.config.exists():
                raise DemoFailed(f"gateway config not found: {self.config}")
            gateway = gateway_executable()
        check_ports(ports)

        env = backend_env()
        self.say(f"demo: JWT keys in {KEYS_DIR}")
        self.say("demo: " + run_manage(env, "generate_jwt_keys", "--dir", str(KEYS_DIR)).strip())
        self.checkpoint()
        self.say("demo: migrating the database")
        run_manage(env, "migrate", "--noinput", "-v", "0")
        self.checkpoint()
        self.say("demo: seeding")
        seed_output = run_manage(env, "seed")
        self.checkpoint()

        for n, port in enumerate(BACKEND_PORTS, start=1):
            name = f"backend-{n}"
            argv = [
                sys.executable, "-m", "gunicorn", "littlelemon.wsgi",
                "--bind", f"{HOST}:{port}", "--workers", str(self.workers),
            ]
            self.services.append(
                Service(name, argv, BACKEND_DIR, {**env, "INSTANCE_NAME": name}, f"http://{HOST}:{port}/healthz")
            )
        if gateway is not None:
            self.services.append(
                Service(
                    "gateway",
                    [gateway, "run", "-c", str(self.config)],
                    REPO,  # the config names keys/jwt.pub relative to the repository
                    dict(os.environ, PYTHONUNBUFFERED="1"),
                    f"http://{HOST}:{ADMIN_PORT}/healthz",
                )
            )
        for service in self.services:
            self.checkpoint()
            self.say(f"demo: starting {service.name}: {shlex.join(service.argv)}")
            service.start(self.output_lock)
        wait_until_healthy(self.services, self.stop)
        if self.with_gateway:
            self.say("demo: " + smoke_check())
        self.say(banner(self.with_gateway, seed_output))

        while not self.stop.wait(0.5):
            for service in self.services:
                code = service.exited()
                if code is not None:
                    raise DemoFailed(f"{service.name} exited unexpectedly with status {code}")
        raise StopRequested

    def shutdown(self) -> None:
        started = [s for s in self.services if s.process is not None]
        if not started:
            return
        self.say("demo: stopping " + ", ".join(s.name for s in started))
        for service in reversed(started):  # the gateway first, then what it fronts
            service.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for service in started:
            if not service.wait(max(0.0, deadline - time.monotonic())):
                self.say(f"demo: {service.name} did not stop in time; killing it")
                service.signal_group(signal.SIGKILL)
                service.wait(5)
        self.say("demo: stopped")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="gateway YAML (default: %(default)s)")
    parser.add_argument("--no-gateway", action="store_true", help="start only the two backends")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per backend (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    demo = Demo(config=args.config.resolve(), with_gateway=not args.no_gateway, workers=args.workers)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, demo.on_signal)
    try:
        demo.run()
    except StopRequested:
        return 0
    except DemoFailed as failure:
        demo.say(f"demo: {failure}")
        return failure.exit_code
    finally:
        # From here on a further Ctrl-C means "kill now" (see on_signal).
        demo.stop.set()
        demo.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
