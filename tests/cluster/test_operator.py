"""The documented install on a fresh cluster, then `mce-operator run` as the deployed ServiceAccount
(a token from `kubectl create token`: only deploy/base/rbac.yaml's rights) against `mce-emulator`.

The apiserver's audit log records every request of that identity: the lifecycle must cause no 403, every
permission the ClusterRole grants must be used by some run, and taking any one rule away must make a
request of the operator fail with 403.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CRD_NAME, ROOT, Kubectl, start_control_plane, wait_for_openapi
from processes import Emulator, Operator, Request, audit_args, audited, wait_until

from mce_operator import api
from mce_operator.demo import is_ready
from mce_operator.testkit.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

ACCOUNT, ACCOUNT_NAMESPACE = "mce-operator", "mce-system"
USER = f"system:serviceaccount:{ACCOUNT_NAMESPACE}:{ACCOUNT}"
DIRECT = yaml.safe_load((ROOT / "examples" / "direct.yaml").read_text())


@dataclass
class Installed:
    plane: ControlPlane
    kubectl: Kubectl  # the admin
    install_output: str
    kubeconfig: Path  # the ServiceAccount's
    emulator: Emulator
    workdir: Path
    audit_offset: int = 0

    def operator(self, name: str, *args: str) -> Operator:
        return Operator(self.kubeconfig, self.emulator, self.workdir / f"operator-{name}.log", *args)

    def requests(self) -> list[Request]:
        """The ServiceAccount's requests since the last call."""
        found, self.audit_offset = audited(self.workdir / "audit.log", self.audit_offset)
        return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    workdir = tmp_path_factory.mktemp("operator")
    plane = start_control_plane(apiserver_args=audit_args(workdir, USER))
    emulator: Emulator | None = None
    try:
        kubectl = Kubectl(plane.kubeconfig)
        output = kubectl("apply", "-k", "deploy/").stdout  # deploy/README.md's install, as written
        kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
        wait_for_openapi(plane)
        token = kubectl("create", "token", ACCOUNT, "-n", ACCOUNT_NAMESPACE, "--duration=2h").stdout.strip()
        kubeconfig = plane.write_kubeconfig(workdir / "operator.kubeconfig", token=token, user=ACCOUNT)
        emulator = Emulator(workdir / "emulator.log")
        yield Installed(plane, kubectl, output, kubeconfig, emulator, workdir)
    finally:
        if emulator is not None:
            emulator.stop()
        plane.stop()


def test_the_documented_install_applies_on_a_fresh_cluster(installed: Installed) -> None:
    assert installed.install_output.splitlines() == [
        "namespace/mce-system created",
        f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME} created",
        "serviceaccount/mce-operator created",
        "clusterrole.rbac.authorization.k8s.io/mce-operator created",
        "clusterrolebinding.rbac.authorization.k8s.io/mce-operator created",
        "service/mce-operator-metrics created",
        "deployment.apps/mce-operator created",
    ]
    # The identity the operator runs as is the ServiceAccount, and nothing more.
    who = installed.kubectl("auth", "whoami", "--kubeconfig", str(installed.kubeconfig), "-o", "json")
    assert yaml.safe_load(who.stdout)["status"]["userInfo"]["username"] == USER


def _manifest(namespace: str, name: str) -> dict[str, Any]:
    manifest = copy.deepcopy(DIRECT)
    manifest["metadata"] = {"name": name, "namespace": namespace}
    manifest["spec"]["endpointName"] = f"{namespace}-{name}"
    manifest["spec"]["deletionPolicy"] = "Delete"  # so that deleting it shows the SageMaker side going
    return manifest


def _sagemaker_names(installed: Installed, prefix: str) -> dict[str, list[str]]:
    sagemaker = installed.emulator.client()
    return {
        "endpoints": [e["EndpointName"] for e in sagemaker.list_endpoints(NameContains=prefix)["Endpoints"]],
        "configs": [
            c["EndpointConfigName"]
            for c in sagemaker.list_endpoint_configs(NameContains=prefix)["EndpointConfigs"]
        ],
        "models": [m["ModelName"] for m in sagemaker.list_models(NameContains=prefix)["Models"]],
    }


def _ready(obj: dict[str, Any], config_not: str) -> dict[str, Any] | None:
    return obj if is_ready(obj, config_not) else None


def _forbidden(requests: list[Request]) -> list[Request]:
    return [request for request in requests if request.code == 403]


def test_the_lifecycle_as_the_service_account(installed: Installed) -> None:
    kubectl, client = installed.kubectl, installed.plane.client()
    namespace, name = "ml", "fraud"
    kubectl("create", "namespace", namespace)
    installed.requests()
    operator = installed.operator("lifecycle")
    try:
        # create -> Ready, as a user waits for it
        kubectl("apply", "-f", "-", input=yaml.safe_dump(_manifest(namespace, name)))
        waited = kubectl("wait", "--for=condition=Ready", f"mce/{name}", "-n", namespace, "--timeout=60s")
        assert waited.stdout.strip() == f"multicontainerendpoint.{api.GROUP}/{name} condition met"
        row = kubectl("get", "mce", name, "-n", namespace, "--no-headers").stdout.split()
        assert row[:6] == [name, "Direct", "3", "InService", "True", f"{namespace}-{name}"]
        direct = client.get(api.PLURAL, namespace, name)["status"]["endpointConfigName"]

        # Direct -> Serial: a new model and config, UpdateEndpoint, Ready on the new config
        kubectl("patch", "mce", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"mode":"Serial"}}')
        ready = wait_until(
            "Ready on the Serial config", lambda: _ready(client.get(api.PLURAL, namespace, name), direct), 60
        )
        sagemaker = installed.emulator.client()
        model = sagemaker.describe_model(ModelName=ready["status"]["modelName"])
        assert model["InferenceExecutionConfig"]["Mode"] == "Serial"
        assert kubectl("get", "mce", name, "-n", namespace, "--no-headers").stdout.split()[1] == "Serial"

        # a tag change: applied to the endpoint in place
        kubectl(
            "patch", "mce", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"tags":{"team":"fraud"}}}'
        )
        arn = ready["status"]["endpointArn"]
        wait_until(
            "the endpoint's new tag",
            lambda: {"Key": "team", "Value": "fraud"} in sagemaker.list_tags(ResourceArn=arn)["Tags"],
            60,
            log=operator,
        )

        # the operator's Events, where users look for them
        described = kubectl("describe", "mce", name, "-n", namespace).stdout
        events = described[described.index("\nEvents:") :]
        for reason in ("CreateEndpoint", "UpdateEndpoint", "AddTags", "DeleteEndpointConfig"):
            assert re.search(rf"Normal\s+{reason}\s", events), events
        listed = kubectl("get", "events", "-n", namespace, f"--field-selector=involvedObject.name={name}")
        assert "Updating endpoint" in listed.stdout and f"multicontainerendpoint/{name}" in listed.stdout

        # delete: kubectl returns once the operator released its finalizer, SageMaker is clean
        kubectl("delete", "mce", name, "-n", namespace, "--timeout=60s")
        assert _sagemaker_names(installed, f"{namespace}-{name}") == {
            "endpoints": [],
            "configs": [],
            "models": [],
        }
    finally:
        operator.stop()
    log = operator.text()
    # A 403 as a status code, not the milliseconds of a log timestamp ("02:26:41,403").
    assert not re.search(r"(?<![,.\d])403(?!\d)", log) and "forbidden" not in log.lower(), log
    requests = installed.requests()
    assert requests and _forbidden(requests) == []


# --- RBAC: every permission is used, and each rule is needed ------------------------------------------------


def _cluster_role() -> dict[str, Any]:
    role = next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy" / "base" / "rbac.yaml").read_text())
        if d["kind"] == "ClusterRole"
    )
    return role


def _granted(rule: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def _scenario_args(rule: dict[str, Any], namespace: str) -> list[str]:
    """How the operator is run to exercise a rule: kopf watches namespaces only for --namespace globs,
    and peering objects only with --peering."""
    if "namespaces" in rule["resources"]:
        return [f"--namespace={namespace[:-1]}*"]
    if "kopf.dev" in rule["apiGroups"]:
        return ["--peering=mce-operator"]
    return []


def _install_peering_crd(installed: Installed) -> None:
    # With --peering the operator creates its peering object itself; the cluster needs kopf's CRD.
    crd = next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy" / "components" / "ha" / "peering-crds.yaml").read_text())
        if d["metadata"]["name"] == "clusterkopfpeerings.kopf.dev"
    )
    installed.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    installed.kubectl(
        "wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=60s"
    )


def _says_refused(log: str) -> bool:
    return "403" in log or "forbidden" in log.lower() or "may not" in log


def _run(
    installed: Installed, name: str, args: list[str], namespace: str, *, until_ready: bool
) -> list[Request]:
    """Run the operator on one new object (to Ready and deleted, or until a 403), and return its requests."""
    kubectl, client = installed.kubectl, installed.plane.client()
    kubectl("create", "namespace", namespace)
    installed.requests()
    operator = installed.operator(name, *args)
    seen: list[Request] = []

    def forbidden_and_logged() -> bool:
        # The audit log has the 403 before the operator has read the answer: stopping it then would leave
        # its log empty, so wait for the operator to have said it, too.
        seen.extend(installed.requests())
        return bool(_forbidden(seen)) and _says_refused(operator.text())

    try:
        kubectl("apply", "-f", "-", input=yaml.safe_dump(_manifest(namespace, "rbac")))
        if until_ready:
            wait_until("Ready", lambda: is_ready(client.get(api.PLURAL, namespace, "rbac")), 60, log=operator)
            kubectl("delete", "mce", "rbac", "-n", namespace, "--timeout=60s")
        else:
            wait_until(
                "a request refused with 403, and the operator's log saying so",
                forbidden_and_logged,
                60,
                log=operator,
            )
    finally:
        # An operator refused a request retries it even while stopping (kopf leaving the peering object):
        # there is nothing to wait for then.
        operator.stop(timeout=20 if until_ready else 2)
        # Whatever the operator could not finish: release the finalizer so that nothing is left acting.
        if client.find(api.PLURAL, namespace, "rbac") is not None:
            client.patch(api.PLURAL, namespace, "rbac", {"metadata": {"finalizers": None}})
            kubectl("delete", "mce", "rbac", "-n", namespace, "--ignore-not-found", "--timeout=60s")
    seen.extend(installed.requests())
    return seen


def test_every_permission_the_cluster_role_grants_is_used(installed: Installed) -> None:
    rules = _cluster_role()["rules"]
    used: set[tuple[str, str, str]] = set()
    scenarios = {tuple(_scenario_args(rule, "used-x")) for rule in rules}
    if ("--peering=mce-operator",) in scenarios:
        _install_peering_crd(installed)
    for index, args in enumerate(sorted(scenarios)):
        requests = _run(installed, f"used-{index}", list(args), f"used-{index}", until_ready=True)
        assert _forbidden(requests) == []
        used |= {request.rule for request in requests}
    granted = set().union(*(_granted(rule) for rule in rules))
    unused = sorted(granted - used)
    assert unused == [], f"granted but never used (remove from deploy/base/rbac.yaml): {unused}"


RULES = _cluster_role()["rules"]


@pytest.mark.parametrize("index", range(len(RULES)), ids=["+".join(rule["resources"]) for rule in RULES])
def test_each_rule_is_needed(installed: Installed, index: int) -> None:
    """Without the rule, a request the operator makes is refused (403), and its log says so."""
    rule = RULES[index]
    role = _cluster_role()
    del role["rules"][index]
    if "kopf.dev" in rule["apiGroups"]:
        _install_peering_crd(installed)
    installed.kubectl("apply", "-f", "-", input=yaml.safe_dump(role))
    namespace = f"without-{index}"
    try:
        requests = _run(installed, namespace, _scenario_args(rule, namespace), namespace, until_ready=False)
    finally:
        installed.kubectl("apply", "-k", "deploy/")  # the ClusterRole as shipped, for the next test
    refused = {request.rule for request in _forbidden(requests)}
    assert refused and refused <= _granted(rule), f"refused {refused}, expected only within {_granted(rule)}"
    log = (installed.workdir / f"operator-{namespace}.log").read_text()
    # ... and the operator's log says which resource it may not use.
    named = {word for resource in rule["resources"] for word in (resource, resource.rsplit("/", 1)[-1])}
    assert any(word in log for word in named), log[-3000:]
    assert _says_refused(log), log[-3000:]
