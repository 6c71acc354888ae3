"""The container image, read from the Dockerfile and docs/operations.md, and run on
this machine without Docker (see tests/integration/test_dockerfile.py for what differs
from a container and why).

The Dockerfile is parsed into stages of instructions; the ``docker run`` line and the
variable table of docs/operations.md "Run the container" are parsed too, so that what
the tests run is what the files say, and a change to either reaches the tests.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tests.integration.gateway_process import free_port

__all__ = [
    "ROOT", "DOCKERFILE", "Stage", "DockerRun", "Container", "stages", "runtime", "exec_form", "image_env", "image_user", "cmd",
    "image_config_path", "image_config_source", "run_section", "docker_run", "documented_variables",
    "config_variables", "world_readable_tempdir", "as_image_user", "build_image_venv", "make_container",
    "operator_env", "mount_key", "uid_of",
]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
OPERATIONS = ROOT / "docs" / "operations.md"

# The python:3.11-slim base image's own ENV that matters to a Python process; its PATH
# puts /usr/local/bin (where the runtime stage's pip installs `gateway`) first.
BASE_IMAGE_ENV = {"LANG": "C.UTF-8"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, word: str) -> list[str]:
        return [rest for found, rest in self.instructions if found == word]

    def one(self, word: str) -> str:
        found = self.all(word)
        assert len(found) == 1, f"expected one {word} in the stage FROM {self.base}, found {found}"
        return found[0]


def stages() -> list[Stage]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            base, _, name = rest.partition(" AS ")
            out.append(Stage(base.strip(), name.strip() or None))
        else:
            out[-1].instructions.append((word, rest))
    return out


def runtime() -> Stage:
    return stages()[-1]


def exec_form(rest: str) -> list[str]:
    rest = re.sub(r"^(--\S+\s+)*CMD\s+", "", rest)
    argv = json.loads(rest)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), "exec form (a JSON list) expected"
    return argv


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in runtime().all("ENV"):
        for pair in shlex.split(rest):
            name, sep, value = pair.partition("=")
            assert sep, f"ENV {rest!r}: write ENV NAME=value"
            env[name] = value
    return env


def image_user() -> tuple[int, int]:
    user, _, group = runtime().one("USER").partition(":")
    assert user.isdigit() and group.isdigit(), "USER uid:gid, numeric (Kubernetes runAsNonRoot checks it)"
    return int(user), int(group)


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """``COPY src... dest`` of a stage from the build context (not ``--from``)."""
    out = []
    for rest in stage.all("COPY"):
        words = rest.split()
        if any(w.startswith("--from=") for w in words):
            continue
        assert not any(w.startswith("--") for w in words), f"COPY option not emulated here: {rest}"
        out.append((words[:-1], words[-1]))
    return out


def cmd() -> list[str]:
    return exec_form(runtime().one("CMD"))


def image_config_path() -> str:
    argv = cmd()
    assert argv[:3] == ["gateway", "run", "-c"] and len(argv) == 4, argv
    return argv[3]


def image_config_source() -> Path:
    dest = image_config_path()
    found = [sources for sources, to in copies(runtime()) if to == dest]
    assert len(found) == 1 and len(found[0]) == 1, f"one COPY must put the config at {dest}"
    return ROOT / found[0][0]


# --- reading docs/operations.md ---------------------------------------------------

def run_section() -> str:
    text = OPERATIONS.read_text()
    start = text.index("\n## Run the container\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


@dataclass
class DockerRun:
    env: dict[str, str]          # -e NAME=value, value as the docs write it
    mounts: dict[str, str]       # container path -> host path as the docs write it
    ports: list[int]             # container ports published with -p
    image: str


def docker_run() -> DockerRun:
    block = re.search(r"```sh\n(.*?)```", run_section(), re.S)
    assert block, "the Run the container section needs a ```sh block with the docker run line"
    joined = re.sub(r"\\\n\s*", " ", block.group(1))
    line = next(line for line in joined.splitlines() if line.strip().startswith("docker run "))
    words = shlex.split(line)[2:]
    run = DockerRun({}, {}, [], "")
    while words:
        word = words.pop(0)
        if word in ("-e", "--env"):
            name, _, value = words.pop(0).partition("=")
            run.env[name] = value
        elif word == "--mount":
            spec = dict(part.partition("=")[::2] for part in words.pop(0).split(","))
            assert spec.get("type") == "bind" and "readonly" in spec, f"--mount {spec}: a read-only bind mount"
            run.mounts[spec["dst"]] = spec["src"]
        elif word == "-p":
            run.ports.append(int(words.pop(0).rsplit(":", 1)[1].split("/")[0]))
        elif word == "--name":
            words.pop(0)
        elif word == "--rm":
            pass
        elif not word.startswith("-"):
            run.image = word
            assert not words, f"arguments after the image would replace its CMD: {words}"
        else:
            raise AssertionError(f"docker run option {word!r} is not emulated by this test: teach it")
    return run


def documented_variables() -> dict[str, str]:
    """The variable table: name -> its default column."""
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|", run_section(), re.M)
    assert rows, "the Run the container section needs its table of variables"
    return {name: default.strip() for name, default in rows}


def config_variables() -> dict[str, str]:
    """``${NAME...}`` in the image's config: name -> the operator after it (``""``, ``:-``, ``:?``)."""
    found = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-|:\?)?", image_config_source().read_text())
    return {name: op for name, op in found}


# --- the image on this machine ----------------------------------------------------

def world_readable_tempdir(prefix: str) -> Path:
    # pytest's tmp_path is 0700 under root's pytest-of-root: the image's user could not
    # enter it. The contents are test keys and a venv, nothing secret.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def as_image_user() -> dict[str, Any]:
    """Popen arguments that run a command as the image's USER.

    The tests run as root here: drop to the image's uid/gid (which need no passwd
    entry, as in the image) and clear root's supplementary groups. A non-root test run
    cannot switch users; the command then runs as that (already unprivileged) user."""
    if os.geteuid() != 0:
        return {}
    uid, gid = image_user()
    return {"user": uid, "group": gid, "extra_groups": []}


def image_python() -> str:
    """A Python of the image's version (FROM python:X.Y-...) that the image's user can run."""
    version = re.match(r"python:(\d+\.\d+)", runtime().base)
    assert version, f"the runtime stage is FROM {runtime().base}, expected python:X.Y-..."
    wanted = version.group(1)
    candidates = [sys._base_executable, shutil.which(f"python{wanted}"), f"/usr/bin/python{wanted}",
                  f"/usr/local/bin/python{wanted}"]
    tried = []
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            found = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=30, cwd="/", **as_image_user(),
            )
        except OSError as exc:
            tried.append(f"{candidate}: {exc}")
            continue
        if found.returncode == 0 and found.stdout.strip() == wanted:
            return candidate
        tried.append(f"{candidate}: {found.stdout.strip() or found.stderr.strip()}")
    raise AssertionError(f"no Python {wanted} that the image's user can execute; tried: {tried}")


def build_image_venv(work: Path) -> Path:
    """The venv standing for the runtime stage's /usr/local: the wheel built from
    exactly what the build stage copies, installed with its declared dependencies."""
    build = stages()[0]
    src = work / "build" / PurePosixPath(build.one("WORKDIR")).relative_to("/")
    src.mkdir(parents=True)
    for sources, dest in copies(build):
        for source in sources:
            target = src / dest
            if (ROOT / source).is_dir():  # Docker copies a directory's contents
                shutil.copytree(ROOT / source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target = target / source if dest.endswith("/") else target
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)
    step = build.one("RUN")
    assert step.startswith("pip wheel ") and step.endswith(" ."), step
    wheels = work / "wheels"
    # --no-deps: the dependencies' wheels come from the index below, not rebuilt here.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--wheel-dir", str(wheels), "."],
        check=True, capture_output=True, timeout=300, cwd=src,
    )
    install = runtime().all("RUN")
    assert any(step.startswith("pip install --no-cache-dir /wheels/") for step in install), install
    env_dir = work / "venv"
    subprocess.run([image_python(), "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    # The wheel and its declared dependencies, nothing else (pip's cache is allowed
    # here so the suite stays quick).
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "--quiet",
         str(next(wheels.glob("*.whl")))],
        check=True, capture_output=True, timeout=600,
    )
    return env_dir


@dataclass
class Container:
    """One run of the image: its ``/`` under ``root``, ports mapped to free ones."""

    root: Path
    venv: Path
    port: int
    admin_port: int
    env: dict[str, str]
    workdir: Path

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    @property
    def config(self) -> Path:
        return self.path(image_config_path())

    @property
    def key(self) -> Path:
        (dest,) = docker_run().mounts
        return self.path(dest)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def argv(self, command: list[str]) -> list[str]:
        found = shutil.which(command[0], path=self.env["PATH"])
        assert found and found.startswith(str(self.venv)), f"{command[0]} resolves to {found}, not the image's"
        return [found, *(str(self.path(a)) if a.startswith("/") else a for a in command[1:])]

    def popen(self, command: list[str], env: Mapping[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(command), cwd=self.workdir, env=dict(env or self.env), text=True,
                                **as_image_user(), **kwargs)

    def run(self, command: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        with self.popen(command, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def image_config_text(container: Container) -> str:
    """The config as COPY puts it, with this run's ports and the mounts under ``root``."""
    text = image_config_source().read_text()
    for image_port, port in ((8080, container.port), (9901, container.admin_port)):
        listen = f"0.0.0.0:{image_port}"
        assert text.count(listen) == 1, f"the image's config should listen on {listen} once"
        text = text.replace(listen, f"0.0.0.0:{port}")
    for dest in docker_run().mounts:
        text = text.replace(dest, str(container.path(dest)))
    return text


def make_container(root: Path, venv: Path) -> Container:
    """Lay out the image's ``/`` under ``root`` (world-readable) with its config in place."""
    port, admin_port = free_port(), free_port()
    env = {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", **BASE_IMAGE_ENV}
    for name, value in image_env().items():
        env[name] = value.replace(":9901", f":{admin_port}")
    workdir = root / "workdir"  # the image sets no WORKDIR: its user starts in an empty /
    workdir.mkdir()
    workdir.chmod(0o755)
    box = Container(root, venv, port, admin_port, env, workdir)
    box.config.parent.mkdir(parents=True)
    box.config.write_text(image_config_text(box))
    box.config.chmod(0o644)  # as COPY leaves it: root's, readable by all
    for parent in (box.config.parent, *box.config.parent.parents):
        if parent == root:
            break
        parent.chmod(0o755)
    return box


def operator_env(container: Container, stub_url: str) -> dict[str, str]:
    """The image's env plus what the docs' docker run line passes, with test values."""
    values = {"UPSTREAM_URLS": stub_url, "ADMIN_TOKEN": secrets.token_hex(32)}
    documented = docker_run().env
    assert set(documented) == set(values), f"the docs pass {sorted(documented)}; this test knows {sorted(values)}"
    return {**container.env, **values}


def mount_key(container: Container, pem: bytes, mode: int = 0o644) -> Path:
    key = container.key
    key.parent.mkdir(parents=True, exist_ok=True)
    key.parent.chmod(0o755)
    key.write_bytes(pem)
    key.chmod(mode)
    return key


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
