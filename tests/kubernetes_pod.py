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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tests.kustomization import Rendered

__all__ = ["PodContainer", "container_of"]


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
