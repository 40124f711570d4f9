"""deploy/overlays and deploy/components, rendered with the machine's real `kubectl kustomize` (as
`kubectl apply -k` renders them) and every object validated: built-in kinds against the Kubernetes schemas,
the rest against what reads them (kopf's peering CRDs, the Prometheus Operator's ServiceMonitor fields).
What each variant promises is checked on the rendered output, and the operator's own flag parsing reads the
rendered Deployment (so a variable the operator does not read, or reads differently, fails here)."""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from kustomize_render import render
from mce_operator import api, cli, metrics
from mce_operator.testkit import kopf_peering_crds

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.parent for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
COMPONENTS = sorted(p.parent for p in (DEPLOY / "components").glob("*/kustomization.yaml"))
# The oldest Kubernetes minor still in standard support on EKS, and a recent one.
K8S_VERSIONS = ["1.29.0", "1.33.0"]
SELECTOR = {"app.kubernetes.io/name": "mce-operator"}

Objects = list[dict[str, Any]]


def composed(tmp_path: Path) -> Path:
    """The namespaced overlay with the ha and servicemonitor components too, as a user's own overlay would
    combine them."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    source = DEPLOY / "overlays" / "namespaced"
    kustomization = yaml.safe_load((source / "kustomization.yaml").read_text())
    up = Path(os.path.relpath(DEPLOY, overlay))
    kustomization["resources"] = [str(up / "base")]
    kustomization["components"] = [str(up / "components" / c) for c in ("ha", "namespaced", "servicemonitor")]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    (overlay / "watch.yaml").write_text((source / "watch.yaml").read_text())
    return overlay


def pick(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(objects: Objects) -> list[str]:
    return sorted(o["kind"] for o in objects)


def container(objects: Objects) -> dict[str, Any]:
    (operator,) = pick(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = operator
    return result


def env(objects: Objects) -> dict[str, Any]:
    return {item["name"]: item for item in container(objects).get("env", [])}


def run_args(objects: Objects, monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """`mce-operator run` as the pod starts it: the image's entrypoint, the args, the environment."""
    for name, item in env(objects).items():
        monkeypatch.setenv(name, str(item.get("value", f"<from {item.get('valueFrom')}>")))
    return cli._parser().parse_args(["run", *container(objects).get("args", [])])


def test_every_overlay_and_component_is_tested() -> None:
    assert [p.name for p in OVERLAYS] == ["ha", "namespaced", "servicemonitor"]
    assert [p.name for p in COMPONENTS] == ["ha", "metrics", "namespaced", "servicemonitor"]
    for overlay in OVERLAYS:
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        assert kustomization["resources"] == ["../../base"], overlay.name
        assert kustomization["components"] == [f"../../components/{overlay.name}"]


@pytest.mark.parametrize("overlay", [*OVERLAYS, "composed"], ids=lambda p: getattr(p, "name", str(p)))
def test_every_rendered_object_validates(overlay: Path | str, tmp_path: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    objects = render(composed(tmp_path) if overlay == "composed" else Path(overlay))
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), names
    crds = {o["metadata"]["name"]: o for o in objects if o["kind"] == "CustomResourceDefinition"}
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        if group == "monitoring.coreos.com":
            check_service_monitor(obj, objects)
            continue
        assert not group.endswith(("kopf.dev", api.GROUP)), f"a custom object shipped with its CRD: {obj}"
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    assert f"{api.PLURAL}.{api.GROUP}" in crds


def check_service_monitor(monitor: dict[str, Any], objects: Objects) -> None:
    """The fields the Prometheus Operator reads, pointing at the metrics Service of the same install."""
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    service = pick(objects, "Service", "mce-operator-metrics")
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_the_base_serves_metrics_through_a_service(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(DEPLOY)
    service = pick(objects, "Service", "mce-operator-metrics")
    deployment = pick(objects, "Deployment")
    assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    # The Service's target, the container's port and the port the operator listens on are one number.
    assert ports[port["targetPort"]] == port["port"] == run_args(objects, monkeypatch).metrics_port
    assert ports["metrics"] != ports["health"]


@pytest.mark.parametrize("path", [DEPLOY, *OVERLAYS], ids=lambda p: p.name)
def test_the_image_is_set_in_one_place(path: Path) -> None:
    images = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())["images"]
    (image,) = images
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert image["newTag"] == version  # the image of this release, never `latest`
    assert container(render(path))["image"] == f"{image['newName']}:{image['newTag']}"
    # No manifest names a tag of its own that would silently win over the kustomization's.
    for manifest in DEPLOY.rglob("*.yaml"):
        for obj in yaml.safe_load_all(manifest.read_text()):
            for item in (
                ((obj or {}).get("spec") or {}).get("template", {}).get("spec", {}).get("containers", [])
            ):
                assert item.get("image") in (None, image["name"]), manifest


# --- ha -------------------------------------------------------------------------------------------------


def test_ha_runs_two_peering_replicas_under_a_disruption_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(DEPLOY / "overlays" / "ha")
    deployment = pick(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    strategy = deployment["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    args = run_args(objects, monkeypatch)
    assert args.peering == "mce-operator"
    assert env(objects)["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = pick(objects, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()


def test_ha_ships_kopfs_peering_crds_and_the_right_to_create_the_object() -> None:
    """The CRDs, not the object: the operator creates the object once the CRD is served (an object in the
    same apply as its CRD is refused on a fresh cluster)."""
    objects = render(DEPLOY / "overlays" / "ha")
    for crd in kopf_peering_crds():
        assert pick(objects, "CustomResourceDefinition", crd["metadata"]["name"]) == crd
    assert not [o for o in objects if o["apiVersion"].startswith("kopf.dev/")]
    rules = pick(objects, "ClusterRole")["rules"]
    # What kopf's peering does cluster-wide (tests/cluster measured it), and the operator's create.
    for verb in ("create", "list", "watch", "patch"):
        assert allowed(rules, "kopf.dev", "clusterkopfpeerings", verb), verb
    assert rules == pick(render(DEPLOY), "ClusterRole")["rules"]  # no more rights than the base


def allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r.get("verbs", [])
        for r in rules
    )


# --- namespaced -----------------------------------------------------------------------------------------

# What the operator does in the namespace it watches: the base ClusterRole's namespaced rights, verb for verb
# (tests/cluster measured them), and namespaced peering.
NAMESPACED_NEEDS = [
    *[(api.GROUP, api.PLURAL, v) for v in ("get", "list", "watch", "patch")],
    (api.GROUP, f"{api.PLURAL}/status", "patch"),
    ("", "events", "create"),
    *[("kopf.dev", "kopfpeerings", v) for v in ("create", "list", "watch", "patch")],
]


def check_namespaced(objects: Objects, monkeypatch: pytest.MonkeyPatch) -> str:
    assert "ClusterRole" not in kinds(objects) and "ClusterRoleBinding" not in kinds(objects)
    watched = cli.namespaces(run_args(objects, monkeypatch))
    (namespace,) = watched
    role, binding = pick(objects, "Role"), pick(objects, "RoleBinding")
    account = pick(objects, "ServiceAccount")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "mce-operator",
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == set(NAMESPACED_NEEDS)  # what is needed, and nothing more: no Secrets, no Pods
    # Every namespaced right of the base's ClusterRole is in the Role.
    cluster_rules = pick(render(DEPLOY), "ClusterRole")["rules"]
    for group, resource, verb in NAMESPACED_NEEDS:
        if resource != "kopfpeerings":
            assert allowed(cluster_rules, group, resource, verb), (group, resource, verb)
    return namespace


def test_namespaced_watches_one_namespace_with_a_role_there(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(DEPLOY / "overlays" / "namespaced")
    assert check_namespaced(objects, monkeypatch) == "ml"
    # The operator itself still runs in its own namespace.
    assert pick(objects, "Deployment")["metadata"]["namespace"] == "mce-system"


def test_the_watched_namespace_is_set_in_one_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overlay = composed(tmp_path)
    (overlay / "watch.yaml").write_text(
        (overlay / "watch.yaml").read_text().replace("value: ml", "value: risk")
    )
    objects = render(overlay)
    assert check_namespaced(objects, monkeypatch) == "risk"
    assert not [o for o in objects if o["metadata"].get("namespace") == "ml"]


def test_ha_and_namespaced_combine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(composed(tmp_path))
    check_namespaced(objects, monkeypatch)
    assert run_args(objects, monkeypatch).peering == "mce-operator"
    assert pick(objects, "CustomResourceDefinition", "kopfpeerings.kopf.dev")
    assert pick(objects, "Deployment")["spec"]["replicas"] == 2
    assert pick(objects, "ServiceMonitor")


# --- metrics --------------------------------------------------------------------------------------------


def test_the_metrics_port_default_is_the_one_the_manifests_use() -> None:
    args = cli._parser().parse_args(["run"])
    component = yaml.safe_load((DEPLOY / "components" / "metrics" / "service.yaml").read_text())
    assert args.metrics_port == component["spec"]["ports"][0]["port"]
    assert metrics.LAST_SUCCESS_NAME.startswith("mce_operator_")
