"""The backend as deployed: two real gunicorn instances sharing one SQLite file.

This is what ``make demo`` runs behind the gateway, minus the gateway: the
WSGI entry point, gunicorn.conf.py, WAL on a shared file, keys from the
environment, /healthz failing when the database cannot be opened.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

BACKEND_DIR = Path(__file__).resolve().parent.parent
# No proxies: these requests go to loopback only, whatever the environment says.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def request(
    url: str,
    *,
    method: str = "GET",
    payload: dict | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    headers = dict(headers or {})
    if payload is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with OPENER.open(req, timeout=10) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Instance:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BACKEND_DIR, env=env, check=True, capture_output=True
    )


def start_gunicorn(env: dict[str, str], name: str, log_dir: Path) -> Instance:
    port = free_port()
    log = log_dir / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "littlelemon.wsgi", "-b", f"127.0.0.1:{port}"],
            cwd=BACKEND_DIR,
            env={**env, "INSTANCE_NAME": name},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    instance = Instance(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn {name} exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return instance
        except OSError:
            time.sleep(0.1)
    instance.stop()
    pytest.fail(f"gunicorn {name} did not listen on {port} within 20 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def backend_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a migrated, seeded SQLite file (keys: the session's throwaway pair)."""
    directory = tmp_path_factory.mktemp("shared-db")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}"}
    manage(env, "migrate", "--noinput")
    manage(env, "seed")
    return env


@pytest.fixture(scope="module")
def pair(backend_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Instance, Instance]]:
    logs = tmp_path_factory.mktemp("gunicorn-logs")
    alpha = start_gunicorn(backend_env, "alpha", logs)
    try:
        beta = start_gunicorn(backend_env, "beta", logs)
    except BaseException:
        alpha.stop()
        raise
    yield alpha, beta
    alpha.stop()
    beta.stop()


def access_token(base_url: str, username: str, password: str) -> str:
    reply = request(f"{base_url}/auth/jwt/create/", method="POST", payload={"username": username, "password": password})
    assert reply.status == 200, reply.body
    return reply.json()["access"]


def test_each_instance_names_itself(pair: tuple[Instance, Instance]) -> None:
    alpha, beta = pair

    assert request(f"{alpha.url}/healthz").headers["X-Served-By"] == "alpha"
    assert request(f"{beta.url}/api/menu-items").headers["X-Served-By"] == "beta"


def test_healthz_ok_under_gunicorn(pair: tuple[Instance, Instance]) -> None:
    reply = request(f"{pair[0].url}/healthz")

    assert (reply.status, reply.json()) == (200, {"status": "ok"})


def test_database_runs_in_wal_mode(pair: tuple[Instance, Instance], backend_env: dict[str, str]) -> None:
    request(f"{pair[0].url}/api/menu-items")
    path = backend_env["DATABASE_URL"].removeprefix("sqlite:///")

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_write_on_one_instance_is_read_on_the_other(pair: tuple[Instance, Instance]) -> None:
    alpha, beta = pair
    token = access_token(alpha.url, "manager", "lemon-manager-1")

    created = request(
        f"{beta.url}/api/menu-items",
        method="POST",
        payload={"title": "Cross-Instance Moussaka", "price": "17.50", "category": "mains"},
        token=token,
    )

    assert created.status == 201, created.body
    assert request(f"{alpha.url}/api/menu-items/{created.json()['id']}").status == 200


def test_concurrent_writes_through_both_instances_all_succeed(pair: tuple[Instance, Instance]) -> None:
    token = access_token(pair[0].url, "manager", "lemon-manager-1")

    def create(n: int) -> int:
        instance = pair[n % 2]
        item = {"title": f"Concurrent Special {n}", "price": "9.99", "category": "specials"}
        return request(f"{instance.url}/api/menu-items", method="POST", payload=item, token=token).status

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(create, range(24)))

    assert statuses == [201] * 24


def test_customer_write_is_403_under_gunicorn(pair: tuple[Instance, Instance]) -> None:
    token = access_token(pair[1].url, "customer", "lemon-customer-1")

    reply = request(
        f"{pair[1].url}/api/menu-items",
        method="POST",
        payload={"title": "Free Lunch", "price": "0.00", "category": "mains"},
        token=token,
    )

    assert reply.status == 403


def test_an_etag_from_one_instance_revalidates_on_the_other(pair: tuple[Instance, Instance]) -> None:
    alpha, beta = pair
    # As behind the gateway (host_header: preserve): one Host for both, so the
    # absolute pagination links, and with them the bodies, are the same.
    host = {"Host": "127.0.0.1:8080"}
    first = request(f"{alpha.url}/api/menu-items?perpage=5", headers=host)

    again = request(f"{beta.url}/api/menu-items?perpage=5", headers={**host, "If-None-Match": first.headers["ETag"]})

    assert first.status == 200
    assert (again.status, again.body, again.headers["X-Served-By"]) == (304, b"", "beta")
    assert again.headers["ETag"] == first.headers["ETag"]


def test_throttle_rates_come_from_the_environment(backend_env: dict[str, str], tmp_path: Path) -> None:
    limited = {**backend_env, "THROTTLE_ANON_RATE": "2/minute"}
    instance = start_gunicorn(limited, "limited", tmp_path)
    try:
        alice = [
            request(f"{instance.url}/api/categories", headers={"X-Forwarded-For": "203.0.113.10"}) for _ in range(3)
        ]
        bob = request(f"{instance.url}/api/categories", headers={"X-Forwarded-For": "198.51.100.20"})
        health = request(f"{instance.url}/healthz")
    finally:
        instance.stop()

    assert [reply.status for reply in alice] == [200, 200, 429]
    assert int(alice[2].headers["Retry-After"]) > 0
    assert bob.status == 200
    assert health.status == 200  # the gateway's health checks are never throttled


def test_healthz_is_503_when_the_database_cannot_be_opened(
    backend_env: dict[str, str], tmp_path: Path
) -> None:
    broken = {**backend_env, "DATABASE_URL": f"sqlite:///{tmp_path / 'no-such-dir' / 'db.sqlite3'}"}
    instance = start_gunicorn(broken, "broken", tmp_path)
    try:
        reply = request(f"{instance.url}/healthz")
    finally:
        instance.stop()

    assert reply.status == 503
    assert reply.json()["status"] == "unavailable"
    assert reply.headers["X-Served-By"] == "broken"
