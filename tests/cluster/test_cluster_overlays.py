"""deploy/overlays on a fresh kube-apiserver, each applied in one `kubectl apply -k` as deploy/README.md says,
then `mce-operator run` as the ServiceAccount they install (a token from `kubectl create token`: only the
rights the overlay grants) against `mce-emulator`, audited.

- ha: kopf's peering CRDs arrive in the same apply as the operator; no peering object is shipped, and the two
  replicas create it themselves (one wins, the other finds it) and peer in it.
- namespaced: no ClusterRole at all; a Role in the watched namespace is enough to reconcile an object there
  to Ready and delete it, and objects in other namespaces are left alone.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CRD_NAME, ROOT, Kubectl, start_control_plane, wait_for_openapi
from processes import Emulator, Operator, audit_args, audited, wait_until

from kustomize_render import render
from mce_operator import api
from mce_operator.demo import is_ready
from mce_operator.testkit.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

ACCOUNT, ACCOUNT_NAMESPACE = "mce-operator", "mce-system"
USER = f"system:serviceaccount:{ACCOUNT_NAMESPACE}:{ACCOUNT}"
DIRECT = yaml.safe_load((ROOT / "examples" / "direct.yaml").read_text())
PEERING = "mce-operator"


class Fresh:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.plane: ControlPlane = start_control_plane(apiserver_args=audit_args(workdir, USER))
        self.kubectl = Kubectl(self.plane.kubeconfig)
        self.emulator: Emulator | None = None
        self.operators: list[Operator] = []

    def install(self, overlay: str) -> str:
        output: str = self.kubectl("apply", "-k", f"deploy/overlays/{overlay}").stdout
        self.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
        wait_for_openapi(self.plane)
        return output

    def operator(self, name: str, *args: str) -> Operator:
        token = self.kubectl(
            "create", "token", ACCOUNT, "-n", ACCOUNT_NAMESPACE, "--duration=1h"
        ).stdout.strip()
        kubeconfig = self.plane.write_kubeconfig(
            self.workdir / f"{name}.kubeconfig", token=token, user=ACCOUNT
        )
        if self.emulator is None:
            self.emulator = Emulator(self.workdir / "emulator.log")
        operator = Operator(kubeconfig, self.emulator, self.workdir / f"operator-{name}.log", *args)
        self.operators.append(operator)
        return operator

    def forbidden(self) -> list[Any]:
        requests, _ = audited(self.workdir / "audit.log")
        return [r for r in requests if r.code == 403]

    def close(self) -> None:
        try:
            for operator in self.operators:
                operator.stop()
            if self.emulator is not None:
                self.emulator.stop()
        finally:
            self.plane.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Fresh]:
    cluster = Fresh(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


def manifest(namespace: str, name: str) -> dict[str, Any]:
    obj = copy.deepcopy(DIRECT)
    obj["metadata"] = {"name": name, "namespace": namespace}
    obj["spec"]["endpointName"] = f"{namespace}-{name}"
    obj["spec"]["deletionPolicy"] = "Delete"
    return obj


def deployment_env(overlay: str) -> dict[str, str]:
    (deployment,) = [o for o in render(ROOT / "deploy" / "overlays" / overlay) if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_the_ha_overlay_applies_in_one_go_and_the_replicas_make_their_peering_object(fresh: Fresh) -> None:
    output = fresh.install("ha")
    for line in (
        "customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev created",
        "customresourcedefinition.apiextensions.k8s.io/kopfpeerings.kopf.dev created",
        "poddisruptionbudget.policy/mce-operator created",
        "service/mce-operator-metrics created",
        "deployment.apps/mce-operator created",
    ):
        assert line in output.splitlines(), output
    assert "No resources found" in fresh.kubectl("get", "clusterkopfpeerings").stderr

    peering = deployment_env("ha")["MCE_PEERING"]
    assert peering == PEERING
    replicas = [fresh.operator(f"replica-{n}", f"--peering={peering}") for n in (1, 2)]
    client = fresh.plane.client()

    def both_peered() -> bool:
        for replica in replicas:
            assert replica.popen.poll() is None, replica.text()
        obj = client.find("clusterkopfpeerings", None, PEERING)
        return obj is not None and len(obj.get("status") or {}) == 2

    wait_until("both replicas in the peering object", both_peered, 60, log=replicas[0])
    logs = [replica.text() for replica in replicas]
    assert sum(f"created ClusterKopfPeering {PEERING}" in log for log in logs) == 1, logs
    assert sum(f"ClusterKopfPeering {PEERING} exists" in log for log in logs) == 1, logs

    fresh.kubectl("create", "namespace", "ml")
    fresh.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest("ml", "ha")))
    wait_until("Ready", lambda: is_ready(client.get(api.PLURAL, "ml", "ha")), 60, log=replicas[0])
    fresh.kubectl("delete", "mce", "ha", "-n", "ml", "--timeout=60s")
    assert fresh.forbidden() == []


def test_the_namespaced_overlay_reconciles_its_namespace_with_a_role_only(fresh: Fresh) -> None:
    watched = deployment_env("namespaced")["MCE_NAMESPACES"]
    # The watched namespace is the user's: it exists before the operator is installed there.
    for namespace in (watched, "elsewhere"):
        fresh.kubectl("create", "namespace", namespace)
    output = fresh.install("namespaced")
    assert "role.rbac.authorization.k8s.io/mce-operator created" in output.splitlines(), output
    assert "clusterrole" not in output
    account = f"--as={USER}"
    assert (
        fresh.kubectl(
            "auth", "can-i", "patch", f"{api.PLURAL}.{api.GROUP}", "-n", watched, account
        ).stdout.strip()
        == "yes"
    )
    can_elsewhere = fresh.kubectl(
        "auth", "can-i", "list", f"{api.PLURAL}.{api.GROUP}", "-n", "elsewhere", account, check=False
    )
    assert can_elsewhere.stdout.strip() == "no"

    operator = fresh.operator("namespaced", f"--namespace={watched}")
    client = fresh.plane.client()
    fresh.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest(watched, "mine")))
    fresh.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest("elsewhere", "theirs")))
    wait_until("Ready", lambda: is_ready(client.get(api.PLURAL, watched, "mine")), 60, log=operator)
    fresh.kubectl("delete", "mce", "mine", "-n", watched, "--timeout=60s")
    # Not watched, so never touched: no finalizer, no status.
    theirs = client.get(api.PLURAL, "elsewhere", "theirs")
    assert not theirs["metadata"].get("finalizers") and not theirs.get("status")
    assert operator.popen.poll() is None, operator.text()
    # Within its namespace it was never refused. kopf's cluster-wide looks (listing namespaces, watching
    # CRDs) are refused, as intended: it warns once each and works from what it read at start.
    refused = {(r.group, r.resource, r.namespace) for r in fresh.forbidden()}
    assert refused <= {("", "namespaces", ""), ("apiextensions.k8s.io", "customresourcedefinitions", "")}
    log = operator.text()
    assert "Not enough permissions to watch for resources" in log, log[-3000:]
