"""What users and GitOps tools do to objects while the operator runs: server-side dry runs, `kubectl diff`,
server-side apply by two field managers, a full replace (PUT) while the operator writes status."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, Kubectl
from processes import Emulator, Operator, wait_until

from mce_operator import api
from mce_operator.demo import is_ready
from mce_operator.testkit.client import KubeClient
from mce_operator.testkit.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

NAMESPACE = "users"
BASE = yaml.safe_load((ROOT / "examples" / "serial.yaml").read_text())


@dataclass
class Running:
    kubectl: Kubectl
    client: KubeClient
    emulator: Emulator
    operator: Operator
    workdir: Path

    def manifest(self, name: str, **spec: Any) -> dict[str, Any]:
        manifest = copy.deepcopy(BASE)
        manifest["metadata"] = {"name": name, "namespace": NAMESPACE}
        manifest["spec"].update(endpointName=f"users-{name}", deletionPolicy="Delete", **spec)
        return manifest

    def apply(self, manifest: dict[str, Any], *args: str, check: bool = True) -> Any:
        return self.kubectl("apply", *args, "-f", "-", input=yaml.safe_dump(manifest), check=check)

    def ready(self, name: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            obj = self.client.find(api.PLURAL, NAMESPACE, name)
            return obj if is_ready(obj) else None

        found: dict[str, Any] = wait_until(f"{name} Ready", check, 60, log=self.operator)
        return found

    def calls_naming(self, endpoint: str) -> list[dict[str, Any]]:
        return [call for call in self.emulator.calls() if (call.get("name") or "").startswith(endpoint)]

    def endpoint_tags(self, name: str) -> dict[str, str]:
        arn = self.client.get(api.PLURAL, NAMESPACE, name)["status"]["endpointArn"]
        tags = self.emulator.client().list_tags(ResourceArn=arn)["Tags"]
        return {tag["Key"]: tag["Value"] for tag in tags if not tag["Key"].startswith(api.SYSTEM_TAG_PREFIX)}


@pytest.fixture(scope="module")
def running(
    plane: ControlPlane, kubectl: Kubectl, crd_applied: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("users")
    kubectl("create", "namespace", NAMESPACE)
    emulator = Emulator(workdir / "emulator.log")
    # One namespace: the other tests' objects on this control plane are not the operator's business.
    operator = Operator(plane.kubeconfig, emulator, workdir / "operator.log", f"--namespace={NAMESPACE}")
    try:
        yield Running(kubectl, plane.client(), emulator, operator, workdir)
    finally:
        operator.stop()
        emulator.stop()


def test_a_server_side_dry_run_writes_nothing_and_calls_no_sagemaker(running: Running) -> None:
    dry = running.manifest("dry")
    out = running.apply(dry, "--dry-run=server").stdout
    assert out.strip() == f"multicontainerendpoint.{api.GROUP}/dry created (server dry run)"
    assert running.client.find(api.PLURAL, NAMESPACE, "dry") is None
    # A real object after it: the operator sees events in order, so once this one is Ready, an event for
    # the dry-run object (had there been one) was handled before.
    running.apply(running.manifest("after-dry"))
    running.ready("after-dry")
    assert running.calls_naming("users-dry") == []
    assert running.calls_naming("users-after-dry")


def test_kubectl_diff_shows_the_change_and_changes_nothing(running: Running) -> None:
    manifest = running.manifest("diffed")
    running.apply(manifest)
    before = running.ready("diffed")
    calls = len(running.emulator.calls())
    changed = copy.deepcopy(manifest)
    changed["spec"]["instanceType"] = "ml.c5.2xlarge"
    diff = running.kubectl("diff", "-f", "-", input=yaml.safe_dump(changed), check=False)
    assert diff.returncode == 1, diff.stderr  # 1: there are differences
    assert "-  instanceType: ml.c5.xlarge" in diff.stdout and "+  instanceType: ml.c5.2xlarge" in diff.stdout
    after = running.client.get(api.PLURAL, NAMESPACE, "diffed")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["instanceType"] == "ml.c5.xlarge"
    # Nothing the operator would act on: its next SageMaker calls (if any) change nothing.
    mutating = [
        c for c in running.emulator.calls()[calls:] if c["operation"].startswith(("Create", "Update"))
    ]
    assert mutating == []


def test_two_field_managers_share_the_object_by_server_side_apply(running: Running) -> None:
    gitops = running.manifest("shared", tags={"team": "risk"})
    running.apply(gitops, "--server-side", "--field-manager=gitops")
    running.ready("shared")
    # A second manager owns one tag of the map (granular by default): no conflict with the first.
    owner = {
        "apiVersion": gitops["apiVersion"],
        "kind": gitops["kind"],
        "metadata": {"name": "shared", "namespace": NAMESPACE},
        "spec": {"tags": {"owner": "platform"}},
    }
    running.apply(owner, "--server-side", "--field-manager=tagger")
    # The first re-applies its file (without that tag, after the operator's finalizer and status writes):
    # no conflict, and the other manager's tag stays.
    running.apply(gitops, "--server-side", "--field-manager=gitops")
    stored = running.client.get(api.PLURAL, NAMESPACE, "shared")
    assert stored["spec"]["tags"] == {"team": "risk", "owner": "platform"}
    managers = {entry["manager"] for entry in stored["metadata"]["managedFields"]}
    assert {"gitops", "tagger"} <= managers
    # Taking a field the other owns is a conflict the second manager must force.
    grab = copy.deepcopy(owner)
    grab["spec"]["instanceType"] = "ml.c5.large"
    refused = running.apply(grab, "--server-side", "--field-manager=tagger", check=False)
    assert refused.returncode == 1 and 'conflict with "gitops"' in refused.stderr, refused.stderr
    # SageMaker gets both managers' tags.
    wait_until(
        "both managers' tags on the endpoint",
        lambda: running.endpoint_tags("shared") == {"team": "risk", "owner": "platform"},
        60,
        log=running.operator,
    )


def test_a_replace_while_the_operator_writes_status_loses_nothing(running: Running) -> None:
    manifest = running.manifest("replaced", tags={"team": "risk"})
    running.apply(manifest)
    running.ready("replaced")
    # Make the operator write status while the replace happens: a spec change it must deploy.
    change = '{"spec":{"instanceType":"ml.c5.2xlarge"}}'
    running.kubectl("patch", "mce", "replaced", "-n", NAMESPACE, "--type=merge", "-p", change)
    replacement = copy.deepcopy(manifest)
    replacement["spec"]["instanceType"] = "ml.m5.xlarge"
    replacement["spec"]["tags"] = {"team": "fraud"}

    # kubectl replace PUTs the file (no finalizer, no status, the resourceVersion it just read): a status
    # write in between is a 409 the user retries; it never conflicts for good.
    def replaced() -> dict[str, Any] | None:
        done = running.kubectl(
            "replace", "-o", "json", "-f", "-", input=yaml.safe_dump(replacement), check=False
        )
        assert done.returncode == 0 or "the object has been modified" in done.stderr, done.stderr
        return yaml.safe_load(done.stdout) if done.returncode == 0 else None

    put: dict[str, Any] = wait_until("kubectl replace to succeed", replaced, 60)
    assert put["metadata"].get("finalizers") is None  # what the file says: the finalizer is gone
    stored = running.client.get(api.PLURAL, NAMESPACE, "replaced")
    assert stored["spec"]["instanceType"] == "ml.m5.xlarge" and stored["spec"]["tags"] == {"team": "fraud"}
    # The PUT dropped the operator's finalizer: the operator puts it back, and deploys the replaced spec.
    obj = running.ready("replaced")
    wait_until(
        "the finalizer back",
        lambda: (
            "sagemaker.mce.dev/finalizer"
            in (running.client.get(api.PLURAL, NAMESPACE, "replaced")["metadata"].get("finalizers") or [])
        ),
        60,
        log=running.operator,
    )
    assert obj["status"]["endpointName"] == "users-replaced"
    config = running.emulator.client().describe_endpoint_config(
        EndpointConfigName=obj["status"]["endpointConfigName"]
    )
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.xlarge"
    wait_until("the replaced tags", lambda: running.endpoint_tags("replaced") == {"team": "fraud"}, 60)
    # And deletion still cleans SageMaker up (the finalizer held).
    running.kubectl("delete", "mce", "replaced", "-n", NAMESPACE, "--timeout=60s")
    sagemaker = running.emulator.client()
    assert sagemaker.list_endpoints(NameContains="users-replaced")["Endpoints"] == []
