"""End to end: create, change, delete — what Kubernetes and SageMaker show afterwards."""

from __future__ import annotations

import time
from typing import Any

import pytest
from e2e_harness import FINALIZER, IMAGE, MUTATING, TIMING, Harness, condition, manifest, wait

pytestmark = pytest.mark.e2e


def test_create_becomes_ready(running: Harness) -> None:
    running.create(manifest("create"))
    obj = running.wait_ready("create")

    status, meta = obj["status"], obj["metadata"]
    assert FINALIZER in meta.get("finalizers", [])
    assert status["endpointName"] == "e2e-create"
    assert status["endpointStatus"] == "InService"
    assert status["observedGeneration"] == meta["generation"]
    assert status["containerCount"] == 2
    assert status["modelName"].startswith("e2e-create-")
    assert status["endpointConfigName"].startswith("e2e-create-")
    # Reconciling/Stalled are the kstatus names of Progressing/Degraded (Flux, kpt).
    for kind, value in (
        ("Ready", "True"),
        ("Progressing", "False"),
        ("Degraded", "False"),
        ("Reconciling", "False"),
        ("Stalled", "False"),
    ):
        cond = condition(obj, kind)
        assert cond["status"] == value, cond
        assert cond["observedGeneration"] == meta["generation"]
        assert cond["lastTransitionTime"]

    described = running.sm.describe_endpoint(EndpointName="e2e-create")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointArn"] == status["endpointArn"]
    assert described["EndpointConfigName"] == status["endpointConfigName"]
    model = running.sm.describe_model(ModelName=status["modelName"])
    assert model["InferenceExecutionConfig"]["Mode"] == "Direct"
    assert [c["ContainerHostname"] for c in model["Containers"]] == ["features", "scorer"]
    tags = running.tags(described["EndpointArn"])
    assert tags["team"] == "risk"
    assert tags["sagemaker.mce.dev/uid"] == meta["uid"]

    assert running.mutations("e2e-create") == [
        ("CreateModel", status["modelName"], "ok"),
        ("CreateEndpointConfig", status["endpointConfigName"], "ok"),
        ("CreateEndpoint", "e2e-create", "ok"),
    ]
    reasons = running.reasons("create")
    for reason in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint"):
        assert reasons.count(reason) == 1, reasons


def test_direct_to_serial_switches_then_cleans_up(running: Harness) -> None:
    running.create(manifest("switch"))
    before = running.wait_ready("switch")["status"]
    running.patch("switch", {"spec": {"mode": "Serial"}})
    obj = running.wait_ready("switch", config_not=before["endpointConfigName"])
    after = obj["status"]
    assert obj["metadata"]["generation"] == 2
    assert after["modelName"] != before["modelName"]

    described = running.sm.describe_endpoint(EndpointName="e2e-switch")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == after["endpointConfigName"]
    model = running.sm.describe_model(ModelName=after["modelName"])
    assert model["InferenceExecutionConfig"]["Mode"] == "Serial"

    wait(
        "the Direct model and config to be deleted",
        lambda: (
            running.left_in_sagemaker("e2e-switch")
            == {
                "endpoints": ["e2e-switch"],
                "configs": [after["endpointConfigName"]],
                "models": [after["modelName"]],
            }
        ),
        10,
        lambda: repr(running.left_in_sagemaker("e2e-switch")),
    )
    ops = [(op, name) for op, name, _ in running.mutations("e2e-switch")]
    update = ops.index(("UpdateEndpoint", "e2e-switch"))
    assert ops.index(("CreateModel", after["modelName"])) < update
    assert ops.index(("CreateEndpointConfig", after["endpointConfigName"])) < update
    assert ops.index(("DeleteEndpointConfig", before["endpointConfigName"])) > update
    assert ops.index(("DeleteModel", before["modelName"])) > update
    assert [op for op, _ in ops].count("UpdateEndpoint") == 1
    # The old config went only once SageMaker had the endpoint InService on the new one.
    calls = running.emulator.calls
    deleted_at = next(
        c.time
        for c in calls
        if c.operation == "DeleteEndpointConfig" and c.name == before["endpointConfigName"]
    )
    updated_at = next(c.time for c in calls if c.operation == "UpdateEndpoint")
    assert deleted_at - updated_at >= 0.2  # the emulator's update delay
    reasons = running.reasons("switch")
    for reason in ("UpdateEndpoint", "DeleteEndpointConfig", "DeleteModel"):
        assert reason in reasons, reasons


def test_tag_change_is_applied_in_place(running: Harness) -> None:
    running.create(manifest("tags", tags={"team": "risk", "stage": "dev"}))
    before = running.wait_ready("tags")["status"]
    created = running.mutations("e2e-tags")
    running.patch("tags", {"spec": {"tags": {"team": "fraud", "stage": None}}})
    obj = running.wait_ready("tags")
    assert obj["status"]["modelName"] == before["modelName"]
    assert obj["status"]["endpointConfigName"] == before["endpointConfigName"]

    arns = {
        "model": running.sm.describe_model(ModelName=before["modelName"])["ModelArn"],
        "config": running.sm.describe_endpoint_config(EndpointConfigName=before["endpointConfigName"])[
            "EndpointConfigArn"
        ],
        "endpoint": before["endpointArn"],
    }

    def retagged() -> bool:
        return all(
            running.tags(arn).get("team") == "fraud" and "stage" not in running.tags(arn)
            for arn in arns.values()
        )

    wait(
        "the new tags on model, config and endpoint",
        retagged,
        10,
        lambda: repr(running.mutations("e2e-tags")),
    )
    for arn in arns.values():
        assert running.tags(arn)["sagemaker.mce.dev/name"] == "tags"
    changes = running.mutations("e2e-tags")[len(created) :]
    assert {op for op, _, _ in changes} <= {"AddTags", "DeleteTags"}, changes
    assert [op for op, _, _ in changes].count("AddTags") == 3, changes
    assert [op for op, _, _ in changes].count("DeleteTags") == 3, changes
    assert not running.calls("e2e-tags", "UpdateEndpoint")
    assert len(running.calls("e2e-tags", "CreateModel")) == 1
    assert "AddTags" in running.reasons("tags")


def test_failed_update_is_degraded_once_then_a_corrected_spec_recovers(running: Harness) -> None:
    running.create(manifest("rollback"))
    first = running.wait_ready("rollback")["status"]
    running.emulator.fail_endpoint_update(
        "e2e-rollback", reason="Image scorer:broken could not be pulled", count=1
    )
    broken = [
        {"containerHostname": "features", "image": IMAGE.format("features")},
        {"containerHostname": "scorer", "image": IMAGE.format("scorer").replace(":1.0", ":broken")},
    ]
    running.patch("rollback", {"spec": {"containers": broken}})

    def degraded() -> dict[str, Any] | None:
        obj = running.find("rollback")
        cond = condition(obj, "Degraded") if obj else {}
        ok = cond.get("status") == "True" and cond.get("observedGeneration") == 2
        return obj if ok else None

    obj = wait("Degraded after the rolled-back update", degraded, 15, lambda: repr(running.find("rollback")))
    cond = condition(obj, "Degraded")
    assert cond["reason"] == "UpdateRolledBack"
    assert "could not be pulled" in cond["message"]
    stalled = condition(obj, "Stalled")
    assert [stalled[k] for k in ("status", "reason", "message")] == [
        cond[k] for k in ("status", "reason", "message")
    ]
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Ready")["observedGeneration"] == 2
    described = running.sm.describe_endpoint(EndpointName="e2e-rollback")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == first["endpointConfigName"]

    # Several timer ticks and steady intervals later: still exactly one UpdateEndpoint, no loop.
    time.sleep(2 * TIMING.steady + 0.5)
    assert len(running.calls("e2e-rollback", "UpdateEndpoint")) == 1, running.mutations("e2e-rollback")
    obj = running.get("rollback")
    assert condition(obj, "Degraded")["reason"] == "UpdateRolledBack"
    warnings = [e for e in running.events("rollback") if e.get("type") == "Warning"]
    assert [e["reason"] for e in warnings] == ["UpdateRolledBack"], warnings
    assert "could not be pulled" in warnings[0]["message"]

    fixed = [broken[0], {"containerHostname": "scorer", "image": IMAGE.format("scorer-fixed")}]
    running.patch("rollback", {"spec": {"containers": fixed}})
    obj = running.wait_ready("rollback", config_not=first["endpointConfigName"])
    assert obj["metadata"]["generation"] == 3
    assert condition(obj, "Degraded")["status"] == "False"
    assert not obj["status"].get("failureReason")
    described = running.sm.describe_endpoint(EndpointName="e2e-rollback")
    assert described["EndpointConfigName"] == obj["status"]["endpointConfigName"]
    assert len(running.calls("e2e-rollback", "UpdateEndpoint")) == 2


def test_endpoint_deleted_out_of_band_is_recreated(running: Harness) -> None:
    running.create(manifest("drift"))
    status = running.wait_ready("drift")["status"]
    running.sm.delete_endpoint(EndpointName="e2e-drift")
    wait(
        "CreateEndpoint again after the out-of-band deletion",
        lambda: len(running.calls("e2e-drift", "CreateEndpoint")) == 2,
        15,
        lambda: repr(running.mutations("e2e-drift")),
    )
    # The CreateEndpoint call comes before the status write that reports it: wait for SageMaker first.
    wait(
        "the recreated endpoint to be InService",
        lambda: running.sm.describe_endpoint(EndpointName="e2e-drift")["EndpointStatus"] == "InService",
    )
    obj = running.wait_ready("drift")
    assert obj["status"]["endpointConfigName"] == status["endpointConfigName"]
    described = running.sm.describe_endpoint(EndpointName="e2e-drift")
    assert described["EndpointConfigName"] == status["endpointConfigName"]
    assert len(running.calls("e2e-drift", "CreateModel")) == 1
    assert running.reasons("drift").count("CreateEndpoint") == 2


def test_operator_stopped_mid_update_converges_after_restart(e2e: Harness) -> None:
    first = e2e.start_operator()
    e2e.create(manifest("restart"))
    before = e2e.wait_ready("restart")["status"]
    # The update outlives the first operator, even when stopping it takes seconds (it can take 5 s).
    e2e.emulator.set_delay(update=8.0)
    e2e.patch("restart", {"spec": {"mode": "Serial"}})
    wait("UpdateEndpoint", lambda: e2e.calls("e2e-restart", "UpdateEndpoint"), 10)
    started = time.monotonic()
    first.stop()
    stopping = time.monotonic() - started
    endpoint = e2e.sm.describe_endpoint(EndpointName="e2e-restart")
    assert endpoint["EndpointStatus"] == "Updating", (f"stopping took {stopping:.1f}s", endpoint)
    assert not [op for op, _, _ in e2e.mutations("e2e-restart") if op.startswith("Delete")]

    e2e.start_operator()
    obj = e2e.wait_ready("restart", config_not=before["endpointConfigName"], timeout=20)
    after = obj["status"]
    wait(
        "only the Serial model and config to be left",
        lambda: (
            e2e.left_in_sagemaker("e2e-restart")
            == {
                "endpoints": ["e2e-restart"],
                "configs": [after["endpointConfigName"]],
                "models": [after["modelName"]],
            }
        ),
        10,
        lambda: repr(e2e.left_in_sagemaker("e2e-restart")),
    )
    assert len(e2e.calls("e2e-restart", "UpdateEndpoint")) == 1, e2e.mutations("e2e-restart")
    assert len(e2e.calls("e2e-restart", "CreateEndpoint")) == 1
    for op in ("CreateModel", "CreateEndpointConfig"):
        outcomes = [c.outcome for c in e2e.calls("e2e-restart", op)]
        assert outcomes.count("ok") == 2, (op, outcomes)


def test_deletion_releases_the_finalizer_only_once_sagemaker_is_clean(running: Harness) -> None:
    running.create(manifest("delete"))
    running.wait_ready("delete")
    running.delete("delete")
    held_while_sagemaker_had_it = False
    deadline = time.monotonic() + 15
    while (obj := running.find("delete")) is not None:
        assert FINALIZER in obj["metadata"].get("finalizers", []), obj
        assert obj["metadata"].get("deletionTimestamp")
        left = running.left_in_sagemaker("e2e-delete")
        held_while_sagemaker_had_it |= bool(left["endpoints"] or left["configs"] or left["models"])
        assert time.monotonic() < deadline, f"still there: {obj!r}"
        time.sleep(0.03)
    assert held_while_sagemaker_had_it
    assert running.left_in_sagemaker("e2e-delete") == {"endpoints": [], "configs": [], "models": []}
    reasons = running.reasons("delete")
    for reason in ("DeleteEndpoint", "DeleteEndpointConfig", "DeleteModel"):
        assert reason in reasons, reasons


def test_retain_policy_keeps_the_endpoint(running: Harness) -> None:
    running.create(manifest("retain", deletionPolicy="Retain"))
    status = running.wait_ready("retain")["status"]
    running.delete("retain")
    running.kube.wait_gone("multicontainerendpoints", "ml", "retain", timeout=10)
    assert running.left_in_sagemaker("e2e-retain") == {
        "endpoints": ["e2e-retain"],
        "configs": [status["endpointConfigName"]],
        "models": [status["modelName"]],
    }
    assert running.sm.describe_endpoint(EndpointName="e2e-retain")["EndpointStatus"] == "InService"
    assert not [op for op, _, _ in running.mutations("e2e-retain") if op.startswith("Delete")]
    assert "Retained" in running.reasons("retain")


def test_invalid_spec_is_degraded_without_calling_sagemaker(running: Harness) -> None:
    body = manifest("invalid")
    for container in body["spec"]["containers"]:
        del container["containerHostname"]
    running.create(body)

    def degraded() -> dict[str, Any] | None:
        obj = running.find("invalid")
        return obj if obj and condition(obj, "Degraded").get("status") == "True" else None

    obj = wait("Degraded", degraded, 10, lambda: repr(running.find("invalid")))
    cond = condition(obj, "Degraded")
    assert cond["reason"] == "InvalidSpec"
    assert "containerHostname" in cond["message"], cond
    assert cond["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Ready")["status"] == "False"
    assert "InvalidSpec" in running.reasons("invalid")
    time.sleep(1.0)
    assert running.calls("e2e-invalid") == []
    assert not [c for c in running.emulator.calls if c.operation.startswith(MUTATING)]
    # Nothing was created for it, so nothing holds its deletion: the finalizer goes on with the first
    # thing there is to clean up.
    assert FINALIZER not in running.get("invalid")["metadata"].get("finalizers", [])

    # Corrected, it is acted on at once, and the stale error is cleared.
    running.patch("invalid", {"spec": {"mode": "Serial"}})
    obj = running.wait_ready("invalid")
    assert condition(obj, "Degraded")["status"] == "False"
    assert not obj["status"].get("failureReason")
    assert FINALIZER in obj["metadata"].get("finalizers", [])
    assert running.sm.describe_endpoint(EndpointName="e2e-invalid")["EndpointStatus"] == "InService"


def test_failed_creation_is_degraded_then_a_corrected_spec_recreates(running: Harness) -> None:
    running.emulator.fail_endpoint_creation("e2e-failed", reason="Out of capacity for ml.m5.large", count=1)
    running.create(manifest("failed"))

    def degraded() -> dict[str, Any] | None:
        obj = running.find("failed")
        return obj if obj and condition(obj, "Degraded").get("status") == "True" else None

    obj = wait("Degraded after the failed creation", degraded, 10, lambda: repr(running.find("failed")))
    assert "Out of capacity" in condition(obj, "Degraded")["message"]
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["status"]["endpointStatus"] == "Failed"
    assert "Out of capacity" in obj["status"]["failureReason"]
    warnings = [e for e in running.events("failed") if e.get("type") == "Warning"]
    assert [e["reason"] for e in warnings] == [condition(obj, "Degraded")["reason"]], warnings

    running.patch("failed", {"spec": {"instanceType": "ml.c5.large"}})
    obj = running.wait_ready("failed")
    assert condition(obj, "Degraded")["status"] == "False"
    described = running.sm.describe_endpoint(EndpointName="e2e-failed")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == obj["status"]["endpointConfigName"]
    ops = [op for op, _, _ in running.mutations("e2e-failed")]
    assert ops.count("DeleteEndpoint") == 1 and ops.count("CreateEndpoint") == 2, ops


def test_steady_state_writes_nothing(running: Harness) -> None:
    running.create(manifest("steady"))
    running.wait_ready("steady")
    time.sleep(0.5)  # let a last write after Ready (if any) land before measuring
    version = running.get("steady")["metadata"]["resourceVersion"]
    events = len(running.events("steady"))
    calls = len(running.emulator.calls)
    time.sleep(3 * TIMING.steady)
    assert len(running.emulator.calls) > calls, "the drift check should have looked at SageMaker"
    obj = running.get("steady")
    assert obj["metadata"]["resourceVersion"] == version, obj
    assert len(running.events("steady")) == events
    assert running.mutations("e2e-steady") == running.mutations("e2e-steady")[:3]


def test_the_status_names_the_endpoint_before_anything_is_created(running: Harness) -> None:
    """A new object is not listed in SageMaker: that is safe only because nothing is created for it before
    its status names the endpoint. The first status write is refused once: no create may come before the
    write that is accepted."""
    refused: list[float] = []

    def first_status_write(data: Any) -> bool:
        refused.append(time.time())
        return True

    running.kube.inject(
        "PATCH", 500, plural="multicontainerendpoints", name="early", subresource="status",
        match=first_status_write,
    )  # fmt: skip
    running.create(manifest("early"))
    running.wait_ready("early")
    assert len(refused) == 1
    creates = running.calls("e2e-early", "CreateModel")
    assert len(creates) == 1 and creates[0].time > refused[0]
    assert not running.calls("e2e-early", "ListModels")
