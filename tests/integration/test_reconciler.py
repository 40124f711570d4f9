"""The reconciler core and the boto3 adapter against the SageMaker emulator, over HTTP.

Each test drives ``observe -> reconcile -> execute`` as the handlers do (``reconciler_kit.Harness``) and
then asserts SageMaker's real state with plain boto3 calls and the emulator's call log.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from typing import Any

import pytest
from reconciler_kit import (
    ENDPOINT,
    IDENTITY,
    TIMING,
    Crash,
    Harness,
    Result,
    desired,
    is_mutating,
    make_harness,
    next_generation,
    spec,
    with_scorer,
)

from mce_operator import core, naming
from mce_operator.api import LastDeployment
from mce_operator.emulator import Emulator

READY = {"Ready": "True/InService", "Progressing": "False/Idle", "Degraded": "False/AsExpected"}


def generation(number: int, **changes: Any) -> core.Identity:
    return dataclasses.replace(IDENTITY, generation=number, **changes)


def wait_for(harness: Harness, status: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while harness.endpoint()["EndpointStatus"] != status:
        assert time.monotonic() < deadline, f"endpoint never became {status}"
        time.sleep(0.02)


def outcomes(emu: Emulator, operation: str, name: str | None = None) -> list[str]:
    return [call.outcome for call in emu.calls_to(operation, name)]


def assert_only(harness: Harness, target: core.Desired) -> None:
    """SageMaker holds exactly the target's model, config and endpoint: no duplicate, no orphan."""
    assert harness.models() == {target.model_name}
    assert harness.configs() == {target.config_name}
    assert harness.endpoints() == {ENDPOINT}
    endpoint = harness.endpoint()
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", target.config_name)


def assert_superseded_kept_until_switch(result: Result, old: core.Desired, new: core.Desired) -> None:
    """In every round before the endpoint served the new config, the old model and config still existed."""
    switched = False
    for snapshot in result.history:
        endpoint = snapshot["endpoints"][ENDPOINT]
        switched = switched or (endpoint["status"], endpoint["endpointConfigName"]) == (
            "InService",
            new.config_name,
        )
        if not switched:
            assert old.model_name in snapshot["models"]
            assert old.config_name in snapshot["endpointConfigs"]
    assert switched


# --- The whole life of one endpoint ----------------------------------------------------------------


def test_create_then_mode_change_then_tag_change_then_delete(harness: Harness, emu: Emulator) -> None:
    client = harness.client

    # Create (Direct).
    direct = spec()
    first = desired(direct)
    created = harness.converge(direct)
    assert created.conditions == READY
    assert created.memory.last_deployment == LastDeployment(endpoint_config_name=first.config_name)
    assert_only(harness, first)
    model = client.describe_model(ModelName=first.model_name)
    assert model["InferenceExecutionConfig"]["Mode"] == "Direct"
    assert [c["ContainerHostname"] for c in model["Containers"]] == ["features", "scorer"]
    config = client.describe_endpoint_config(EndpointConfigName=first.config_name)
    assert config["ProductionVariants"][0]["ModelName"] == first.model_name
    endpoint = harness.endpoint()
    for arn in (endpoint["EndpointArn"], model["ModelArn"], config["EndpointConfigArn"]):
        assert harness.tags(arn) == {"team": "risk", **naming.ownership_tags("ml", "fraud", "uid-1")}
    assert [op for op, _ in harness.mutating_calls()] == [
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
    ]

    # Mode change Direct -> Serial: new model, new config, UpdateEndpoint, then the old ones go.
    emu.clear_calls()
    serial = spec(mode="Serial")
    second = desired(serial)
    updated = harness.converge(serial, generation(2), created.memory)
    assert updated.conditions == READY
    assert_only(harness, second)
    assert client.describe_model(ModelName=second.model_name)["InferenceExecutionConfig"]["Mode"] == "Serial"
    assert harness.mutating_calls() == [
        ("CreateModel", second.model_name),
        ("CreateEndpointConfig", second.config_name),
        ("UpdateEndpoint", ENDPOINT),
        ("DeleteEndpointConfig", first.config_name),
        ("DeleteModel", first.model_name),
    ]
    assert_superseded_kept_until_switch(updated, first, second)
    # Once the endpoint serves the new config, that is what is remembered.
    assert updated.memory.last_deployment == LastDeployment(endpoint_config_name=second.config_name)

    # Tag change: tags edited in place on all three, nothing recreated, no endpoint update.
    emu.clear_calls()
    retagged = spec(mode="Serial", tags={"owner": "fraud-team"})
    assert desired(retagged).config_name == second.config_name
    harness.converge(retagged, generation(3), updated.memory)
    assert_only(harness, second)
    assert Counter(op for op, _ in harness.mutating_calls()) == {"AddTags": 3, "DeleteTags": 3}
    want = {"owner": "fraud-team", **naming.ownership_tags("ml", "fraud", "uid-1")}
    for arn in (
        harness.endpoint()["EndpointArn"],
        client.describe_model(ModelName=second.model_name)["ModelArn"],
        client.describe_endpoint_config(EndpointConfigName=second.config_name)["EndpointConfigArn"],
    ):
        assert harness.tags(arn) == want

    # Delete: the endpoint first, its config and model once it is gone; nothing is left.
    emu.clear_calls()
    finished = harness.finalize(retagged, generation(3))
    assert finished.decision.finished
    assert harness.mutating_calls() == [
        ("DeleteEndpoint", ENDPOINT),
        ("DeleteEndpointConfig", second.config_name),
        ("DeleteModel", second.model_name),
    ]
    assert (harness.models(), harness.configs(), harness.endpoints()) == (set(), set(), set())


# --- Failures SageMaker reports asynchronously -----------------------------------------------------


def test_failed_create_then_corrected_spec_recreates_the_endpoint(harness: Harness, emu: Emulator) -> None:
    broken = with_scorer("scorer:broken")
    bad = desired(broken)
    reason = "The primary container for production variant AllTraffic did not pass the ping health check."
    emu.fail_endpoint_creation(ENDPOINT, reason=reason, config=bad.config_name)

    failed = harness.converge(broken)
    assert failed.conditions == {
        "Ready": "False/EndpointFailed",
        "Progressing": "False/Idle",
        "Degraded": "True/EndpointFailed",
    }
    assert failed.decision.report.failure_reason == reason
    assert harness.endpoint()["EndpointStatus"] == "Failed"

    # The timer looks again: the same spec would fail the same way, so nothing is called.
    emu.clear_calls()
    harness.converge(broken, memory=failed.memory)
    assert harness.mutating_calls() == []

    # A corrected spec: the Failed endpoint is deleted, created again, and the failed model/config go.
    fixed = spec()
    good = desired(fixed)
    recovered = harness.converge(fixed, generation(2), next_generation(failed.memory))
    assert recovered.conditions == READY
    assert recovered.decision.report.failure_reason == ""
    assert_only(harness, good)
    assert harness.mutating_calls() == [
        ("DeleteEndpoint", ENDPOINT),
        ("CreateModel", good.model_name),
        ("CreateEndpointConfig", good.config_name),
        ("CreateEndpoint", ENDPOINT),
        ("DeleteEndpointConfig", bad.config_name),
        ("DeleteModel", bad.model_name),
    ]


def test_failed_update_is_reported_not_retried_then_corrected_spec(harness: Harness, emu: Emulator) -> None:
    served = spec()
    old = desired(served)
    created = harness.converge(served)

    broken = with_scorer("scorer:broken")
    bad = desired(broken)
    reason = "The container scorer failed to start."
    emu.fail_endpoint_update(ENDPOINT, reason=reason, config=bad.config_name)
    emu.clear_calls()
    failed = harness.converge(broken, generation(2), created.memory)
    assert failed.conditions == {
        "Ready": "False/UpdateRolledBack",
        "Progressing": "False/Idle",
        "Degraded": "True/UpdateRolledBack",
    }
    assert failed.decision.report.failure_reason == reason
    assert reason in failed.decision.report.degraded.message
    assert harness.endpoint()["EndpointConfigName"] == old.config_name

    # Later looks (the timer), and SageMaker forgetting the FailureReason: still no second update.
    harness.converge(broken, generation(2), failed.memory)
    emu.set_endpoint_status(ENDPOINT, "InService", failure_reason="")
    quiet = harness.converge(broken, generation(2), failed.memory)
    assert quiet.conditions["Degraded"] == "True/UpdateRolledBack"
    assert quiet.decision.report.failure_reason == "SageMaker gave no reason"
    assert outcomes(emu, "UpdateEndpoint") == ["ok"]
    # The old model and config were never deleted: the endpoint still serves them.
    assert {old.model_name, bad.model_name} == harness.models()
    assert {old.config_name, bad.config_name} == harness.configs()

    # A corrected spec is tried at once.
    fixed = with_scorer("scorer:2.1")
    good = desired(fixed)
    recovered = harness.converge(fixed, generation(3), next_generation(quiet.memory))
    assert recovered.conditions == READY
    assert_only(harness, good)
    assert outcomes(emu, "UpdateEndpoint") == ["ok", "ok"]


# --- Out-of-band changes ---------------------------------------------------------------------------


def test_endpoint_deleted_out_of_band_is_recreated(harness: Harness, emu: Emulator) -> None:
    raw = spec()
    target = desired(raw)
    created = harness.converge(raw)
    emu.delete_endpoint_now(ENDPOINT)
    emu.clear_calls()
    restored = harness.converge(raw, memory=created.memory)
    assert restored.conditions == READY
    assert harness.mutating_calls() == [("CreateEndpoint", ENDPOINT)]
    assert_only(harness, target)


def test_endpoint_switched_out_of_band_is_switched_back(harness: Harness, emu: Emulator) -> None:
    raw = spec()
    target = desired(raw)
    created = harness.converge(raw)
    client = harness.client
    client.create_endpoint_config(
        EndpointConfigName="hand-made",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": target.model_name,
                "InstanceType": "ml.m5.xlarge",
                "InitialInstanceCount": 1,
            }
        ],
    )
    client.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="hand-made")
    wait_for(harness, "InService")
    emu.clear_calls()
    restored = harness.converge(raw, memory=created.memory)
    assert restored.conditions == READY
    assert harness.mutating_calls() == [("UpdateEndpoint", ENDPOINT)]
    assert harness.endpoint()["EndpointConfigName"] == target.config_name
    assert "hand-made" in harness.configs()  # not ours: left alone


def test_model_and_config_deleted_out_of_band_are_made_again(harness: Harness, emu: Emulator) -> None:
    raw = spec()
    target = desired(raw)
    created = harness.converge(raw)
    harness.client.delete_endpoint_config(EndpointConfigName=target.config_name)
    harness.client.delete_model(ModelName=target.model_name)
    emu.clear_calls()
    # Within the drift interval a steady look only describes the endpoint, which shows nothing amiss.
    harness.converge(raw, memory=created.memory)
    assert [call.operation for call in emu.calls] == ["DescribeEndpoint"]
    # The first look after it reads every model, config and tag: the deletion is found and repaired.
    harness.pass_time(TIMING.drift)
    harness.converge(raw, memory=created.memory)
    assert harness.mutating_calls() == [
        ("CreateModel", target.model_name),
        ("CreateEndpointConfig", target.config_name),
    ]
    assert_only(harness, target)


def test_drift_is_found_by_a_new_process_at_once(harness: Harness, emu: Emulator) -> None:
    raw = spec()
    target = desired(raw)
    created = harness.converge(raw)
    harness.client.delete_model(ModelName=target.model_name)
    harness.restart()
    emu.clear_calls()
    harness.converge(raw, memory=created.memory)
    assert harness.mutating_calls() == [("CreateModel", target.model_name)]
    assert_only(harness, target)


def test_steady_looks_describe_the_endpoint_only_until_the_drift_interval(
    harness: Harness, emu: Emulator
) -> None:
    raw = spec()
    created = harness.converge(raw)
    emu.clear_calls()
    for _ in range(3):
        harness.converge(raw, memory=created.memory)
    assert [call.operation for call in emu.calls] == ["DescribeEndpoint"] * 3
    emu.clear_calls()
    harness.pass_time(TIMING.drift)
    harness.converge(raw, memory=created.memory)
    assert Counter(call.operation for call in emu.calls) == {
        "DescribeEndpoint": 1,
        "ListModels": 1,
        "ListEndpointConfigs": 1,
        "ListTags": 3,
    }
    assert harness.mutating_calls() == []


def test_a_tag_changed_out_of_band_is_read_before_the_resource_is_changed(
    harness: Harness, emu: Emulator
) -> None:
    """What a steady look remembers is not trusted for a change: the owner's tags are read first."""
    raw = spec()
    created = harness.converge(raw)
    arn = harness.endpoint()["EndpointArn"]
    harness.client.add_tags(ResourceArn=arn, Tags=[{"Key": naming.TAG_UID, "Value": "someone-else"}])
    emu.clear_calls()
    refused = harness.converge(with_scorer("scorer:2.1"), generation(2), created.memory)
    assert refused.conditions["Degraded"] == "True/NotOwned"
    assert harness.mutating_calls() == []


# --- Ownership -------------------------------------------------------------------------------------


def test_a_foreign_endpoint_is_never_updated_nor_deleted(harness: Harness, emu: Emulator) -> None:
    client = harness.client
    raw = spec()
    target = desired(raw)
    client.create_model(
        ModelName="legacy",
        ExecutionRoleArn=raw["executionRoleArn"],
        Containers=[{"Image": c["image"]} for c in raw["containers"]],
    )
    client.create_endpoint_config(
        EndpointConfigName="legacy",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "legacy",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    client.create_endpoint(
        EndpointName=ENDPOINT, EndpointConfigName="legacy", Tags=[{"Key": "team", "Value": "x"}]
    )
    wait_for(harness, "InService")
    emu.clear_calls()

    refused = harness.converge(raw)
    assert refused.conditions["Degraded"] == "True/NotOwned"
    assert harness.mutating_calls() == []

    finished = harness.finalize(raw)
    assert finished.decision.finished
    assert harness.mutating_calls() == []
    assert harness.endpoint()["EndpointConfigName"] == "legacy"
    assert target.model_name not in harness.models()


def test_a_new_object_whose_model_name_is_taken_reads_everything_and_refuses(
    harness: Harness, emu: Emulator
) -> None:
    """A new object is not listed: its first create finds the name taken, and that look is made again
    reading everything, which shows whose the model is."""
    raw = spec()
    target = desired(raw)
    request = {k: v for k, v in target.model_request.items()}
    harness.client.create_model(**request, Tags=[{"Key": "team", "Value": "someone-else"}])
    emu.clear_calls()
    refused = harness.converge(raw)
    assert refused.conditions["Degraded"] == "True/NotOwned"
    assert [(c.operation, c.outcome) for c in emu.calls if is_mutating(c.operation)] == [
        ("CreateModel", "ValidationException")
    ]
    assert [c.operation for c in emu.calls][:2] == ["DescribeEndpoint", "CreateModel"]
    assert "ListModels" in [c.operation for c in emu.calls]
    assert harness.configs() == set() and harness.endpoints() == set()


def test_retain_then_adoption_by_a_recreated_object(harness: Harness, emu: Emulator) -> None:
    raw = spec(deletionPolicy="Retain")
    target = desired(raw)
    harness.converge(raw)
    emu.clear_calls()
    retained = harness.finalize(raw)
    assert retained.decision.finished
    assert any("Retain" in note for note in retained.decision.notes)
    assert harness.mutating_calls() == []
    assert_only(harness, target)

    # The object is created again (a GitOps re-sync): same namespace/name, new uid. Without opting in
    # it leaves its predecessor's endpoint alone...
    stranger = harness.converge(raw, generation(1, uid="uid-2"))
    assert stranger.conditions["Degraded"].startswith("True/NotOwned")
    assert harness.mutating_calls() == []
    # ...with the annotation sagemaker.mce.dev/adopt: "true" it takes it over.
    successor = generation(1, uid="uid-2", adopt=True)
    adopted = harness.converge(raw, successor)
    assert adopted.conditions == READY
    assert Counter(op for op, _ in harness.mutating_calls()) == {"AddTags": 3}
    assert harness.tags(harness.endpoint()["EndpointArn"])[naming.TAG_UID] == "uid-2"
    assert_only(harness, target)


# --- Terminal errors -------------------------------------------------------------------------------


def test_a_rejected_spec_is_not_retried_until_it_changes(harness: Harness, emu: Emulator) -> None:
    # Passes the CRD's pattern, fails SageMaker's instance-type enum: a ValidationException on create.
    rejected = spec(instanceType="ml.bogus.large")
    failed = harness.converge(rejected)
    assert failed.conditions["Degraded"] == "True/SageMakerRejected"
    assert failed.memory.terminal_reason == core.REASON_REJECTED
    assert "CreateEndpointConfig" in (failed.memory.terminal_failure or "")
    again = harness.converge(rejected, memory=failed.memory)
    assert again.decision.actions == ()
    assert outcomes(emu, "CreateEndpointConfig") == ["ValidationException"]

    fixed = spec()
    recovered = harness.converge(fixed, generation(2), next_generation(again.memory))
    assert recovered.conditions == READY
    assert_only(harness, desired(fixed))


# --- Crashes after each single SageMaker call ------------------------------------------------------

CREATE_CALLS = ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]
UPDATE_CALLS = [
    "CreateModel",
    "CreateEndpointConfig",
    "UpdateEndpoint",
    "DeleteEndpointConfig",
    "DeleteModel",
]


def _crash_then_converge(
    harness: Harness, raw: dict[str, Any], identity: core.Identity, memory: core.Memory, k: int, keep: bool
) -> Result:
    harness.executed = 0
    with pytest.raises(Crash) as crash:
        harness.converge(raw, identity, memory, crash_after=k)
    # The status holds what was written before the crashed reconcile, or nothing if it was lost.
    return harness.converge(raw, identity, crash.value.memory if keep else core.Memory())


def _assert_each_call_once(emu: Emulator, operations: list[str]) -> None:
    for operation, count in Counter(operations).items():
        assert outcomes(emu, operation) == ["ok"] * count, operation


@pytest.mark.parametrize("keep", [True, False], ids=["status-kept", "status-lost"])
@pytest.mark.parametrize("k", range(1, len(CREATE_CALLS) + 1), ids=[f"after-{op}" for op in CREATE_CALLS])
def test_crash_during_create(harness: Harness, emu: Emulator, k: int, keep: bool) -> None:
    raw = spec()
    result = _crash_then_converge(harness, raw, IDENTITY, core.Memory(), k, keep)
    assert result.conditions == READY
    assert_only(harness, desired(raw))
    _assert_each_call_once(emu, CREATE_CALLS)


@pytest.mark.parametrize("keep", [True, False], ids=["status-kept", "status-lost"])
@pytest.mark.parametrize("k", range(1, len(UPDATE_CALLS) + 1), ids=[f"after-{op}" for op in UPDATE_CALLS])
def test_crash_during_update(harness: Harness, emu: Emulator, k: int, keep: bool) -> None:
    created = harness.converge(spec())
    emu.clear_calls()
    raw = spec(mode="Serial")
    result = _crash_then_converge(harness, raw, generation(2), created.memory, k, keep)
    assert result.conditions == READY
    assert_only(harness, desired(raw))
    _assert_each_call_once(emu, UPDATE_CALLS)


# --- Throttling and the client-side rate limit -----------------------------------------------------


def test_throttling_and_server_errors_still_converge(emu: Emulator) -> None:
    # Two attempts per call only, so some calls fail through botocore's standard retries and the
    # reconcile loop itself must look again.
    harness = make_harness(emu, max_attempts=2)
    emu.throttle(count=3, operations=["CreateEndpoint"])
    emu.throttle(count=2, operations=["ListModels"])
    emu.server_error(503, count=2, operations=["DescribeEndpoint"])
    raw = spec()
    result = harness.converge(raw)
    assert result.conditions == READY
    assert_only(harness, desired(raw))
    assert outcomes(emu, "CreateEndpoint") == ["ThrottlingException"] * 3 + ["ok"]
    assert outcomes(emu, "ListModels").count("ThrottlingException") == 2


def test_rate_limit_spaces_calls(emu: Emulator) -> None:
    harness = make_harness(emu, calls_per_second=40, burst=1)
    created = harness.converge(spec())
    harness.converge(with_scorer("scorer:2.1"), generation(2), created.memory)
    harness.finalize(with_scorer("scorer:2.1"), generation(2))
    times = [call.time for call in emu.calls]
    assert len(times) > 10
    assert (len(times) - 1) / (times[-1] - times[0]) <= 40 * 1.1


def test_status_lost_after_an_update_that_then_fails_retries_it_once_only(
    harness: Harness, emu: Emulator
) -> None:
    # The one fact SageMaker cannot tell is "this config was tried"; if the status that remembers it is
    # lost right after UpdateEndpoint, the update is sent once more, then remembered and not repeated.
    created = harness.converge(spec())
    broken = with_scorer("scorer:broken")
    emu.fail_endpoint_update(ENDPOINT, reason="Failed.", config=desired(broken).config_name)
    harness.executed = 0
    with pytest.raises(Crash):
        harness.converge(broken, generation(2), created.memory, crash_after=3)  # after UpdateEndpoint
    failed = harness.converge(broken, generation(2), core.Memory())
    assert failed.conditions["Degraded"] == "True/UpdateRolledBack"
    harness.converge(broken, generation(2), failed.memory)
    assert outcomes(emu, "UpdateEndpoint") == ["ok", "ok"]
