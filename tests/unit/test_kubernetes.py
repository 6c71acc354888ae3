"""deploy/kubernetes, checked offline: rendered as ``kubectl apply -k`` would send it
(tests/kustomization.py), every object validated against the pinned Kubernetes
version's schemas in strict mode, the ConfigMap's config run through the real
``gateway check`` laid out as the pod sees it, and every place where the manifests
and the gateway must agree (ports, probe paths, environment, selectors, grace
period, CPU and workers) compared.

The integration side (probes against a running gateway, Redis's arguments, three
instances on one Redis) is in tests/integration/test_kubernetes_pod.py and
test_many_instances.py.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes_validate import utils as kubernetes_validate

from gateway.admin import build_admin_app
from gateway.config import GatewayConfig, load_config
from gateway.config.loader import load_yaml
from gateway.metrics import Metrics
from tests.integration.gateway_process import gateway_command
from tests.kubernetes_pod import KUSTOMIZATION, PodContainer, container_of, render_deploy_kubernetes
from tests.kustomization import Rendered, kustomize_hash, render

ROOT = Path(__file__).resolve().parents[2]

KUBERNETES_VERSION = "1.31.0"
"""The oldest Kubernetes the manifests promise to work on (PodDisruptionBudget's
``unhealthyPodEvictionPolicy`` is GA from 1.31). docs/operations.md says so too."""

TEST_ADMIN_TOKEN = "k8s-test-admin-token"


def rendered_copy(destination: Path, *, token: str = TEST_ADMIN_TOKEN) -> Rendered:
    return render_deploy_kubernetes(destination, admin_token=token)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return rendered_copy(tmp_path_factory.mktemp("kustomization") / "kubernetes")


@pytest.fixture(scope="module")
def gateway_pod(rendered: Rendered) -> dict[str, Any]:
    return container_of(rendered, "Deployment", "gateway", "gateway")[0]


@pytest.fixture(scope="module")
def gateway_container(rendered: Rendered) -> dict[str, Any]:
    return container_of(rendered, "Deployment", "gateway", "gateway")[1]


@pytest.fixture(scope="module")
def laid_out(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory) -> PodContainer:
    pod, container = container_of(rendered, "Deployment", "gateway", "gateway")
    return PodContainer.lay_out(rendered, pod, container, tmp_path_factory.mktemp("pod"))


@pytest.fixture(scope="module")
def config(laid_out: PodContainer) -> Iterator[GatewayConfig]:
    # The key path is relative to the container's working directory.
    cwd = os.getcwd()
    os.chdir(laid_out.workdir)
    try:
        yield load_config(laid_out.config_path, environ=laid_out.env)
    finally:
        os.chdir(cwd)


def cores(quantity: str) -> float:
    """A Kubernetes CPU quantity (``250m``, ``1``, ``1.5``) in cores."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def named_port(container: dict[str, Any], name: str | int) -> int:
    if isinstance(name, int):
        return name
    [port] = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


# -- the renderer agrees with kustomize ----------------------------------------------

# Expected suffixes from kustomize's own hasher tests (api/hasher/hasher_test.go).
@pytest.mark.parametrize(
    ("obj", "suffix"),
    [
        ({"kind": "ConfigMap"}, "6ct58987ht"),
        ({"kind": "ConfigMap", "data": {"one": ""}}, "9g67k2htb6"),
        ({"kind": "ConfigMap", "data": {"two": 2, "one": "", "three": 3}}, "7757f9kkct"),
        ({"kind": "ConfigMap", "binaryData": {"one": ""}}, "6mtk2m274t"),
        ({"kind": "ConfigMap", "data": {"one": ""}, "binaryData": {"two": ""}}, "698h7c7t9m"),
        ({"kind": "Secret", "type": "my-type"}, "5gmgkf8578"),
        ({"kind": "Secret", "type": "my-type", "data": {"one": ""}}, "74bd68bm66"),
        ({"kind": "Secret", "type": "my-type", "data": {"two": 2, "one": "", "three": 3}}, "4gf75c7476"),
        ({"kind": "Secret", "type": "my-type", "data": {"one": ""}, "stringData": {"two": 2}}, "c4h4264gdb"),
    ],
)
def test_generated_names_carry_kustomizes_hash(obj: dict[str, Any], suffix: str) -> None:
    assert kustomize_hash(obj) == suffix


def test_a_change_to_any_generated_file_rolls_the_pods(tmp_path: Path, rendered: Rendered) -> None:
    """SIGHUP-free rollout by checksum: the pod template names the generated objects
    by their content hash, so new content is a new template (and `kubectl apply -k`
    starts a rollout); the same content renders the same template (no rollout)."""

    def template(r: Rendered) -> dict[str, Any]:
        return r.get("Deployment", "gateway")["spec"]["template"]

    assert template(rendered_copy(tmp_path / "same")) == template(rendered)
    for changed, edit in [
        ("gateway-config", lambda d: (d / "gateway.yaml").write_text((d / "gateway.yaml").read_text() + "# edited\n")),
        ("gateway-jwt", lambda d: (d / "jwt.pub").write_text("rotated\n" + (d / "jwt.pub").read_text())),
    ]:
        directory = tmp_path / changed
        rendered_copy(directory)
        edit(directory)
        after = render(directory)
        assert template(after) != template(rendered)
        kind = "ConfigMap" if changed == "gateway-config" else "Secret"
        assert after.generated[(kind, changed)] != rendered.generated[(kind, changed)]
    rotated = rendered_copy(tmp_path / "token", token="another-token")
    assert template(rotated) != template(rendered)  # the token is read at start: a rotation restarts


# -- every object is valid for the pinned Kubernetes -----------------------------------


def test_every_object_validates_strictly_against_the_pinned_version(rendered: Rendered) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"].rsplit("-", 1)[0] if o["kind"] in ("ConfigMap", "Secret") else o["metadata"]["name"]) for o in rendered.objects)
    assert kinds == [
        ("ConfigMap", "gateway-config"),
        ("Deployment", "gateway"),
        ("HorizontalPodAutoscaler", "gateway"),
        ("NetworkPolicy", "gateway-redis"),
        ("PodDisruptionBudget", "gateway"),
        ("Secret", "gateway-admin"),
        ("Secret", "gateway-jwt"),
        ("Service", "gateway"),
        ("Service", "gateway-redis"),
        ("StatefulSet", "gateway-redis"),
    ]
    failures = []
    for obj in rendered.objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_strict_validation_refuses_an_unknown_field(gateway_container: dict[str, Any], rendered: Rendered) -> None:
    """The validation above can fail: a misspelt field is an error, not ignored."""
    import copy

    deployment = copy.deepcopy(rendered.get("Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 5}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_configmap_and_secret_a_pod_uses_is_rendered(rendered: Rendered) -> None:
    """A misspelt name would leave pods in CreateContainerConfigError; a name that is
    not rewritten to the hashed one would miss the rollout on change."""
    names = {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}
    missing = []
    for workload in [*rendered.of_kind("Deployment"), *rendered.of_kind("StatefulSet")]:
        pod = workload["spec"]["template"]["spec"]
        wanted: list[tuple[str, str, str | None]] = []
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                wanted.append(("ConfigMap", volume["configMap"]["name"], None))
            if "secret" in volume:
                wanted.append(("Secret", volume["secret"]["secretName"], None))
        for container in pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    wanted.append(("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]))
                if "configMapKeyRef" in ref:
                    wanted.append(("ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]))
        for kind, name, key in wanted:
            obj = names.get((kind, name))
            if obj is None or (key is not None and key not in obj.get("data", {})):
                missing.append(f"{workload['metadata']['name']}: {kind}/{name}" + (f" key {key}" if key else ""))
    assert not missing, missing
    assert set(rendered.generated.values()) <= {name for _, name in names}


def test_every_file_in_the_directory_is_part_of_the_kustomization() -> None:
    import yaml

    kustomization = yaml.safe_load((KUSTOMIZATION / "kustomization.yaml").read_text())
    used = {"kustomization.yaml", ".gitignore", "admin-token.env", *kustomization["resources"]}
    for generator in [*kustomization["configMapGenerator"], *kustomization["secretGenerator"]]:
        used |= {item.rpartition("=")[2] for item in generator.get("files", []) + generator.get("envs", [])}
    present = {p.name for p in KUSTOMIZATION.iterdir()}
    assert present - used == set(), "files that `kubectl apply -k` would not deploy"


def test_the_admin_token_file_is_never_committed() -> None:
    done = subprocess.run(
        ["git", "check-ignore", "--quiet", "deploy/kubernetes/admin-token.env"], cwd=ROOT, capture_output=True
    )
    assert done.returncode == 0, "deploy/kubernetes/admin-token.env must be git-ignored"


# -- the gateway accepts what the pod gives it -----------------------------------------


def test_gateway_check_accepts_the_config_as_the_pod_sees_it(laid_out: PodContainer) -> None:
    """The real CLI, from the container's working directory, with the container's
    environment and nothing else: every ${VAR} the config needs without a default
    must be among them, or the check fails."""
    argv = [*gateway_command(), "check", *laid_out.argv[2:]]
    assert laid_out.argv[:2] == ["gateway", "run"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **laid_out.env}
    done = subprocess.run(argv, cwd=laid_out.workdir, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "config/gateway.yaml: OK" in done.stdout
    assert "listen: 0.0.0.0:8080   admin: 0.0.0.0:9901   workers: 1" in done.stdout
    assert "store: redis redis://gateway-redis:6379/0" in done.stdout
    assert "warning:" not in done.stdout


def test_the_container_gets_no_environment_the_config_does_not_read(
    laid_out: PodContainer, gateway_pod: dict[str, Any], gateway_container: dict[str, Any]
) -> None:
    class Recording(dict[str, str]):
        def __init__(self, values: Mapping[str, str]) -> None:
            super().__init__(values)
            self.read: set[str] = set()

        def get(self, key: str, default: Any = None) -> Any:
            self.read.add(key)
            return super().get(key, default)

    environ = Recording(laid_out.env)
    load_yaml(laid_out.config_path.read_text(), environ=environ)
    assert set(laid_out.env) <= environ.read, "variables the config never reads"
    assert set(laid_out.env) == {"ADMIN_TOKEN", "REDIS_URL"}
    # Whole Secrets or ConfigMaps as environment could bring anything.
    assert "envFrom" not in gateway_container
    # Kubernetes would add FOO_SERVICE_HOST/PORT for every Service in the namespace.
    assert gateway_pod["enableServiceLinks"] is False


# -- ports and probes ------------------------------------------------------------------


def test_container_ports_are_the_gateways_listeners(gateway_container: dict[str, Any], config: GatewayConfig) -> None:
    assert config.server.listen == (("0.0.0.0", named_port(gateway_container, "http")),)
    assert config.admin.listen == ("0.0.0.0", named_port(gateway_container, "admin"))


def test_the_service_sends_traffic_to_the_proxy_port(rendered: Rendered, gateway_container: dict[str, Any], config: GatewayConfig) -> None:
    service = rendered.get("Service", "gateway")
    [port] = service["spec"]["ports"]
    assert named_port(gateway_container, port["targetPort"]) == config.server.listen[0][1]


def readiness_url(container: dict[str, Any]) -> str:
    script = container["readinessProbe"]["exec"]["command"][-1]
    [url] = re.findall(r"http://[^\"'\s]+", script)
    return url


def test_probes_use_the_admin_port_and_paths_the_gateway_serves(
    gateway_container: dict[str, Any], config: GatewayConfig
) -> None:
    live = gateway_container["livenessProbe"]["httpGet"]
    assert named_port(gateway_container, live["port"]) == config.admin.listen[1]
    assert "httpHeaders" not in live  # /healthz is open; a token here would be in clear
    ready = urlsplit(readiness_url(gateway_container))
    assert (ready.hostname, ready.port) == ("127.0.0.1", config.admin.listen[1])
    assert ready.path == "/readyz"
    assert gateway_container["readinessProbe"]["exec"]["command"][0] == "python"

    app = build_admin_app(metrics=Metrics(), token="t", runtime=lambda: None)  # type: ignore[arg-type,return-value]
    served = {resource.canonical for resource in app.router.resources()}
    assert {live["path"], ready.path} <= served


async def test_healthz_is_open_and_readyz_needs_the_token(aiohttp_client: Any) -> None:
    """Why the probes differ: the liveness httpGet sends no header, the readiness
    probe must send the admin token (so it runs in the container, reading it)."""

    class Ready:
        def readiness(self) -> list[str]:
            return []

    client = await aiohttp_client(build_admin_app(metrics=Metrics(), token="t", runtime=lambda: Ready()))  # type: ignore[arg-type,return-value]
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 401
    assert (await client.get("/readyz", headers={"Authorization": "Bearer t"})).status == 200


def test_the_grace_period_covers_the_pause_and_the_drain(gateway_pod: dict[str, Any], gateway_container: dict[str, Any], config: GatewayConfig) -> None:
    """The kubelet's clock starts before preStop: it must not SIGKILL mid-drain. The
    3 s are the supervisor's own margin over shutdown_timeout (docs/operations.md, Drain)."""
    command = gateway_container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    pause = int(command[1])
    assert pause >= 5, "endpoint removal takes a few seconds to reach kube-proxy and ingresses"
    assert gateway_pod["terminationGracePeriodSeconds"] > pause + config.server.shutdown_timeout + 3


# -- selectors and targets -------------------------------------------------------------


def test_services_select_their_pods_and_only_those(rendered: Rendered) -> None:
    deployment = rendered.get("Deployment", "gateway")
    statefulset = rendered.get("StatefulSet", "gateway-redis")
    gateway_labels = deployment["spec"]["template"]["metadata"]["labels"]
    redis_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], gateway_labels)
    assert selects(statefulset["spec"]["selector"]["matchLabels"], redis_labels)

    gateway_service = rendered.get("Service", "gateway")["spec"]
    assert selects(gateway_service["selector"], gateway_labels)
    assert not selects(gateway_service["selector"], redis_labels)
    redis_service = rendered.get("Service", "gateway-redis")
    assert selects(redis_service["spec"]["selector"], redis_labels)
    assert not selects(redis_service["spec"]["selector"], gateway_labels)
    assert redis_service["spec"]["clusterIP"] == "None"  # headless, as serviceName needs
    assert statefulset["spec"]["serviceName"] == redis_service["metadata"]["name"]
    assert statefulset["spec"]["replicas"] == 1


def test_redis_url_names_the_redis_service(rendered: Rendered, config: GatewayConfig) -> None:
    service = rendered.get("Service", "gateway-redis")
    [port] = service["spec"]["ports"]
    _, redis = container_of(rendered, "StatefulSet", "gateway-redis", "redis")
    assert config.store.kind == "redis" and config.store.url is not None
    url = urlsplit(config.store.url)
    assert (url.hostname, url.port) == (service["metadata"]["name"], port["port"])
    assert named_port(redis, port["targetPort"]) == port["port"]


def test_only_the_gateway_reaches_redis(rendered: Rendered) -> None:
    policy = rendered.get("NetworkPolicy", "gateway-redis")["spec"]
    _, redis = container_of(rendered, "StatefulSet", "gateway-redis", "redis")
    redis_labels = rendered.get("StatefulSet", "gateway-redis")["spec"]["template"]["metadata"]["labels"]
    gateway_labels = rendered.get("Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["podSelector"]["matchLabels"], redis_labels)
    [rule] = policy["ingress"]
    [peer] = rule["from"]
    assert selects(peer["podSelector"]["matchLabels"], gateway_labels)
    assert [named_port(redis, p["port"]) for p in rule["ports"]] == [6379]


def test_pdb_and_hpa_target_the_gateway_deployment(rendered: Rendered) -> None:
    deployment = rendered.get("Deployment", "gateway")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    redis_labels = rendered.get("StatefulSet", "gateway-redis")["spec"]["template"]["metadata"]["labels"]
    pdb = rendered.get("PodDisruptionBudget", "gateway")["spec"]
    assert selects(pdb["selector"]["matchLabels"], labels)
    assert not selects(pdb["selector"]["matchLabels"], redis_labels)

    hpa = rendered.get("HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    # The HPA owns the replica count; a spec.replicas would reset it on every apply.
    assert "replicas" not in deployment["spec"]
    # Many instances, and one may be disrupted while the others serve.
    assert hpa["minReplicas"] >= 2 and pdb["maxUnavailable"] < hpa["minReplicas"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_workers_and_autoscaling_fit_the_cpu_limit(rendered: Rendered, gateway_container: dict[str, Any], config: GatewayConfig) -> None:
    """One process uses at most one core: workers are the cores the limit grants
    (``auto`` would count the node's CPUs), and the HPA adds pods before that is used up."""
    limit = cores(gateway_container["resources"]["limits"]["cpu"])
    assert isinstance(config.server.workers, int)
    assert 1 <= config.server.workers <= max(1, math.floor(limit))
    [metric] = rendered.get("HorizontalPodAutoscaler", "gateway")["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert cores(metric["resource"]["target"]["averageValue"]) < limit


# -- locked down ---------------------------------------------------------------------


def dockerfile_uid() -> int:
    match = re.search(r"--uid[ =](\d+)", (ROOT / "Dockerfile").read_text())
    assert match, "the Dockerfile no longer creates its user with --uid: update this test and deployment.yaml"
    return int(match.group(1))


@pytest.mark.parametrize(("kind", "name", "container"), [("Deployment", "gateway", "gateway"), ("StatefulSet", "gateway-redis", "redis")])
def test_pods_run_locked_down(rendered: Rendered, kind: str, name: str, container: str) -> None:
    pod, spec = container_of(rendered, kind, name, container)
    assert pod["automountServiceAccountToken"] is False
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    if kind == "Deployment":
        assert security["runAsUser"] == dockerfile_uid()
    assert spec["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    for bound in ("requests", "limits"):
        assert set(spec["resources"][bound]) == {"cpu", "memory"}
    image = spec["image"]
    assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), "pin the image"


def test_the_image_comes_from_the_kustomization(gateway_container: dict[str, Any]) -> None:
    assert gateway_container["image"] == "registry.example.com/gateway:0.1.0"
