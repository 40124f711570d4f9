"""End to end: autoscaling that survives every change, and deployment guardrails — the real operator (kopf)
against the in-memory Kubernetes API and the emulator (SageMaker and Application Auto Scaling on one port),
as Kubernetes (status, Events) and the services (call log, targets) show them."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_harness import IMAGE, NAMESPACE, Harness, condition, manifest, wait

from mce_operator import core
from mce_operator.cli_tools import render

pytestmark = pytest.mark.e2e

SCALING = {"minCapacity": 1, "maxCapacity": 4, "targetTracking": {"invocationsPerInstance": 70}}
ALARM = "e2e-5xx"
CANARY = {
    "blueGreen": {
        "trafficRouting": {
            "type": "Canary",
            "waitIntervalInSeconds": 30,
            "canarySize": {"type": "CapacityPercent", "value": 50},
        },
        "terminationWaitInSeconds": 10,
    },
    "autoRollbackAlarms": [ALARM],
}
AUTOSCALING_CALLS = ("RegisterScalableTarget", "DeregisterScalableTarget", "PutScalingPolicy")


def resource(name: str) -> str:
    return core.resource_id(f"e2e-{name}", "AllTraffic")


def targets(h: Harness) -> dict[str, tuple[int, int]]:
    client = h.scaling
    return {
        t["ResourceId"]: (t["MinCapacity"], t["MaxCapacity"])
        for t in client.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    }


def scaling_calls(h: Harness, name: str, since: int = 0) -> list[str]:
    return [
        c.operation
        for c in h.emulator.calls[since:]
        if c.operation in AUTOSCALING_CALLS and c.name == resource(name)
    ]


def status_shows(h: Harness, name: str, **fields: Any) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = h.find(name)
        status = (obj or {}).get("status") or {}
        return obj if obj and all(status.get(key) == value for key, value in fields.items()) else None

    result: dict[str, Any] = wait(f"{name}'s status to show {fields}", check, 20, h._show(name))
    return result


def image(name: str) -> list[dict[str, str]]:
    return [
        {"containerHostname": "features", "image": IMAGE.format("features")},
        {"containerHostname": "scorer", "image": IMAGE.format(name)},
    ]


def test_autoscaling_added_kept_through_changes_and_removed(running: Harness) -> None:
    name = "scaled"
    running.create(manifest(name))
    running.wait_ready(name)
    assert targets(running) == {}

    # Added: registered with its policy; an Event for each call; the status shows the target.
    running.patch(name, {"spec": {"autoscaling": SCALING}})
    obj = status_shows(
        running, name, autoscaling={"minCapacity": 1, "maxCapacity": 4, "policies": [core.POLICY_NAME]}
    )
    assert targets(running) == {resource(name): (1, 4)}
    reasons = running.reasons(name)
    assert reasons.count("RegisterScalableTarget") == 1 and reasons.count("PutScalingPolicy") == 1, reasons
    assert condition(obj, "Ready")["status"] == "True"
    # kubectl mce render shows the very requests the operator sent.
    rendered = render.render(manifest(name, autoscaling=SCALING), NAMESPACE)["requests"]
    for operation in ("RegisterScalableTarget", "PutScalingPolicy"):
        (call,) = [c for c in running.emulator.calls if c.operation == operation]
        assert call.request == rendered[operation]

    # Autoscaling moves the count: the status follows it live, and the operator does not fight it.
    running.emulator.scale_variant(f"e2e-{name}", "AllTraffic", 3)
    status_shows(running, name, desiredInstanceCount=3, currentInstanceCount=3)
    updates = len(running.calls(f"e2e-{name}", "UpdateEndpoint"))

    # A model change: one UpdateEndpoint keeping the count; the target is never deregistered.
    before = len(running.emulator.calls)
    config = running.get(name)["status"]["endpointConfigName"]
    running.patch(name, {"spec": {"containers": image("scorer-v2")}})
    obj = running.wait_ready(name, config_not=config)
    assert len(running.calls(f"e2e-{name}", "UpdateEndpoint")) == updates + 1
    (update,) = running.calls(f"e2e-{name}", "UpdateEndpoint")[-1:]
    assert update.request is not None and update.request["RetainAllVariantProperties"] is True
    assert scaling_calls(running, name, before) == []
    status_shows(running, name, desiredInstanceCount=3, currentInstanceCount=3)

    # An instance-type change: deregister -> update -> InService -> register again.
    before = len(running.emulator.calls)
    config = obj["status"]["endpointConfigName"]
    running.patch(name, {"spec": {"instanceType": "ml.m5.xlarge"}})
    running.wait_ready(name, config_not=config)
    ops = [
        c.operation
        for c in running.emulator.calls[before:]
        if c.operation in (*AUTOSCALING_CALLS, "UpdateEndpoint") and c.outcome == "ok"
    ]
    assert ops == ["DeregisterScalableTarget", "UpdateEndpoint", "RegisterScalableTarget", "PutScalingPolicy"]
    assert [c.outcome for c in running.calls(f"e2e-{name}", "UpdateEndpoint")][-1] == "ok"
    status_shows(
        running,
        name,
        desiredInstanceCount=3,
        autoscaling={"minCapacity": 1, "maxCapacity": 4, "policies": [core.POLICY_NAME]},
    )
    assert "DeregisterScalableTarget" in running.reasons(name)

    # Changed, then removed.
    running.patch(name, {"spec": {"autoscaling": {**SCALING, "maxCapacity": 6}}})
    status_shows(
        running, name, autoscaling={"minCapacity": 1, "maxCapacity": 6, "policies": [core.POLICY_NAME]}
    )
    assert targets(running) == {resource(name): (1, 6)}
    before = len(running.emulator.calls)
    running.patch(name, {"spec": {"autoscaling": None}})
    obj = status_shows(running, name, autoscaling=None)
    wait("the target to be deregistered", lambda: targets(running) == {})
    assert scaling_calls(running, name, before) == ["DeregisterScalableTarget"]
    assert not any(c.operation == "UpdateEndpoint" for c in running.emulator.calls[before:])


def test_delete_of_an_autoscaled_endpoint_deregisters_first(running: Harness) -> None:
    name = "scaled-delete"
    running.create(manifest(name, autoscaling=SCALING))
    status_shows(
        running, name, autoscaling={"minCapacity": 1, "maxCapacity": 4, "policies": [core.POLICY_NAME]}
    )
    running.delete(name)
    wait("the object to be gone", lambda: running.find(name) is None)
    ops = [
        c.operation
        for c in running.emulator.calls
        if c.operation in ("DeregisterScalableTarget", "DeleteEndpoint")
    ]
    assert ops == ["DeregisterScalableTarget", "DeleteEndpoint"]
    assert targets(running) == {}
    assert running.left_in_sagemaker(f"e2e-{name}") == {"endpoints": [], "configs": [], "models": []}


def test_a_canary_update_completes(running: Harness) -> None:
    running.emulator.set_delay(deployment_time_scale=0.01)
    name = "canary"
    running.create(manifest(name, initialInstanceCount=2, deployment=CANARY))
    config = running.wait_ready(name)["status"]["endpointConfigName"]
    running.patch(name, {"spec": {"containers": image("scorer-v2")}})
    running.wait_ready(name, config_not=config)
    (update,) = running.calls(f"e2e-{name}", "UpdateEndpoint")
    assert update.outcome == "ok" and update.request is not None
    routing = update.request["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 30,
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
    }
    assert update.request["DeploymentConfig"]["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": ALARM}]
    }


def test_a_canary_rolled_back_by_an_alarm_then_a_corrected_spec(running: Harness) -> None:
    running.emulator.set_delay(deployment_time_scale=0.01)
    name = "rollback"
    running.create(manifest(name, initialInstanceCount=2, deployment=CANARY))
    served = running.wait_ready(name)["status"]["endpointConfigName"]
    alarm = running.emulator.alarm(ALARM)
    running.patch(name, {"spec": {"containers": image("scorer-broken")}})

    def rolled_back() -> dict[str, Any] | None:
        obj = running.find(name)
        cond = condition(obj or {}, "Degraded")
        current = cond.get("observedGeneration") == (obj or {}).get("metadata", {}).get("generation")
        return obj if cond.get("reason") == "UpdateRolledBack" and current else None

    obj = wait("the update to be reported rolled back", rolled_back, 20, running._show(name))
    assert f"CloudWatch alarm {ALARM} went into the ALARM state" in obj["status"]["failureReason"]
    assert condition(obj, "Ready")["status"] == "False"
    assert running.sm.describe_endpoint(EndpointName=f"e2e-{name}")["EndpointConfigName"] == served
    assert "UpdateRolledBack" in running.reasons(name)
    # Not retried: two more looks (the steady interval is 1.5 s) and still one UpdateEndpoint.
    looks = len(running.calls(f"e2e-{name}", "DescribeEndpoint"))
    wait("two more looks", lambda: len(running.calls(f"e2e-{name}", "DescribeEndpoint")) >= looks + 2)
    assert len(running.calls(f"e2e-{name}", "UpdateEndpoint")) == 1
    assert condition(running.get(name), "Degraded")["reason"] == "UpdateRolledBack"

    running.emulator.remove_fault(alarm)
    running.patch(name, {"spec": {"containers": image("scorer-v3")}})
    running.wait_ready(name, config_not=served)
    assert [c.outcome for c in running.calls(f"e2e-{name}", "UpdateEndpoint")] == ["ok", "ok"]
