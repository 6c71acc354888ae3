"""A gateway container of deploy/kubernetes, laid out on the local disk as the
kubelet would lay it out, so that the real ``gateway`` CLI runs as it does in the pod.

From the rendered manifests (tests/kustomization.py) it takes the container's
command, its ``workingDir``, the ConfigMap and Secret volumes mounted under that
directory (written as files at the same relative paths), and its environment
(literal values and ``secretKeyRef`` / ``configMapKeyRef`` resolved from the
rendered objects). Mounts outside the working directory (the ``/tmp`` emptyDir) are
not recreated: the process uses the machine's own.
"""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tests.integration.gateway_process import GatewayProcess
from tests.kustomization import Rendered, render

__all__ = ["KUSTOMIZATION", "PodContainer", "PodGateways", "container_of", "loopback_config", "render_deploy_kubernetes"]

KUSTOMIZATION = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"


def render_deploy_kubernetes(destination: Path, *, admin_token: str) -> Rendered:
    """Render a copy of deploy/kubernetes at ``destination``, with the operator's
    admin-token.env made up: it is git-ignored, so a checkout does not have it."""
    shutil.copytree(KUSTOMIZATION, destination, ignore=shutil.ignore_patterns("admin-token.env"))
    (destination / "admin-token.env").write_text(f"ADMIN_TOKEN={admin_token}\n")
    return render(destination)


def container_of(rendered: Rendered, kind: str, name: str, container: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, container spec) of one workload's container."""
    pod = rendered.get(kind, name)["spec"]["template"]["spec"]
    [spec] = [c for c in pod["containers"] if c["name"] == container]
    return pod, spec


def _volume_files(rendered: Rendered, volume: dict[str, Any]) -> dict[str, bytes]:
    if "configMap" in volume:
        data = rendered.get("ConfigMap", volume["configMap"]["name"])["data"]
        return {key: value.encode() for key, value in data.items()}
    if "secret" in volume:
        data = rendered.get("Secret", volume["secret"]["secretName"])["data"]
        return {key: base64.b64decode(value) for key, value in data.items()}
    raise ValueError(f"volume {volume['name']}: only configMap and secret volumes are laid out here")


def _env_value(rendered: Rendered, env: dict[str, Any]) -> str:
    if "value" in env:
        return str(env["value"])
    source = env["valueFrom"]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        return base64.b64decode(rendered.get("Secret", ref["name"])["data"][ref["key"]]).decode()
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return str(rendered.get("ConfigMap", ref["name"])["data"][ref["key"]])
    raise ValueError(f"env {env['name']}: only value, secretKeyRef and configMapKeyRef are resolved here")


@dataclass(frozen=True)
class PodContainer:
    """The container's view, rooted at a local directory standing for its workingDir."""

    workdir: Path
    argv: list[str]
    env: dict[str, str]

    @classmethod
    def lay_out(cls, rendered: Rendered, pod: dict[str, Any], container: dict[str, Any], root: Path) -> PodContainer:
        workdir = PurePosixPath(container["workingDir"])
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            target = PurePosixPath(mount["mountPath"])
            if not target.is_relative_to(workdir):
                continue
            directory = root / target.relative_to(workdir)
            directory.mkdir(parents=True, exist_ok=True)
            for key, content in _volume_files(rendered, volumes[mount["name"]]).items():
                (directory / key).write_bytes(content)
        env = {e["name"]: _env_value(rendered, e) for e in container.get("env", [])}
        return cls(workdir=root, argv=[*container.get("command", []), *container.get("args", [])], env=env)

    @property
    def config_path(self) -> Path:
        """The file after ``-c`` in the container's command, on the local disk."""
        return self.workdir / self.argv[self.argv.index("-c") + 1]


def loopback_config(container: PodContainer, **replace: Any) -> dict[str, Any]:
    """The pod's config file as YAML data, ``${VAR}``s still in place (the gateway
    interpolates them from the environment it is given), without the listen
    addresses (tests/integration/gateway_process.py puts them on free loopback ports:
    0.0.0.0:8080 cannot be shared on a test machine), and with the sections in
    ``replace`` swapped, e.g. upstreams and routes aimed at a stub instead of the
    cluster's backends."""
    config: dict[str, Any] = yaml.safe_load(container.config_path.read_text())
    config["server"] = {k: v for k, v in config["server"].items() if k != "listen"}
    config["admin"] = {k: v for k, v in config["admin"].items() if k != "listen"}
    config.update(replace)
    return config


class PodGateways:
    """Real ``gateway run`` processes started as the Deployment's container: its
    config file, its key Secret at the same relative path, its environment (with
    ``env`` overriding, e.g. REDIS_URL for a local redis-server). Each in its own
    directory standing for its working directory."""

    def __init__(self, workdir: Path, *, admin_token: str) -> None:
        self.workdir = workdir
        self.rendered = render_deploy_kubernetes(workdir / "kubernetes", admin_token=admin_token)
        self.pod, self.container = container_of(self.rendered, "Deployment", "gateway", "gateway")
        self.started: list[GatewayProcess] = []

    def section(self, name: str) -> Any:
        """One section of the pod's config file as written (``${VAR}``s in place)."""
        [config_map] = [v["configMap"]["name"] for v in self.pod["volumes"] if "configMap" in v]
        [text] = self.rendered.get("ConfigMap", config_map)["data"].values()
        return yaml.safe_load(text)[name]

    def start(self, count: int = 1, *, env: dict[str, str] | None = None, **replace: Any) -> list[GatewayProcess]:
        """``count`` instances of the same pod, started side by side (each start is
        mostly Python importing; one after the other is slow on a busy machine)."""
        gateways = []
        for _ in range(count):
            root = self.workdir / f"pod{len(self.started)}"
            laid_out = PodContainer.lay_out(self.rendered, self.pod, self.container, root)
            gateway = GatewayProcess(loopback_config(laid_out, **replace), root, env={**laid_out.env, **(env or {})})
            self.started.append(gateway)
            gateways.append(gateway)
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(lambda gateway: gateway.start(timeout=60.0), gateways))
        return gateways

    def stop_all(self) -> None:
        """SIGTERM every one still running, all at once; each must drain and exit 0."""
        running = [g for g in self.started if g.proc is not None and g.proc.poll() is None]
        for gateway in running:
            gateway.signal(signal.SIGTERM)
        failed = []
        for gateway in self.started:
            assert gateway.proc is not None
            try:
                code = gateway.proc.wait(30)
            except subprocess.TimeoutExpired:
                gateway.kill()
                code = None
            if code != 0:
                failed.append(f"exit {code}:\n{gateway.log()[-2000:]}")
        assert not failed, "\n".join(failed)
