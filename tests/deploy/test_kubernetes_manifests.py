"""deploy/kubernetes: every kustomization renders with `kubectl kustomize`, every rendered
object validates against the Kubernetes schemas (kubernetes-validate, strict: unknown fields
fail), and the pieces agree with each other and with serval (probes, drain, metric names)."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

from serval.config import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = sorted(p.parent for p in KUBERNETES.rglob("kustomization.yaml"))
OVERLAYS = ("overlays/dev", "overlays/production")
# The oldest Kubernetes the manifests promise (HPA autoscaling/v2, PDB policy/v1, probes).
KUBERNETES_VERSION = "1.29"
SCHEMA_DIR = f"v{KUBERNETES_VERSION}.0-local-strict"
# Custom resources have no schema in kubernetes-validate: ours (tests/deploy/crd_schemas)
# type the fields the manifests use, refer to the Kubernetes definitions for containers and
# metadata, and refuse any other field.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): (
        "clusterservingruntime-serving-v1alpha1.json"
    ),
}


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl is needed: run scripts/install-system-packages.sh"
    return found


@cache
def render(folder: Path) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def one(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    path = Path(__file__).parent / "crd_schemas" / CRD_SCHEMAS[api_version, kind]
    schema = json.loads(path.read_text())
    definitions = schema_contents(
        f"kubernetes-json-schema/{SCHEMA_DIR}/_definitions.json", KUBERNETES_VERSION
    )
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(obj: dict[str, Any]) -> None:
    if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS:
        crd_validator(obj["apiVersion"], obj["kind"]).validate(obj)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def config_map(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap")["data"]
    return data


@pytest.mark.parametrize(
    "folder", KUSTOMIZATIONS, ids=[str(p.relative_to(KUBERNETES)) for p in KUSTOMIZATIONS]
)
def test_every_kustomization_renders_and_validates(folder: Path) -> None:
    objects = render(folder)
    assert objects, f"{folder} renders nothing"
    for obj in objects:
        try:
            validate(obj)
        except jsonschema.ValidationError as exc:
            where = f"{folder.relative_to(KUBERNETES)}: {obj['kind']}/{obj['metadata']['name']}"
            pytest.fail(f"{where}: {exc.message} at {exc.json_path}")


def test_a_wrong_field_is_refused() -> None:
    # The validation is strict: a misspelt field fails, in core kinds and in our CRD schemas.
    deployment = json.loads(json.dumps(one(render(KUBERNETES / "base"), "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(jsonschema.ValidationError):
        validate(deployment)
    runtime = json.loads(json.dumps(one(render(KUBERNETES / "kserve"), "ClusterServingRuntime")))
    runtime["spec"]["containers"][0]["argz"] = ["serve"]
    with pytest.raises(jsonschema.ValidationError):
        validate(runtime)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_drains_before_the_kubelet_kills_it(overlay: str) -> None:
    objects = render(KUBERNETES / overlay)
    settings = config_map(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    drain = float(settings["SERVAL_DRAIN_DELAY_S"])
    exit_timeout = float(settings["SERVAL_EXIT_TIMEOUT_S"])
    assert drain > 0
    assert pod["terminationGracePeriodSeconds"] > drain + exit_timeout
    (container,) = pod["containers"]
    readiness = container["readinessProbe"]
    # The readiness probe notices the 503 within the drain delay.
    assert readiness["httpGet"]["path"] == "/v2/health/ready"
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < drain
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_runs_locked_down(overlay: str) -> None:
    pod = one(render(KUBERNETES / overlay), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]["cpu"]
    # The only writable paths are emptyDirs: serval's state and /tmp.
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/serval", "/tmp"}
    for mount in container["volumeMounts"]:
        if not mount.get("readOnly"):
            assert "emptyDir" in volumes[mount["name"]]
    assert config_map(render(KUBERNETES / overlay))["SERVAL_STATE_DIR"] == "/var/lib/serval"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_reaches_the_pods_ports(overlay: str) -> None:
    objects = render(KUBERNETES / overlay)
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http", "grpc"}
    settings = config_map(objects)
    assert ports == {
        "http": int(settings["SERVAL_HTTP_PORT"]),
        "grpc": int(settings["SERVAL_GRPC_PORT"]),
    }
    assert settings["SERVAL_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_are_servals(overlay: str) -> None:
    # Every SERVAL_* variable names a setting (a typo would be ignored silently at run time).
    # drain_delay_s comes with the graceful scale-in of issue 18 (another branch).
    known = {name.upper() for name in Settings.model_fields}
    settings = config_map(render(KUBERNETES / overlay))
    unknown = {key for key in settings if key.startswith("SERVAL_") and key[7:] not in known}
    assert not unknown
    assert settings["SERVAL_MODEL_REPOSITORY"]


def test_production_scales_on_cpu_and_in_flight_requests() -> None:
    objects = render(KUBERNETES / "overlays/production")
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Resource", "Pods"}
    (custom,) = (m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    # The adapter rule exposes that name, from a series serval exports (docs/metrics.md).
    adapter = yaml.safe_load(config_map(render(KUBERNETES / "prometheus-adapter"))["config.yaml"])
    exposed = {rule["name"]["as"]: rule["seriesQuery"] for rule in adapter["rules"]}
    assert custom in exposed
    series = exposed[custom].split("{")[0]
    assert f"`{series}`" in (ROOT / "docs" / "metrics.md").read_text()
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_kserve_runtime_serves_the_four_formats_over_v2() -> None:
    runtime = one(render(KUBERNETES / "kserve"), "ClusterServingRuntime")
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert formats == {"onnx", "sklearn", "xgboost", "lightgbm"}
    assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"  # the name KServe looks for
    assert container["args"][:2] == ["serve", "/mnt/models"]  # where KServe puts storageUri
