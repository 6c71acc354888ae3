"""Docker cannot run on the CI machines, so every Dockerfile instruction is proven here:
the wheel build, a clean install of it with its console script, the config check, the
HEALTHCHECK command against a live gateway, and the CMD's argument shape."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.integration.conftest import simple_config

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def exec_form(rest: str) -> list[str]:
    rest = re.sub(r"^(--\S+\s+)*CMD\s+", "", rest)
    return json.loads(rest)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built as the build stage builds it, installed into a fresh venv as the
    runtime stage installs it."""
    work = tmp_path_factory.mktemp("docker")
    wheels = work / "wheels"
    run = [step for word, step in instructions() if word == "RUN"]
    assert any(step.startswith("pip wheel") for step in run)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--wheel-dir", str(wheels), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    wheel = next(wheels.glob("*.whl"))
    # As the runtime stage does: the wheel and its declared dependencies, nothing else
    # (pip's cache is allowed here so the suite stays quick).
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "--quiet", str(wheel)],
        check=True, capture_output=True, timeout=600,
    )
    return env_dir


def test_runtime_stage_is_slim_and_unprivileged():
    words = instructions()
    froms = [rest for word, rest in words if word == "FROM"]
    assert len(froms) == 2 and all(f.startswith("python:3.11-slim") for f in froms)
    users = [rest for word, rest in words if word == "USER"]
    assert users == ["gateway"]
    assert any(word == "HEALTHCHECK" for word, _ in words)


def test_the_wheel_installs_the_console_script_and_checks_the_shipped_config(installed):
    gateway = installed / "bin" / "gateway"
    assert gateway.exists()
    cmd = exec_form(next(rest for word, rest in instructions() if word == "CMD"))
    assert cmd[:2] == ["gateway", "run"] and cmd[2] == "-c"
    copied = next(rest for word, rest in instructions() if word == "COPY" and rest.endswith(cmd[3]))
    source = ROOT / copied.split()[0]
    result = subprocess.run([str(gateway), "check", "-c", str(source)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_healthcheck_command_passes_against_a_live_gateway(stub, gateway_factory):
    gw = gateway_factory(simple_config(stub.url))
    check = next(rest for word, rest in instructions() if word == "HEALTHCHECK")
    argv = exec_form(check)
    env_line = next(rest for word, rest in instructions() if word == "ENV")
    name, _, _ = env_line.partition("=")
    env = {**os.environ, name: gw.admin_url}
    result = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    env[name] = "http://127.0.0.1:9"  # nothing listens: the check must fail
    result = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
    assert result.returncode != 0
    assert shlex.join(argv).startswith("python -c")
