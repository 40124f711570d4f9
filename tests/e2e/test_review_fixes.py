"""End to end: the review fixes — immutable names, deletion mid-creation, opt-in adoption, throttling,
refused access and rejected specs — as Kubernetes and SageMaker show them."""

from __future__ import annotations

import logging
import time
from typing import Any

import e2e_harness
import pytest
from botocore.exceptions import ClientError
from e2e_harness import FINALIZER, TIMING, Harness, condition, manifest, wait

from mce_operator import core, naming
from mce_operator.sagemaker import SageMakerSettings

pytestmark = pytest.mark.e2e

CREATES = ("CreateModel", "CreateEndpointConfig", "CreateEndpoint")
# A fast drift check, so that the slow retries (refused access, a rejected spec) happen within seconds.
QUICK = core.Timing(busy=0.3, steady=0.8)


def degraded(h: Harness, name: str, reason: str, timeout: float = 10) -> dict[str, Any]:
    """Wait until the object is Degraded with ``reason`` about its current generation."""

    def check() -> dict[str, Any] | None:
        obj = h.find(name)
        if not obj:
            return None
        cond = condition(obj, "Degraded")
        ok = (
            cond.get("status") == "True"
            and cond.get("reason") == reason
            and cond.get("observedGeneration") == obj["metadata"]["generation"]
        )
        return obj if ok else None

    result: dict[str, Any] = wait(f"{name} Degraded ({reason})", check, timeout, h._show(name))
    return result


def not_found(h: Harness, endpoint: str) -> bool:
    try:
        h.sm.describe_endpoint(EndpointName=endpoint)
    except ClientError as error:
        return bool(error.response["Error"]["Code"] == "ValidationException")
    return False


def test_changed_endpoint_name_is_refused_and_reverting_it_recovers(running: Harness) -> None:
    running.create(manifest("rename"))
    ready = running.wait_ready("rename")
    created = running.mutations("e2e-rename")

    # kmock does not run the CRD's CEL rules: as with an old CRD or --validate=false.
    running.patch("rename", {"spec": {"endpointName": "e2e-rename-other"}})
    obj = degraded(running, "rename", "InvalidSpec")
    cond = condition(obj, "Degraded")
    assert "spec.endpointName" in cond["message"], cond
    assert "e2e-rename" in cond["message"], cond
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Ready")["observedGeneration"] == 2
    # Status goes on naming the endpoint the object manages, not the one the spec asks for.
    assert obj["status"]["endpointName"] == "e2e-rename"
    assert obj["status"]["endpointArn"] == ready["status"]["endpointArn"]

    # Several drift checks later, still nothing done in SageMaker, for either name.
    time.sleep(2 * TIMING.steady + 0.5)
    assert running.mutations("e2e-rename") == created  # "e2e-rename" is a prefix of both names
    assert running.sm.describe_endpoint(EndpointName="e2e-rename")["EndpointStatus"] == "InService"
    assert not_found(running, "e2e-rename-other")
    assert condition(running.get("rename"), "Degraded")["reason"] == "InvalidSpec"
    assert "InvalidSpec" in running.reasons("rename")

    # Another change while the name is still wrong (a new generation, so no remembered failure): still
    # refused, still nothing created under the new name.
    running.patch("rename", {"spec": {"tags": {"team": "fraud"}}})
    obj = degraded(running, "rename", "InvalidSpec")
    assert obj["metadata"]["generation"] == 3
    assert obj["status"]["endpointName"] == "e2e-rename"
    time.sleep(TIMING.steady + 0.5)
    assert running.mutations("e2e-rename") == created
    assert not_found(running, "e2e-rename-other")

    running.patch("rename", {"spec": {"endpointName": "e2e-rename"}})
    obj = running.wait_ready("rename")
    assert obj["metadata"]["generation"] == 4
    assert condition(obj, "Degraded")["status"] == "False"
    assert obj["status"]["endpointName"] == "e2e-rename"
    assert obj["status"]["endpointConfigName"] == ready["status"]["endpointConfigName"]
    assert running.tags(obj["status"]["endpointArn"])["team"] == "fraud"
    assert {op for op, _, _ in running.mutations("e2e-rename")[len(created) :]} <= {"AddTags"}
    assert not_found(running, "e2e-rename-other")


def test_deletion_while_creating_leaves_nothing_behind(running: Harness) -> None:
    running.emulator.set_delay(create=2.0)
    running.create(manifest("midway"))
    wait("CreateEndpoint", lambda: running.calls("e2e-midway", "CreateEndpoint"), 10)
    assert running.emulator.endpoint_status("e2e-midway") == "Creating"
    started = time.time()  # the emulator's clock
    running.delete("midway")

    deadline = time.monotonic() + 20
    while (obj := running.find("midway")) is not None:
        assert FINALIZER in obj["metadata"].get("finalizers", []), obj
        assert time.monotonic() < deadline, f"still there: {obj!r}\n{running.mutations('e2e-midway')}"
        time.sleep(0.03)
    # The finalizer went only once SageMaker was clean.
    empty = {"endpoints": [], "configs": [], "models": []}
    assert running.left_in_sagemaker("e2e-midway") == empty

    # Nothing is (re)created afterwards: no timer, no late reconcile of the deleted object.
    time.sleep(2.0)
    late = [
        (c.operation, c.name, c.outcome)
        for c in running.calls("e2e-midway")
        if c.operation in CREATES and c.time >= started
    ]
    assert late == [], running.mutations("e2e-midway")
    assert running.left_in_sagemaker("e2e-midway") == empty
    for op in CREATES:
        assert len(running.calls("e2e-midway", op)) == 1, running.mutations("e2e-midway")
    assert "DeleteEndpoint" in running.reasons("midway")


def test_recreated_object_adopts_a_retained_endpoint_only_when_annotated(running: Harness) -> None:
    first = running.create(manifest("reborn", deletionPolicy="Retain"))
    status = running.wait_ready("reborn")["status"]
    running.delete("reborn")
    running.kube.wait_gone("multicontainerendpoints", "ml", "reborn", timeout=10)
    assert running.sm.describe_endpoint(EndpointName="e2e-reborn")["EndpointStatus"] == "InService"
    before = len(running.mutations("e2e-reborn"))

    second = running.create(manifest("reborn", deletionPolicy="Retain"))
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    obj = degraded(running, "reborn", "NotOwned")
    assert condition(obj, "Ready")["status"] == "False"
    time.sleep(2 * TIMING.steady + 0.5)  # drift checks: still hands off
    assert running.mutations("e2e-reborn")[before:] == []
    assert condition(running.get("reborn"), "Degraded")["reason"] == "NotOwned"
    arn = status["endpointArn"]
    assert running.tags(arn)["sagemaker.mce.dev/uid"] == first["metadata"]["uid"]

    # An annotation is no spec change: the steady drift check picks it up.
    running.patch("reborn", {"metadata": {"annotations": {naming.ADOPT_ANNOTATION: "true"}}})
    obj = running.wait_ready("reborn", timeout=10)
    assert obj["status"]["endpointArn"] == arn
    assert running.tags(arn)["sagemaker.mce.dev/uid"] == second["metadata"]["uid"]
    assert running.sm.describe_endpoint(EndpointName="e2e-reborn")["EndpointStatus"] == "InService"
    adopted = running.mutations("e2e-reborn")[before:]
    assert ("AddTags", arn, "ok") in adopted, adopted
    assert not [op for op, _, _ in adopted if not op.startswith("AddTags")], adopted


def test_throttling_while_creating_still_converges(
    e2e: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Two tries per call in all, so a call throttled three times fails in the operator, which must look
    # again; a call throttled once succeeds on botocore's own retry.
    monkeypatch.setattr(
        e2e_harness,
        "SageMakerSettings",
        lambda **kwargs: SageMakerSettings(**{**kwargs, "max_attempts": 2}),
    )
    e2e.start_operator()
    e2e.emulator.throttle(count=3, operations=["DescribeEndpoint"])  # the first observation fails
    e2e.emulator.throttle(count=3, operations=["CreateModel"])  # the first CreateModel fails
    e2e.emulator.throttle(count=1, operations=["CreateEndpointConfig", "CreateEndpoint"])  # boto retries
    with caplog.at_level(logging.WARNING):
        e2e.create(manifest("throttled"))
        obj = e2e.wait_ready("throttled")
    e2e.emulator.clear_faults()

    outcomes = {op: [c.outcome for c in e2e.calls("e2e-throttled", op)] for op in CREATES}
    assert outcomes["CreateModel"] == ["ThrottlingException"] * 3 + ["ok"], outcomes
    assert outcomes["CreateEndpointConfig"] == ["ThrottlingException", "ok"], outcomes
    assert outcomes["CreateEndpoint"] == ["ok"], outcomes
    described = e2e.sm.describe_endpoint(EndpointName="e2e-throttled")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == obj["status"]["endpointConfigName"]
    assert condition(obj, "Degraded")["status"] == "False"
    assert not obj["status"].get("failureReason")

    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any("ThrottlingException" in m for _, m in messages), messages  # the log was captured
    crashes = [m for level, m in messages if level >= logging.ERROR and "failed" in m.lower()]
    assert crashes == [], crashes


def test_refused_access_is_degraded_then_recovers(e2e: Harness) -> None:
    e2e.start_operator(QUICK)
    e2e.create(manifest("denied"))
    ready = e2e.wait_ready("denied")
    before = len(e2e.mutations("e2e-denied"))

    fault = e2e.emulator.deny(["DescribeEndpoint"])
    obj = degraded(e2e, "denied", "AccessDenied")
    cond = condition(obj, "Degraded")
    assert "Cannot read SageMaker's state" in cond["message"], cond
    assert "AccessDeniedException" in cond["message"], cond
    assert "sagemaker:DescribeEndpoint" in cond["message"], cond
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["status"]["endpointArn"] == ready["status"]["endpointArn"]
    assert "AccessDenied" in e2e.reasons("denied")

    # Retried at the steady pace, not the busy one; and nothing is changed meanwhile.
    denied = len(e2e.calls("e2e-denied", "DescribeEndpoint"))
    time.sleep(2.0)
    retries = len(e2e.calls("e2e-denied", "DescribeEndpoint")) - denied
    assert 1 <= retries <= 3, retries
    assert e2e.mutations("e2e-denied")[before:] == []
    assert e2e.emulator.endpoint_status("e2e-denied") == "InService"

    e2e.emulator.remove_fault(fault)
    obj = e2e.wait_ready("denied", timeout=10)
    assert condition(obj, "Degraded")["status"] == "False"
    assert not obj["status"].get("failureReason")
    assert e2e.mutations("e2e-denied")[before:] == []
    assert [e["reason"] for e in e2e.events("denied") if e.get("type") == "Warning"] == ["AccessDenied"]


def test_rejected_spec_is_tried_once_per_generation(e2e: Harness) -> None:
    e2e.start_operator(QUICK)
    # The CRD's pattern lets it through; SageMaker's own enum of instance types does not.
    e2e.create(manifest("rejected", instanceType="ml.m5.huge"))
    obj = degraded(e2e, "rejected", "SageMakerRejected")
    cond = condition(obj, "Degraded")
    assert "CreateEndpointConfig" in cond["message"], cond
    assert "ml.m5.huge" in cond["message"], cond
    assert condition(obj, "Ready")["status"] == "False"

    time.sleep(3 * QUICK.steady + 0.3)  # several drift checks: no new attempt
    attempts = [c.outcome for c in e2e.calls("e2e-rejected", "CreateEndpointConfig")]
    assert attempts == ["ValidationException"], e2e.mutations("e2e-rejected")
    assert e2e.calls("e2e-rejected", "CreateEndpoint") == []
    assert condition(e2e.get("rejected"), "Degraded")["reason"] == "SageMakerRejected"
    warnings = [e["reason"] for e in e2e.events("rejected") if e.get("type") == "Warning"]
    assert warnings == ["CreateEndpointConfigFailed"], warnings

    e2e.patch("rejected", {"spec": {"instanceType": "ml.m5.large"}})
    obj = e2e.wait_ready("rejected")
    assert obj["metadata"]["generation"] == 2
    assert condition(obj, "Degraded")["status"] == "False"
    described = e2e.sm.describe_endpoint(EndpointName="e2e-rejected")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == obj["status"]["endpointConfigName"]
    outcomes = [c.outcome for c in e2e.calls("e2e-rejected", "CreateEndpointConfig")]
    assert outcomes == ["ValidationException", "ok"], outcomes
    assert [c.outcome for c in e2e.calls("e2e-rejected", "CreateEndpoint")] == ["ok"]
    assert not [op for op, _, _ in e2e.mutations("e2e-rejected") if op.startswith("Delete")]
