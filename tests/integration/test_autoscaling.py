"""Autoscaling that survives every change: the core and both adapters against the emulator (SageMaker and
Application Auto Scaling on one port), as the handlers run them."""

from __future__ import annotations

from typing import Any

import pytest
from reconciler_kit import ENDPOINT, IDENTITY, Crash, Harness, desired, spec, with_scorer

from mce_operator import core
from mce_operator.emulator import Emulator

RESOURCE = f"endpoint/{ENDPOINT}/variant/AllTraffic"
POLICY = core.POLICY_NAME
SCALING = {"minCapacity": 1, "maxCapacity": 4, "targetTracking": {"invocationsPerInstance": 70}}
AUTOSCALING_CALLS = (
    "RegisterScalableTarget",
    "DeregisterScalableTarget",
    "PutScalingPolicy",
    "DeleteScalingPolicy",
)


def scaled(**overrides: Any) -> dict[str, Any]:
    return spec(**{"autoscaling": SCALING, **overrides})


def generation(number: int) -> core.Identity:
    return core.Identity(IDENTITY.namespace, IDENTITY.name, IDENTITY.uid, number)


def calls_since(emu: Emulator, start: int) -> list[tuple[str, str | None]]:
    """The mutating calls made after the ``start``-th logged call."""
    return [
        (c.operation, c.name)
        for c in emu.calls[start:]
        if c.operation.startswith(("Create", "Update", "Delete", "Add", "Register", "Deregister", "Put"))
    ]


def scaled_out(harness: Harness, emu: Emulator, count: int) -> core.Memory:
    """Autoscaling moves the variant to ``count`` instances (as its policy would); back to rest."""
    emu.scale_variant(ENDPOINT, "AllTraffic", count)
    return harness.converge(scaled()).memory


def test_autoscaling_added_changed_removed(harness: Harness, emu: Emulator) -> None:
    created = harness.converge(spec())
    assert harness.targets() == {}

    start = len(emu.calls)
    added = harness.converge(scaled(), memory=created.memory)
    assert calls_since(emu, start) == [("RegisterScalableTarget", RESOURCE), ("PutScalingPolicy", RESOURCE)]
    assert harness.targets() == {
        RESOURCE: {
            "min": 1,
            "max": 4,
            "policies": {
                POLICY: {
                    "TargetValue": 70.0,
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                    "DisableScaleIn": False,
                }
            },
        }
    }
    report = added.decision.report
    assert report.ready.status and report.autoscaling is not None
    assert (report.autoscaling.min_capacity, report.autoscaling.max_capacity) == (1, 4)

    # Changed: the same target updated in place, the policy replaced; no endpoint update.
    wider = scaled(
        autoscaling={
            "minCapacity": 1,
            "maxCapacity": 8,
            "targetTracking": {"invocationsPerInstance": 100, "scaleOutCooldownInSeconds": 60},
        }
    )
    start = len(emu.calls)
    changed = harness.converge(wider, memory=added.memory)
    assert calls_since(emu, start) == [("RegisterScalableTarget", RESOURCE), ("PutScalingPolicy", RESOURCE)]
    target = harness.targets()[RESOURCE]
    assert (target["min"], target["max"]) == (1, 8)
    assert target["policies"][POLICY]["TargetValue"] == 100.0
    assert target["policies"][POLICY]["ScaleOutCooldown"] == 60

    # Removed: deregistered (its policy goes with it); the endpoint is not updated.
    start = len(emu.calls)
    removed = harness.converge(spec(), memory=changed.memory)
    assert calls_since(emu, start) == [("DeregisterScalableTarget", RESOURCE)]
    assert harness.targets() == {}
    assert removed.decision.report.autoscaling is None
    assert removed.memory.autoscaling is None


def test_a_model_change_keeps_the_live_capacity_and_the_target(harness: Harness, emu: Emulator) -> None:
    created = harness.converge(scaled())
    memory = scaled_out(harness, emu, 3)
    assert harness.instance_counts() == (3, 3)

    start = len(emu.calls)
    result = harness.converge(with_scorer("scorer:2.1", autoscaling=SCALING), generation(2), memory)
    mutating = calls_since(emu, start)
    new = desired(with_scorer("scorer:2.1", autoscaling=SCALING))
    old = desired(scaled())
    assert mutating == [
        ("CreateModel", new.model_name),
        ("CreateEndpointConfig", new.config_name),
        ("UpdateEndpoint", ENDPOINT),
        ("DeleteEndpointConfig", old.config_name),
        ("DeleteModel", old.model_name),
    ]
    assert not any(op in AUTOSCALING_CALLS for op, _ in mutating)  # never deregistered
    (update,) = emu.calls_to("UpdateEndpoint")[-1:]
    assert update.request is not None and update.request["RetainAllVariantProperties"] is True
    assert harness.endpoint()["EndpointConfigName"] == new.config_name
    assert harness.instance_counts() == (3, 3)  # the config says 1: autoscaling's choice was kept
    assert RESOURCE in harness.targets()
    report = result.decision.report
    assert (report.desired_instance_count, report.current_instance_count) == (3, 3)
    assert created.decision.report.ready.status


def test_an_instance_type_change_goes_deregister_update_in_service_register(
    harness: Harness, emu: Emulator
) -> None:
    harness.converge(scaled())
    memory = scaled_out(harness, emu, 2)
    bigger = scaled(instanceType="ml.m5.xlarge")
    start = len(emu.calls)
    result = harness.converge(bigger, generation(2), memory)
    old, new = desired(scaled()), desired(bigger)
    assert calls_since(emu, start) == [
        ("DeregisterScalableTarget", RESOURCE),
        ("CreateEndpointConfig", new.config_name),
        ("UpdateEndpoint", ENDPOINT),
        ("DeleteEndpointConfig", old.config_name),
        ("RegisterScalableTarget", RESOURCE),
        ("PutScalingPolicy", RESOURCE),
    ]
    # SageMaker accepted the update (it refuses one that changes a registered variant's instance type).
    assert [c.outcome for c in emu.calls_to("UpdateEndpoint")] == ["ok"]
    # The target came back only once the endpoint was InService on the new config.
    registered_in = next(i for i, snap in enumerate(result.history) if snap["scalableTargets"])
    endpoint = result.history[registered_in]["endpoints"][ENDPOINT]
    assert (endpoint["status"], endpoint["endpointConfigName"]) == ("InService", new.config_name)
    assert all(not snap["scalableTargets"] for snap in result.history[:registered_in])
    assert POLICY in harness.targets()[RESOURCE]["policies"]
    assert harness.instance_counts() == (2, 2)
    assert result.decision.report.ready.status


@pytest.mark.parametrize("k", range(1, 7))
@pytest.mark.parametrize("keep", [True, False], ids=["status-kept", "status-lost"])
def test_a_crash_after_each_call_of_an_instance_type_change_converges(
    harness: Harness, emu: Emulator, k: int, keep: bool
) -> None:
    """Crash after the k-th call (deregister, config, update, cleanup, register, policy), with the status
    written before the crash or lost: the next run ends registered on the new config, never left off."""
    created = harness.converge(scaled())
    bigger = scaled(instanceType="ml.m5.xlarge")
    harness.executed = 0
    with pytest.raises(Crash) as crash:
        harness.converge(bigger, generation(2), created.memory, crash_after=k)
    memory = crash.value.memory if keep else core.Memory()
    result = harness.converge(bigger, generation(2), memory)
    new = desired(bigger)
    assert harness.endpoint()["EndpointConfigName"] == new.config_name
    assert harness.targets()[RESOURCE]["policies"].keys() == {POLICY}
    assert [c.outcome for c in emu.calls_to("UpdateEndpoint")] == ["ok"]
    assert result.decision.report.ready.status
    assert harness.configs() == {new.config_name}


def test_a_refused_update_after_the_deregistration_puts_the_target_back(
    harness: Harness, emu: Emulator
) -> None:
    created = harness.converge(scaled())
    bigger = scaled(instanceType="ml.m5.xlarge")
    emu.fail_endpoint_update(ENDPOINT, reason="Insufficient capacity for ml.m5.xlarge.", count=1)
    result = harness.converge(bigger, generation(2), created.memory)
    # SageMaker went back to the old fleet; the target is registered on it again, and not updated twice.
    assert harness.endpoint()["EndpointConfigName"] == desired(scaled()).config_name
    assert RESOURCE in harness.targets()
    assert len(emu.calls_to("UpdateEndpoint")) == 1
    report = result.decision.report
    assert (report.degraded.status, report.degraded.reason) == (True, "UpdateRolledBack")


def test_an_update_refused_after_the_deregistration_puts_the_target_back(
    harness: Harness, emu: Emulator
) -> None:
    """SageMaker refuses the UpdateEndpoint itself (here: a canary of 2 instances is more than half of a
    2-instance fleet): the spec is remembered as rejected, and the target goes back on the endpoint."""
    created = harness.converge(scaled(initialInstanceCount=2))
    canary = {
        "blueGreen": {
            "trafficRouting": {
                "type": "Canary",
                "waitIntervalInSeconds": 0,
                "canarySize": {"type": "InstanceCount", "value": 2},
            }
        }
    }
    bigger = scaled(initialInstanceCount=2, instanceType="ml.m5.xlarge", deployment=canary)
    result = harness.converge(bigger, generation(2), created.memory)
    assert [c.outcome for c in emu.calls_to("UpdateEndpoint")] == ["ValidationException"]
    assert [
        c.operation
        for c in emu.calls
        if c.operation in ("RegisterScalableTarget", "DeregisterScalableTarget")
    ] == [
        "RegisterScalableTarget",
        "DeregisterScalableTarget",
        "RegisterScalableTarget",
    ]
    assert RESOURCE in harness.targets()
    report = result.decision.report
    assert (report.degraded.status, report.degraded.reason) == (True, "SageMakerRejected")
    assert "CanarySize must be 0-50%" in report.degraded.message


def test_delete_of_an_autoscaled_endpoint_deregisters_first(harness: Harness, emu: Emulator) -> None:
    created = harness.converge(scaled())
    start = len(emu.calls)
    harness.finalize(scaled(), memory=created.memory)
    first = calls_since(emu, start)[:2]
    assert first == [("DeregisterScalableTarget", RESOURCE), ("DeleteEndpoint", ENDPOINT)]
    assert harness.targets() == {} and harness.endpoints() == set()
    assert harness.models() == set() and harness.configs() == set()


def test_autoscaling_removed_from_the_spec_of_an_object_being_deleted(
    harness: Harness, emu: Emulator
) -> None:
    """The status remembers the target: deleting an object whose spec no longer has autoscaling still
    deregisters it before the endpoint goes."""
    created = harness.converge(scaled())
    start = len(emu.calls)
    harness.finalize(spec(), memory=created.memory)
    assert calls_since(emu, start)[:2] == [
        ("DeregisterScalableTarget", RESOURCE),
        ("DeleteEndpoint", ENDPOINT),
    ]
