"""deploy/ and the Dockerfile, checked offline: the kustomization renders the install, every manifest parses
and validates, RBAC covers what kopf and the operator do, and the Deployment runs `mce-operator run` with
flags and variables that exist. (tests/cluster applies the same kustomization to a real API server; the
overlays are tests/deploy/test_overlays.py's.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import dockerfile_parse
from kustomize_render import render
from mce_operator import api, cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PACKAGE = ROOT / "operator" / "mce_operator"
CRD = ROOT / "crds" / "sagemaker.mce.dev_multicontainerendpoints.yaml"
BASE = DEPLOY / "base"
KUSTOMIZATION = BASE / "kustomization.yaml"
MANIFESTS = sorted(path for path in BASE.glob("*.yaml") if path != KUSTOMIZATION)
# The oldest Kubernetes minor still in standard support on EKS, and a recent one.
K8S_VERSIONS = ["1.29.0", "1.33.0"]


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((BASE / name).read_text()) if d is not None]


# What `kubectl apply -k deploy/` sends: `kubectl kustomize deploy/` (kubectl's built-in kustomize).
INSTALL = render(DEPLOY)


def one(kind: str) -> dict[str, Any]:
    found = [d for d in INSTALL if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in the kustomization's output, found {len(found)}"
    return found[0]


def test_deploy_has_the_expected_files() -> None:
    names = {p.name for p in DEPLOY.iterdir()}
    # The IAM policy and the Lua script are not Kubernetes objects: outside what kustomize applies.
    assert {"kustomization.yaml", "base", "components", "overlays"} | {
        "iam-policy.json",
        "argocd-health.lua",
        "README.md",
    } <= names
    base = {p.name for p in BASE.iterdir()}
    assert base == {
        "kustomization.yaml",
        "namespace.yaml",
        "serviceaccount.yaml",
        "rbac.yaml",
        "deployment.yaml",
    }
    # `kubectl apply -k deploy/` is the base.
    assert yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"] == ["base"]


def test_the_kustomization_installs_the_operator_and_the_crd_from_crds() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert set(kustomization["resources"]) == {p.name for p in MANIFESTS} | {"../../crds"}
    assert kustomization["components"] == ["../components/metrics"]
    kinds = [d["kind"] for d in INSTALL]
    assert sorted(kinds) == sorted(
        [
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Service",
            "Deployment",
        ]
    )
    # One source: the CRD installed is the generated file, unchanged.
    assert one("CustomResourceDefinition") == yaml.safe_load(CRD.read_text())


def test_kubectl_apply_f_crds_still_reads_only_the_crd() -> None:
    """`kubectl apply -f crds/` reads every *.yaml there: crds/ holds the CRD and a `Kustomization` only."""
    assert sorted(p.name for p in CRD.parent.iterdir()) == ["Kustomization", CRD.name]


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_every_manifest_parses_into_objects(path: Path) -> None:
    objs = docs(path.name)
    assert objs
    for obj in objs:
        assert obj.get("apiVersion") and obj.get("kind") and obj.get("metadata", {}).get("name"), obj


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_builtin_manifests_validate_against_the_kubernetes_schemas(path: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for obj in docs(path.name):
        if obj["apiVersion"].startswith("kopf.dev/"):
            continue  # a custom resource: validated by its CRD below
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_namespaced_objects_live_in_the_operator_namespace() -> None:
    namespace = one("Namespace")["metadata"]["name"]
    for kind in ("ServiceAccount", "Deployment"):
        assert one(kind)["metadata"]["namespace"] == namespace


def test_service_account_carries_the_irsa_annotation() -> None:
    annotations = one("ServiceAccount")["metadata"]["annotations"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", annotations["eks.amazonaws.com/role-arn"])


# --- RBAC -----------------------------------------------------------------------------------------------

CR = api.PLURAL


def _needed() -> list[tuple[str, str, str]]:
    """(apiGroup, resource, verb) that kopf 1.45 and the operator use: what tests/cluster saw in the
    apiserver's audit log of the operator's ServiceAccount (and showed each rule needed)."""
    crd = yaml.safe_load(CRD.read_text())
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    assert (group, plural) == (api.GROUP, api.PLURAL)
    needed = [(group, plural, verb) for verb in ("get", "list", "watch", "patch")]
    needed += [(group, f"{plural}/status", "patch")]
    needed += [("", "events", "create")]  # kopf.info/warn post core/v1 Events
    needed += [("", "namespaces", verb) for verb in ("list", "watch")]  # --namespace with globs
    needed += [("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")]
    needed += [
        ("kopf.dev", "clusterkopfpeerings", v) for v in ("create", "list", "watch", "patch")
    ]  # --peering
    return needed


def _allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule.get("apiGroups", [])
        and resource in rule.get("resources", [])
        and verb in rule.get("verbs", [])
        for rule in rules
    )


@pytest.mark.parametrize("group,resource,verb", _needed())
def test_cluster_role_allows_what_kopf_and_the_operator_do(group: str, resource: str, verb: str) -> None:
    assert _allowed(one("ClusterRole")["rules"], group, resource, verb)


def test_cluster_role_is_least_privilege() -> None:
    rules = one("ClusterRole")["rules"]
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {(g, r) for g, r, _ in _needed()}  # nothing beyond what is needed (no Secrets...)
    # The custom resource is never created: the operator only reconciles what users create.
    assert not _allowed(rules, api.GROUP, api.PLURAL, "create")


def test_binding_ties_the_role_to_the_deployments_service_account() -> None:
    binding, role = one("ClusterRoleBinding"), one("ClusterRole")
    account, deployment = one("ServiceAccount"), one("Deployment")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    subject = {"kind": "ServiceAccount", "name": account["metadata"]["name"]}
    subject["namespace"] = account["metadata"]["namespace"]
    assert binding["subjects"] == [subject]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


# --- the Deployment and the Dockerfile --------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's final (runtime) stage; tests/deploy/test_dockerfile.py checks the whole file."""
    return dockerfile_parse.stages()[-1].instructions


def entrypoint() -> list[str]:
    (value,) = [rest for keyword, rest in dockerfile() if keyword == "ENTRYPOINT"]
    parsed: list[str] = json.loads(value)  # the exec form: signals reach the operator, not a shell
    return parsed


def container() -> dict[str, Any]:
    (operator,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = operator
    return result


def run_args() -> Any:
    command = container().get("command") or entrypoint()
    assert command == ["mce-operator", "run"]
    try:
        return cli._parser().parse_args(command[1:] + list(container().get("args", [])))
    except SystemExit as exc:  # argparse's way of refusing an unknown flag
        raise AssertionError(f"`mce-operator run` refuses the Deployment's args: {exc}") from exc


def test_deployment_args_are_flags_of_mce_operator_run() -> None:
    args = run_args()
    assert args.command == "run"


def test_deployment_env_names_are_read_by_the_operator() -> None:
    source = "\n".join(p.read_text() for p in PACKAGE.glob("*.py"))
    known = set(re.findall(r"\"(MCE_[A-Z_]+)\"", source))  # os.environ.get("MCE_..."), _env_float(...)
    assert {"MCE_REGION", "MCE_BUSY_INTERVAL", "MCE_STEADY_INTERVAL", "MCE_PEERING"} <= known
    env = {item["name"]: item.get("value") for item in container().get("env", [])}
    assert {"MCE_REGION", "MCE_BUSY_INTERVAL", "MCE_STEADY_INTERVAL"} <= set(env)
    assert set(env) <= known | {"AWS_REGION", "AWS_DEFAULT_REGION"}
    for name in ("MCE_BUSY_INTERVAL", "MCE_STEADY_INTERVAL", "MCE_CALLS_PER_SECOND"):
        if name in env:
            assert float(env[name]) >= 0


def test_deployment_probe_and_hardening() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # standalone: never two acting pods
    pod, operator = deployment["spec"]["template"]["spec"], container()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # The liveness probe asks kopf's health endpoint, where `--liveness` puts it.
    liveness = run_args().liveness
    match = re.fullmatch(r"http://0\.0\.0\.0:(\d+)(/\S*)", liveness)
    assert match, liveness
    probe = operator["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    port = ports.get(probe["port"], probe["port"])
    assert (port, probe["path"]) == (int(match[1]), match[2]) == (8080, "/healthz")
    # Non-root, read-only, no privilege; the uid is the Dockerfile's.
    user = [rest for k, rest in dockerfile() if k == "USER"][-1].split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == user
    security = operator["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(operator["resources"]["requests"])
    assert "memory" in operator["resources"]["limits"]
    assert not operator["image"].endswith(":latest") and ":" in operator["image"]
