"""The e2e stack: two gunicorn backends and the gateway, as a user runs them.

``backends`` (session): a temp SQLite file, migrated and seeded, a throwaway
RS256 key pair, and two gunicorn instances (``backend-1``, ``backend-2``) on
free loopback ports sharing that file.

``gateway`` (session): ``gateway run -c <generated yaml>`` in front of them,
with the default config of ``gateway_config.gateway_config``.

``start_gateway`` (per test): another gateway over the same backends with
extra sections -- the way to test auth, throttling or caching end to end::

    gw = start_gateway(auth=jwt_auth(backends.public_key), routes=menu_routes(api={"auth": "required"}))

Nothing here skips: a missing ``gateway`` script, a backend that does not
start or a gateway that does not answer fails the run with the process log.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .processes import free_port, http_ok, run_checked, start_process
from .stack import BACKEND_DIR, INSTANCE_NAMES, PASSWORDS, Backends, Gateway, GatewayStarter, launch_gateway


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def backends(e2e_dir: Path) -> Iterator[Backends]:
    keys = e2e_dir / "keys"
    database = e2e_dir / "db.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "littlelemon.settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "JWT_PRIVATE_KEY_FILE": str(keys / "jwt.key"),
        "JWT_PUBLIC_KEY_FILE": str(keys / "jwt.pub"),
        "MANAGER_PASSWORD": PASSWORDS["manager"],
        "CUSTOMER_PASSWORD": PASSWORDS["customer"],
    }
    manage = [sys.executable, "manage.py"]
    run_checked([*manage, "generate_jwt_keys", "--dir", str(keys)], cwd=BACKEND_DIR, env=env)
    run_checked([*manage, "migrate", "--noinput", "-v", "0"], cwd=BACKEND_DIR, env=env)
    run_checked([*manage, "seed"], cwd=BACKEND_DIR, env=env)

    ports = [free_port() for _ in INSTANCE_NAMES]
    processes = tuple(
        start_process(
            name,
            [sys.executable, "-m", "gunicorn", "littlelemon.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=BACKEND_DIR,
            env={**env, "INSTANCE_NAME": name},
            log_dir=e2e_dir,
        )
        for name, port in zip(INSTANCE_NAMES, ports, strict=True)
    )
    try:
        for process, port in zip(processes, ports, strict=True):
            process.wait_until(http_ok(f"http://127.0.0.1:{port}/healthz"), what="200 from /healthz")
        yield Backends(
            urls=tuple(f"http://127.0.0.1:{port}" for port in ports),
            names=INSTANCE_NAMES,
            private_key=keys / "jwt.key",
            public_key=keys / "jwt.pub",
            database=database,
            processes=processes,
        )
    finally:
        for process in processes:
            process.stop()


@pytest.fixture(scope="session")
def gateway(backends: Backends, e2e_dir: Path) -> Iterator[Gateway]:
    launched = launch_gateway(backends, e2e_dir, "gateway")
    yield launched
    launched.process.stop()


@pytest.fixture
def start_gateway(backends: Backends, tmp_path: Path) -> Iterator[GatewayStarter]:
    """Start extra gateways (stopped after the test); kwargs go to ``gateway_config``."""
    started: list[Gateway] = []

    def start(**config: Any) -> Gateway:
        launched = launch_gateway(backends, tmp_path, f"gateway-{len(started) + 1}", **config)
        started.append(launched)
        return launched

    yield start
    for launched in started:
        launched.process.stop()


@pytest.fixture(scope="session")
def tokens(gateway: Gateway) -> Callable[[str], dict[str, str]]:
    """``tokens("manager")`` -> ``{"access", "refresh"}``, obtained through the gateway once."""
    cache: dict[str, dict[str, str]] = {}

    def obtain(username: str) -> dict[str, str]:
        if username not in cache:
            reply = gateway.client.post(
                "/auth/jwt/create/", {"username": username, "password": PASSWORDS[username]}
            )
            assert reply.status == 200, f"login of {username} through the gateway: {reply}"
            cache[username] = reply.json()
        return cache[username]

    return obtain
