"""The pieces of the e2e stack: what a started backend pair and gateway look like.

Kept out of conftest.py so tests can import the types (``from .stack import
Gateway``) without importing a conftest.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .client import HttpClient
from .gateway_config import gateway_config, write_config
from .processes import ManagedProcess, free_port, http_ok, port_open, start_process

__all__ = [
    "BACKEND_DIR",
    "INSTANCE_NAMES",
    "PASSWORDS",
    "Backends",
    "Gateway",
    "GatewayStarter",
    "launch_gateway",
]

REPO = Path(__file__).resolve().parents[2]
BACKEND_DIR = REPO / "backends" / "sample_django"
PASSWORDS = {"manager": "e2e-manager-pw-1", "customer": "e2e-customer-pw-1"}
INSTANCE_NAMES = ("backend-1", "backend-2")


@dataclass(frozen=True)
class Backends:
    """Two gunicorn instances of the sample backend over one seeded SQLite file."""

    urls: tuple[str, ...]
    names: tuple[str, ...]
    private_key: Path
    public_key: Path
    database: Path
    processes: tuple[ManagedProcess, ...]


@dataclass(frozen=True)
class Gateway:
    """A running ``gateway run`` process and where it listens."""

    url: str
    admin_url: str
    config_path: Path
    process: ManagedProcess

    @property
    def client(self) -> HttpClient:
        return HttpClient(self.url)


GatewayStarter = Callable[..., Gateway]


def _gateway_executable() -> Path:
    path = Path(sys.executable).parent / "gateway"
    if not path.exists():
        pytest.fail(
            f"the gateway console script is missing ({path}); install the package: "
            f"{Path(sys.executable).parent / 'pip'} install -e {REPO}"
        )
    return path


def launch_gateway(backends: Backends, directory: Path, name: str, **config: Any) -> Gateway:
    """Write ``<directory>/<name>.yaml`` from ``config`` and run the gateway on free ports.

    ``config`` goes to ``gateway_config``; ``targets`` defaults to both backends.
    """
    executable = _gateway_executable()
    port, admin_port = free_port(), free_port()
    config.setdefault("targets", backends.urls)
    config_path = write_config(
        gateway_config(listen_port=port, admin_port=admin_port, **config),
        directory / f"{name}.yaml",
    )
    process = start_process(
        name, [str(executable), "run", "-c", str(config_path)], cwd=directory, env=dict(os.environ), log_dir=directory
    )
    try:
        process.wait_until(http_ok(f"http://127.0.0.1:{admin_port}/healthz"), what="200 from admin /healthz")
        process.wait_until(port_open(port), what=f"a listener on :{port}")
    except BaseException:
        process.stop()
        raise
    return Gateway(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}", config_path, process)
