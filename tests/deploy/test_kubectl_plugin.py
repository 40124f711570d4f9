"""kubectl-mce against the in-memory Kubernetes API (and, for invoke, the SageMaker emulator)."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from mce_operator import api, core, kubectl_plugin
from mce_operator.emulator import Emulator
from mce_operator.testkit import KubeServer

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "sagemaker.mce.dev_multicontainerendpoints.yaml").read_text())
PLURAL = "multicontainerendpoints"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/{}:1.0"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"


def mce(name: str, namespace: str = "ml", mode: str = "Direct") -> dict[str, Any]:
    return {
        "apiVersion": "sagemaker.mce.dev/v1alpha1",
        "kind": "MultiContainerEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "endpointName": f"{name}-prod",
            "region": "us-east-1",
            "executionRoleArn": ROLE,
            "mode": mode,
            "containers": [
                {"containerHostname": "features", "image": IMAGE.format("features")},
                {"containerHostname": "scorer", "image": IMAGE.format("scorer")},
            ],
            "instanceType": "ml.m5.large",
            "tags": {"team": "risk"},
        },
    }


def conditions(ready: bool, degraded: str = "", generation: int = 1) -> list[dict[str, Any]]:
    def cond(kind: str, status: bool, reason: str, message: str = "") -> dict[str, Any]:
        return {
            "type": kind,
            "status": "True" if status else "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": "2024-06-01T00:00:00Z",
            "observedGeneration": generation,
        }

    return [
        cond("Ready", ready, "InService" if ready else "EndpointFailed", "Serving" if ready else degraded),
        cond("Progressing", False, "Idle"),
        cond("Degraded", bool(degraded), "EndpointFailed" if degraded else "AsExpected", degraded),
    ]


def set_status(kube: KubeServer, name: str, namespace: str = "ml", **status: Any) -> None:
    kube.patch(PLURAL, namespace, name, {"status": status}, subresource="status")


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    with KubeServer(crds=[CRD], namespaces=["default", "ml", "other"]) as server:
        yield server


@pytest.fixture
def kubeconfig(kube: KubeServer, tmp_path: Path) -> str:
    return str(kube.write_kubeconfig(tmp_path / "kubeconfig", namespace="ml"))


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = kubectl_plugin.main(list(argv), out=out)
    return code, out.getvalue()


def populate(kube: KubeServer) -> None:
    kube.create(mce("fraud"))
    set_status(
        kube,
        "fraud",
        observedGeneration=1,
        endpointName="fraud-prod",
        endpointArn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/fraud-prod",
        endpointStatus="InService",
        modelName="fraud-prod-3f9c2a1b07",
        endpointConfigName="fraud-prod-3f9c2a1b07",
        containerCount=2,
        conditions=conditions(True),
    )
    kube.create(mce("churn", mode="Serial"))
    set_status(
        kube,
        "churn",
        observedGeneration=1,
        endpointName="churn-prod",
        endpointStatus="Failed",
        failureReason="image not found",
        containerCount=2,
        conditions=conditions(False, "SageMaker: image not found; fix spec.containers[0].image"),
    )
    kube.create(mce("elsewhere", namespace="other"))


def test_get_lists_the_printer_columns_and_the_degraded_message(kube: KubeServer, kubeconfig: str) -> None:
    populate(kube)
    code, out = run("--kubeconfig", kubeconfig, "get")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "MODE", "CONTAINERS", "STATUS", "READY", "ENDPOINT", "AGE", "MESSAGE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"fraud", "churn"}  # the context's namespace (ml) only
    assert rows["fraud"].split()[:6] == ["fraud", "Direct", "2", "InService", "True", "fraud-prod"]
    churn = rows["churn"].split()
    assert churn[:6] == ["churn", "Serial", "2", "Failed", "False", "churn-prod"]
    assert rows["churn"].endswith("SageMaker: image not found; fix spec.containers[0].image")
    # The columns line up, as kubectl's do.
    for line in lines[1:]:
        assert line.index(line.split()[1]) == lines[0].index("MODE")
        assert line.index(line.split()[5]) == lines[0].index("ENDPOINT")


def test_get_one_by_name_and_across_namespaces(kube: KubeServer, kubeconfig: str) -> None:
    populate(kube)
    code, out = run("--kubeconfig", kubeconfig, "get", "fraud")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["NAME", "fraud"]
    code, out = run("get", "-A", "--kubeconfig", kubeconfig)
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert sorted(tuple(line.split()[:2]) for line in lines[1:]) == [
        ("ml", "churn"),
        ("ml", "fraud"),
        ("other", "elsewhere"),
    ]
    # Not reconciled yet: no status, the container count comes from the spec.
    elsewhere = next(line for line in lines if " elsewhere " in line).split()
    assert elsewhere[2:7] == ["Direct", "2", "<none>", "<none>", "<none>"]
    code, out = run("--kubeconfig", kubeconfig, "-n", "other", "get")
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "elsewhere"]


def test_get_missing_object_is_an_error(kube: KubeServer, kubeconfig: str, capsys: Any) -> None:
    code, _ = run("--kubeconfig", kubeconfig, "get", "nope")
    assert code == 1
    assert "NotFound" in capsys.readouterr().err


def test_describe_shows_spec_status_conditions_and_events(kube: KubeServer, kubeconfig: str) -> None:
    populate(kube)
    obj = kube.get(PLURAL, "ml", "churn")
    other = kube.get(PLURAL, "ml", "fraud")
    for target, reason, message in [
        (obj, "CreateModel", "Created model churn-prod-1"),
        (obj, "UpdateEndpointFailed", "ValidationException: image not found"),
        (other, "CreateModel", "Created model fraud-prod-1"),
    ]:
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": "mce-", "namespace": "ml"},
                "involvedObject": {
                    "apiVersion": "sagemaker.mce.dev/v1alpha1",
                    "kind": "MultiContainerEndpoint",
                    "name": target["metadata"]["name"],
                    "namespace": "ml",
                    "uid": target["metadata"]["uid"],
                },
                "reason": reason,
                "message": message,
                "type": "Warning" if "Failed" in reason else "Normal",
                "source": {"component": "kopf"},
                "lastTimestamp": (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    code, out = run("--kubeconfig", kubeconfig, "describe", "churn")
    assert code == 0
    for label, value in [
        ("Name", "churn"),
        ("Namespace", "ml"),
        ("Endpoint name", "churn-prod"),
        ("Mode", "Serial"),
        ("Execution role", ROLE),
        ("Instances", "1 x ml.m5.large"),
        ("Tags", "team=risk"),
        ("Endpoint status", "Failed"),
        ("Failure reason", "image not found"),
    ]:
        assert re.search(rf"^ *{label}: +{re.escape(value)}$", out, re.MULTILINE), label
    for expected in ["Spec:", "Containers (2):", IMAGE.format("scorer"), "Status:", "Conditions:", "Events:"]:
        assert expected in out, expected
    conditions_part = out.split("Conditions:")[1].split("Events:")[0]
    degraded = next(line for line in conditions_part.splitlines() if line.split()[:1] == ["Degraded"])
    assert degraded.split()[1:3] == ["True", "EndpointFailed"]
    assert degraded.endswith("SageMaker: image not found; fix spec.containers[0].image")
    events = out.split("Events:")[1]
    assert "Created model churn-prod-1" in events and "ValidationException: image not found" in events
    assert "fraud-prod-1" not in events  # another object's Event
    warning = next(line for line in events.splitlines() if "UpdateEndpointFailed" in line).split()
    assert warning[:2] == ["Warning", "UpdateEndpointFailed"] and warning[2].startswith("3m")
    assert warning[3] == "kopf"


def test_describe_shows_autoscaling_guardrails_and_the_live_instances(
    kube: KubeServer, kubeconfig: str
) -> None:
    body = mce("scaled")
    body["spec"]["autoscaling"] = {
        "minCapacity": 2,
        "maxCapacity": 8,
        "targetTracking": {"invocationsPerInstance": 70},
    }
    body["spec"]["deployment"] = {
        "blueGreen": {
            "trafficRouting": {
                "type": "Canary",
                "waitIntervalInSeconds": 300,
                "canarySize": {"type": "CapacityPercent", "value": 10},
            }
        },
        "autoRollbackAlarms": ["scaled-5xx", "scaled-latency"],
    }
    kube.create(body)
    set_status(
        kube,
        "scaled",
        observedGeneration=1,
        desiredInstanceCount=5,
        currentInstanceCount=4,
        autoscaling={"minCapacity": 2, "maxCapacity": 8, "policies": ["mce-invocations-per-instance"]},
        conditions=conditions(True),
    )
    code, out = run("--kubeconfig", kubeconfig, "describe", "scaled")
    assert code == 0
    canary = (
        "blue/green Canary of 10 (CapacityPercent), baking 300 s; rolled back by scaled-5xx, scaled-latency"
    )
    for label, value in [
        ("Autoscaling", "2 to 8 instances, 70 invocations per instance per minute"),
        ("Deployment", canary),
        ("Live instances", "5 desired, 4 current"),
        ("Scalable target", "2 to 8 instances (policies: mce-invocations-per-instance)"),
    ]:
        assert re.search(rf"^ *{label}: +{re.escape(value)}$", out, re.MULTILINE), (label, out)
    # An object without them shows none of these lines.
    populate(kube)
    code, out = run("--kubeconfig", kubeconfig, "describe", "fraud")
    assert code == 0
    assert not re.search(r"^ *(Autoscaling|Deployment|Live instances|Scalable target):", out, re.MULTILINE)


def test_invoke_calls_the_endpoint_of_the_object(
    kube: KubeServer, kubeconfig: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulator(delay=0.05) as emu:
        for name, value in {
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": emu.url,
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "eu-west-1",  # spec.region wins
        }.items():
            monkeypatch.setenv(name, value)
        sm = boto3.client("sagemaker", endpoint_url=emu.url, region_name="us-east-1")
        containers = [
            {"ContainerHostname": host, "Image": IMAGE.format(host)} for host in ("features", "scorer")
        ]
        sm.create_model(
            ModelName="m1",
            ExecutionRoleArn=ROLE,
            Containers=containers,
            InferenceExecutionConfig={"Mode": "Direct"},
        )
        variant = {"VariantName": "AllTraffic", "ModelName": "m1", "InstanceType": "ml.m5.large"}
        sm.create_endpoint_config(
            EndpointConfigName="c1", ProductionVariants=[{**variant, "InitialInstanceCount": 1}]
        )
        sm.create_endpoint(EndpointName="fraud-prod", EndpointConfigName="c1")
        deadline = time.monotonic() + 5
        while sm.describe_endpoint(EndpointName="fraud-prod")["EndpointStatus"] != "InService":
            assert time.monotonic() < deadline
            time.sleep(0.05)

        kube.create(mce("fraud"))
        code, _ = run("--kubeconfig", kubeconfig, "invoke", "fraud", "--body", "{}")
        assert code == 1  # no status.endpointName yet
        set_status(kube, "fraud", endpointName="fraud-prod", conditions=conditions(True))
        code, out = run(
            "--kubeconfig", kubeconfig, "invoke", "fraud", "--container", "scorer", "--body", '{"x": 1}'
        )
        assert code == 0
        assert yaml.safe_load(out) == {"container": "scorer", "input": {"x": 1}}
        body = Path(kubeconfig).parent / "body.txt"
        body.write_text("raw")
        code, out = run(
            "--kubeconfig", kubeconfig, "invoke", "fraud", "--container", "features",
            "--body", f"@{body}", "--content-type", "text/plain", "--accept", "text/plain",
        )  # fmt: skip
        assert (code, out) == (0, "features(raw)\n")


def _status_for(obj: dict[str, Any], generation: int) -> dict[str, Any]:
    """The status the operator writes for ``obj``'s spec at ``generation`` (names from the core)."""
    desired = core.desired_state(api.parse_spec(obj["spec"]), core.identity_of(obj["metadata"]))
    return {
        "observedGeneration": generation,
        "endpointName": desired.endpoint_name,
        "endpointStatus": "InService",
        "modelName": desired.model_name,
        "endpointConfigName": desired.config_name,
        "containerCount": desired.container_count,
        "conditions": conditions(True, generation=generation),
    }


def test_get_shows_a_status_behind_its_spec(kube: KubeServer, kubeconfig: str) -> None:
    """After a spec change the operator has not reconciled yet, READY is not the old generation's True,
    MODE is the one the status's model runs, and MESSAGE says why."""
    created = kube.create(mce("fraud", mode="Direct"))
    set_status(kube, "fraud", **_status_for(created, 1))
    code, out = run("--kubeconfig", kubeconfig, "get", "fraud")
    assert out.splitlines()[1].split()[1:5] == ["Direct", "2", "InService", "True"]

    kube.patch(PLURAL, "ml", "fraud", {"spec": {"mode": "Serial"}})  # generation 2, status still of 1
    code, out = run("--kubeconfig", kubeconfig, "get", "fraud")
    row = out.splitlines()[1]
    assert code == 0
    assert row.split()[1:6] == ["Direct", "2", "InService", "Unknown", "fraud-prod"]
    assert row.endswith(
        "status is for generation 1, the spec is at 2: the operator has not reconciled it yet "
        "(spec mode Serial)"
    )

    # A change of the config only (instance type) keeps the model: its mode is still known.
    kube.patch(PLURAL, "ml", "fraud", {"spec": {"instanceType": "ml.c5.xlarge"}})
    row = run("--kubeconfig", kubeconfig, "get", "fraud")[1].splitlines()[1]
    assert row.split()[1:5] == ["Direct", "2", "InService", "Unknown"]
    assert "status is for generation 1, the spec is at 3" in row
    # A model change besides the mode: the status's model cannot be told apart any more.
    containers = [{"image": IMAGE.format("features-v2")}, {"image": IMAGE.format("scorer")}]
    patched = kube.patch(PLURAL, "ml", "fraud", {"spec": {"containers": containers}})
    row = run("--kubeconfig", kubeconfig, "get", "fraud")[1].splitlines()[1]
    assert row.split()[1:5] == ["<unknown>", "2", "InService", "Unknown"]
    assert row.endswith("the spec is at 4: the operator has not reconciled it yet (spec mode Serial)")

    # Reconciled: the status's view and the spec's agree again, with a Degraded message kept as it was.
    status = _status_for(patched, 4)
    status["conditions"] = conditions(False, "SageMaker: no capacity", generation=4)
    set_status(kube, "fraud", **status)
    row = run("--kubeconfig", kubeconfig, "get", "fraud")[1].splitlines()[1]
    assert row.split()[1:5] == ["Serial", "2", "InService", "False"]
    assert row.endswith("SageMaker: no capacity")

    # A Ready condition older than status.observedGeneration is stale too.
    status["conditions"] = conditions(True, generation=3)
    set_status(kube, "fraud", **status)
    row = run("--kubeconfig", kubeconfig, "get", "fraud")[1].splitlines()[1]
    assert row.split()[4] == "Unknown" and "status is for generation 3, the spec is at 4" in row
