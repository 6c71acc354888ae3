"""Render a kustomization the way ``kustomize build`` (``kubectl apply -k``) does,
for the fields deploy/kubernetes/kustomization.yaml uses, without kubectl.

There is no kubectl or kustomize binary in the test environment, and the manifests
must be validated exactly as the cluster will receive them: with the generated
ConfigMap and Secrets, their content-hash name suffixes, the references to them
rewritten, and the image set by ``images:``. A field this module does not render is
an error (:class:`KustomizationError`), never silently skipped: otherwise a new
field would go out to clusters untested.

What kustomize does that matters here:

- ``configMapGenerator`` / ``secretGenerator``: ``files`` (``path`` or ``key=path``,
  inside the kustomization directory) and, for Secrets, ``envs`` (``KEY=VALUE`` lines,
  values taken verbatim). The object's name gets ``-<hash>``: kustomize's hasher
  (api/hasher) takes the SHA-256 of the JSON encoding of ``kind``, the unsuffixed
  ``name``, ``data`` (and a Secret's ``type``) with sorted keys, keeps ten hex
  digits and replaces 0, 1, 3, a, e by g, h, k, m, t.
- name references to generated objects in pod templates are rewritten to the
  suffixed name (volumes, env ``valueFrom``, ``envFrom``).
- ``images``: a container whose image name equals ``name`` gets ``newName``,
  ``newTag`` or ``digest``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["KustomizationError", "Rendered", "render", "kustomize_hash", "parse_env_file"]

_KNOWN_FIELDS = frozenset({"apiVersion", "kind", "resources", "configMapGenerator", "secretGenerator", "images"})
_GENERATOR_FIELDS = {
    "ConfigMap": frozenset({"name", "files"}),
    "Secret": frozenset({"name", "files", "envs", "type"}),
}
_IMAGE_FIELDS = frozenset({"name", "newName", "newTag", "digest"})
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # Kubernetes' IsEnvVarName
_POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


class KustomizationError(Exception):
    """The kustomization cannot be rendered (kustomize would fail too, or the field
    is one this renderer does not know)."""


def _go_json(value: Any) -> str:
    """JSON as Go's ``encoding/json`` writes it: sorted keys, no spaces, UTF-8 kept,
    and ``<``, ``>``, ``&``, U+2028, U+2029 escaped (Go's HTML-safe default)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def kustomize_hash(obj: dict[str, Any]) -> str:
    """The name suffix kustomize gives a generated ConfigMap or Secret (``obj`` named
    by its unsuffixed name)."""
    kind = obj["kind"]
    encoded: dict[str, Any] = {"kind": kind, "name": obj.get("metadata", {}).get("name", ""), "data": obj.get("data", "")}
    if kind == "ConfigMap":
        if obj.get("binaryData"):
            encoded["binaryData"] = obj["binaryData"]
    elif kind == "Secret":
        encoded["type"] = obj.get("type", "")
        if obj.get("stringData"):
            encoded["stringData"] = obj["stringData"]
    else:
        raise KustomizationError(f"kustomize hashes only ConfigMaps and Secrets here, not {kind}")
    digest = hashlib.sha256(_go_json(encoded).encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def parse_env_file(text: str, *, source: str) -> dict[str, str]:
    """``KEY=VALUE`` lines as kustomize reads them: leading blanks and ``#`` comment
    lines skipped, the value taken verbatim after the first ``=``. kustomize takes a
    line without ``=`` from its own environment; that would make the render depend on
    the shell it runs in, so it is refused here."""
    pairs: dict[str, str] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not _ENV_NAME.match(key):
            raise KustomizationError(f"{source}:{number}: {key!r} is not a valid variable name")
        if not sep:
            raise KustomizationError(f"{source}:{number}: {key} has no '=VALUE'")
        pairs[key] = value
    return pairs


@dataclass(frozen=True)
class Rendered:
    """The objects ``kustomize build`` would print, and the generated names."""

    objects: tuple[dict[str, Any], ...]
    generated: dict[tuple[str, str], str]
    """(kind, name as written) -> name with the hash suffix."""

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """One object by kind and name (a generated one by its unsuffixed name too)."""
        name = self.generated.get((kind, name), name)
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        if len(found) != 1:
            raise KeyError(f"{kind}/{name}: {len(found)} objects")
        return found[0]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]


def _inside(root: Path, relative: str) -> Path:
    """kustomize's load restrictor: files come from inside the kustomization."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise KustomizationError(f"{relative}: outside the kustomization directory")
    if not path.is_file():
        raise KustomizationError(f"{relative}: no such file in {root}")
    return path


def _generate(root: Path, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - _GENERATOR_FIELDS[kind]
    if unknown:
        raise KustomizationError(f"{kind} generator {spec.get('name')}: fields not rendered here: {sorted(unknown)}")
    entries: dict[str, bytes] = {}
    for item in spec.get("files", []):
        key, sep, relative = item.partition("=")
        if not sep:
            key, relative = Path(item).name, item
        entries[key] = _inside(root, relative).read_bytes()
    for item in spec.get("envs", []):
        path = _inside(root, item)
        entries.update({k: v.encode() for k, v in parse_env_file(path.read_text(), source=item).items()})
    if kind == "ConfigMap":
        data: dict[str, str] = {}
        for key, raw in entries.items():
            try:
                data[key] = raw.decode()
            except UnicodeDecodeError:
                raise KustomizationError(f"{key}: not UTF-8 (kustomize would use binaryData)") from None
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": spec["name"]}, "data": data}
    else:
        obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": spec["name"]},
            "type": spec.get("type", "Opaque"),
            "data": {key: base64.b64encode(raw).decode() for key, raw in entries.items()},
        }
    return obj


def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] in _POD_TEMPLATE_KINDS:
        return [obj["spec"]["template"]["spec"]]
    if obj["kind"] == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def _rewrite_references(pod: dict[str, Any], names: dict[tuple[str, str], str]) -> None:
    def rename(holder: dict[str, Any] | None, field: str, kind: str) -> None:
        if holder is not None and (kind, holder.get(field)) in names:
            holder[field] = names[(kind, holder[field])]

    for volume in pod.get("volumes", []):
        rename(volume.get("configMap"), "name", "ConfigMap")
        rename(volume.get("secret"), "secretName", "Secret")
        for source in volume.get("projected", {}).get("sources", []):
            rename(source.get("configMap"), "name", "ConfigMap")
            rename(source.get("secret"), "name", "Secret")
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        for env in container.get("env", []):
            source = env.get("valueFrom", {})
            rename(source.get("configMapKeyRef"), "name", "ConfigMap")
            rename(source.get("secretKeyRef"), "name", "Secret")
        for env_from in container.get("envFrom", []):
            rename(env_from.get("configMapRef"), "name", "ConfigMap")
            rename(env_from.get("secretRef"), "name", "Secret")
    for pull in pod.get("imagePullSecrets", []):
        rename(pull, "name", "Secret")


def _image_name(image: str) -> tuple[str, str]:
    """(name, the tag or digest part with its separator)."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def _set_images(pod: dict[str, Any], images: list[dict[str, Any]]) -> None:
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        name, suffix = _image_name(container["image"])
        for image in images:
            if image["name"] != name:
                continue
            new_name = image.get("newName", name)
            if "digest" in image:
                suffix = "@" + image["digest"]
            elif "newTag" in image:
                suffix = ":" + str(image["newTag"])
            container["image"] = new_name + suffix


def render(directory: Path) -> Rendered:
    root = Path(directory)
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise KustomizationError(f"kustomization.yaml: kind {kustomization.get('kind')!r}")
    unknown = set(kustomization) - _KNOWN_FIELDS
    if unknown:
        raise KustomizationError(f"kustomization.yaml: fields not rendered here: {sorted(unknown)}")
    images = kustomization.get("images", [])
    for image in images:
        if set(image) - _IMAGE_FIELDS or "name" not in image:
            raise KustomizationError(f"images: fields not rendered here in {image}")

    objects: list[dict[str, Any]] = []
    for relative in kustomization.get("resources", []):
        path = _inside(root, relative)
        objects.extend(copy.deepcopy(doc) for doc in yaml.safe_load_all(path.read_text()) if doc)

    generated: dict[tuple[str, str], str] = {}
    for field, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for spec in kustomization.get(field, []):
            obj = _generate(root, kind, spec)
            suffixed = f"{spec['name']}-{kustomize_hash(obj)}"
            obj["metadata"]["name"] = suffixed
            generated[(kind, spec["name"])] = suffixed
            objects.append(obj)

    seen: set[tuple[str, str]] = set()
    for obj in objects:
        identity = (obj["kind"], obj["metadata"]["name"])
        if identity in seen:
            raise KustomizationError(f"{identity[0]}/{identity[1]} is defined twice")
        seen.add(identity)
        for pod in _pod_specs(obj):
            _rewrite_references(pod, generated)
            _set_images(pod, images)
    return Rendered(objects=tuple(objects), generated=generated)
