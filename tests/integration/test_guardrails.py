"""Deployment guardrails end to end through the core and the adapter: a canary update that completes, one
that an alarm rolls back (reported, not retried), then a corrected spec. On a manual clock: each wait of
the loop advances the emulator's time by the busy interval, so every phase is seen, whatever the load."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from reconciler_kit import ENDPOINT, IDENTITY, Harness, desired, make_harness, spec, with_scorer

from manual_clock import ManualClock
from mce_operator import core
from mce_operator.emulator import Emulator

TIMING = core.Timing(busy=10.0, steady=300.0)
ALARM = "fraud-prod-5xx"
CANARY = {
    "blueGreen": {
        "trafficRouting": {
            "type": "Canary",
            "waitIntervalInSeconds": 60,
            "canarySize": {"type": "CapacityPercent", "value": 25},
        },
        "terminationWaitInSeconds": 30,
    },
    "autoRollbackAlarms": [ALARM],
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def emu(clock: ManualClock) -> Iterator[Emulator]:
    with Emulator(clock=clock, delay=20.0, seed=1) as emulator:
        yield emulator


@pytest.fixture
def harness(emu: Emulator, clock: ManualClock) -> Harness:
    return make_harness(emu, timing=TIMING, sleep=clock.advance)


def guarded(image: str, **overrides: Any) -> dict[str, Any]:
    return with_scorer(image, initialInstanceCount=4, deployment=CANARY, **overrides)


def generation(number: int) -> core.Identity:
    return core.Identity(IDENTITY.namespace, IDENTITY.name, IDENTITY.uid, number)


def messages(decisions: list[core.Decision]) -> list[str]:
    return [decision.report.progressing.message for decision in decisions]


def test_a_canary_update_completes(harness: Harness, emu: Emulator) -> None:
    created = harness.converge(guarded("scorer:2.0"), rounds=200)
    result = harness.converge(guarded("scorer:2.1"), generation(2), created.memory, rounds=200)
    (update,) = emu.calls_to("UpdateEndpoint")
    assert update.request is not None
    assert update.request["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 60,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            },
            "TerminationWaitInSeconds": 30,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": ALARM}]},
    }
    # While SageMaker shifted traffic, the object said which phase it was in.
    seen = messages(result.decisions)
    assert any("Creating: provisioning the new fleet" in m for m in seen), seen
    assert any("canary: step 1 of 2, 25% of traffic on the new fleet" in m for m in seen), seen
    assert any("canary: step 2 of 2, 100% of traffic on the new fleet" in m for m in seen), seen
    assert any("before terminating the old fleet" in m for m in seen), seen
    assert result.decision.report.ready.status
    assert harness.endpoint()["EndpointConfigName"] == desired(guarded("scorer:2.1")).config_name
    assert harness.endpoint()["LastDeploymentConfig"] == update.request["DeploymentConfig"]


def test_a_canary_rolled_back_by_an_alarm_is_reported_once_then_a_corrected_spec_goes_through(
    harness: Harness, emu: Emulator, clock: ManualClock
) -> None:
    created = harness.converge(guarded("scorer:2.0"), rounds=200)
    served = desired(guarded("scorer:2.0")).config_name
    alarm = emu.alarm(ALARM)

    broken = harness.converge(guarded("scorer:broken"), generation(2), created.memory, rounds=200)
    report = broken.decision.report
    assert (report.degraded.status, report.degraded.reason) == (True, "UpdateRolledBack")
    assert f"CloudWatch alarm {ALARM} went into the ALARM state" in report.failure_reason
    assert harness.endpoint()["EndpointConfigName"] == served
    assert len(emu.calls_to("UpdateEndpoint")) == 1
    # Looking again later (the steady interval) does not try the same spec again.
    clock.advance(TIMING.steady)
    again = harness.converge(guarded("scorer:broken"), generation(2), broken.memory, rounds=5)
    assert again.decision.report.degraded.reason == "UpdateRolledBack"
    assert len(emu.calls_to("UpdateEndpoint")) == 1

    emu.remove_fault(alarm)
    fixed = harness.converge(guarded("scorer:2.1"), generation(3), again.memory, rounds=200)
    assert fixed.decision.report.ready.status
    assert len(emu.calls_to("UpdateEndpoint")) == 2
    assert harness.endpoint()["EndpointConfigName"] == desired(guarded("scorer:2.1")).config_name
    # The broken spec's model and config are gone, the one it ran on too.
    assert harness.configs() == {desired(guarded("scorer:2.1")).config_name}


def test_a_canary_of_an_autoscaled_endpoint_keeps_its_count(harness: Harness, emu: Emulator) -> None:
    scaling = {"minCapacity": 2, "maxCapacity": 8, "targetTracking": {"invocationsPerInstance": 70}}
    created = harness.converge(
        spec(initialInstanceCount=4, deployment=CANARY, autoscaling=scaling), rounds=200
    )
    emu.scale_variant(ENDPOINT, "AllTraffic", 6)
    result = harness.converge(
        with_scorer("scorer:2.1", initialInstanceCount=4, deployment=CANARY, autoscaling=scaling),
        generation(2),
        created.memory,
        rounds=200,
    )
    assert result.decision.report.ready.status
    assert harness.instance_counts() == (6, 6)
    (update,) = emu.calls_to("UpdateEndpoint")
    assert update.request is not None and update.request["RetainAllVariantProperties"] is True
    assert "DeploymentConfig" in update.request
