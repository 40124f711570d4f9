"""Deployment guardrails: UpdateEndpoint with a DeploymentConfig goes through its traffic-shifting steps over
time, and an alarm in ALARM during a baking period rolls it back. On a manual clock, so every phase is
observed at a known time and nothing depends on how fast the test runs."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from manual_clock import ManualClock
from mce_operator.emulator import Emulator

ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/{}:1.0"
PROVISION = 10.0  # the emulator's update delay: provisioning the new fleet


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def emu(clock: ManualClock) -> Iterator[Emulator]:
    with Emulator(clock=clock, delay=0, update_delay=PROVISION, seed=3) as emulator:
        yield emulator


def _client(emu: Emulator, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=emu.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


@pytest.fixture
def sm(emu: Emulator) -> Any:
    return _client(emu, "sagemaker")


@pytest.fixture
def runtime(emu: Emulator) -> Any:
    return _client(emu, "sagemaker-runtime")


@pytest.fixture
def fleet(sm: Any) -> Callable[..., None]:
    """``fleet(name, hostname, count=4, variant="main")``: a model with one hostname and a config of it."""

    def make(name: str, hostname: str, count: int = 4, variant: str = "main") -> None:
        sm.create_model(
            ModelName=name,
            Containers=[
                {"ContainerHostname": hostname, "Image": IMAGE.format(hostname)},
                {"ContainerHostname": f"{hostname}-post", "Image": IMAGE.format("post")},
            ],
            InferenceExecutionConfig={"Mode": "Serial"},
            ExecutionRoleArn=ROLE,
        )
        sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": variant,
                    "ModelName": name,
                    "InitialInstanceCount": count,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )

    return make


@pytest.fixture
def blue(sm: Any, fleet: Callable[..., None]) -> None:
    """Endpoint ep InService on config "blue" (4 instances); config "green" ready to deploy."""
    fleet("blue", "old")
    fleet("green", "new")
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="blue")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"


def canary(percent: int = 25, wait: int = 60, alarms: tuple[str, ...] = ("errors",)) -> dict[str, Any]:
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": percent},
                "WaitIntervalInSeconds": wait,
            },
            "TerminationWaitInSeconds": 30,
            "MaximumExecutionTimeoutInSeconds": 1800,
        }
    }
    if alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": name} for name in alarms]}
    return config


def phase(sm: Any) -> tuple[str, str, str | None, float | None]:
    """(EndpointStatus, EndpointConfigName, the new fleet's VariantStatus, its share of the weight)."""
    described = sm.describe_endpoint(EndpointName="ep")
    pending = described.get("PendingDeploymentSummary")
    if not pending:
        return described["EndpointStatus"], described["EndpointConfigName"], None, None
    (variant,) = pending["ProductionVariants"]
    (status,) = variant["VariantStatus"]
    return (
        described["EndpointStatus"],
        described["EndpointConfigName"],
        status["Status"],
        variant["CurrentWeight"],
    )


def test_a_canary_deployment_goes_through_its_steps(sm: Any, clock: ManualClock, blue: None) -> None:
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=canary())
    assert phase(sm) == ("Updating", "blue", "Creating", 0.0)
    clock.advance(PROVISION)
    assert phase(sm) == ("Updating", "blue", "Baking", 0.25)
    message = sm.describe_endpoint(EndpointName="ep")["PendingDeploymentSummary"]["ProductionVariants"][0][
        "VariantStatus"
    ][0]["StatusMessage"]
    assert message == "canary: step 1 of 2, 25% of traffic on the new fleet, baking for 60 s"
    clock.advance(60)
    assert phase(sm) == ("Updating", "blue", "Baking", 1.0)
    clock.advance(60)
    assert phase(sm) == ("Updating", "blue", "Deleting", 1.0)  # TerminationWaitInSeconds
    clock.advance(29.9)
    assert phase(sm)[0] == "Updating"
    clock.advance(0.1)
    assert phase(sm) == ("InService", "green", None, None)
    described = sm.describe_endpoint(EndpointName="ep")
    assert "FailureReason" not in described
    assert described["LastDeploymentConfig"] == canary()
    assert described["ProductionVariants"][0]["DesiredInstanceCount"] == 4


def test_an_alarm_during_baking_rolls_the_deployment_back(
    sm: Any, emu: Emulator, clock: ManualClock, blue: None
) -> None:
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=canary())
    clock.advance(PROVISION + 30)
    assert phase(sm)[2] == "Baking"
    emu.alarm("errors")
    clock.advance(1)
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == "blue"  # the old config: the update rolled back
    assert described["FailureReason"] == (
        "The deployment was rolled back: CloudWatch alarm errors went into the ALARM state during a baking "
        "period (canary: step 1 of 2, 25% of traffic on the new fleet, baking for 60 s)."
    )
    assert "PendingDeploymentSummary" not in described
    # The old fleet kept its deployment; a corrected config deploys as usual.
    assert described["ProductionVariants"][0]["DeployedImages"][0]["SpecifiedImage"] == IMAGE.format("old")
    emu.clear_faults()
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=canary())
    clock.advance(PROVISION + 150)
    assert phase(sm) == ("InService", "green", None, None)


def test_an_alarm_already_in_alarm_rolls_back_at_the_first_baking_period(
    sm: Any, emu: Emulator, clock: ManualClock, blue: None
) -> None:
    emu.alarm("errors")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=canary())
    assert phase(sm)[2] == "Creating"  # not watched while the new fleet is provisioned
    clock.advance(PROVISION)
    described = sm.describe_endpoint(EndpointName="ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "blue")
    assert described["LastModifiedTime"].timestamp() == pytest.approx(clock.now)


def test_only_the_listed_alarms_roll_back(sm: Any, emu: Emulator, clock: ManualClock, blue: None) -> None:
    emu.alarm("someone-elses")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=canary())
    clock.advance(PROVISION + 150)
    assert phase(sm) == ("InService", "green", None, None)


def test_the_alarm_fault_through_the_admin_api(
    sm: Any, emu: Emulator, clock: ManualClock, blue: None
) -> None:
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=canary())
    clock.advance(PROVISION + 70)  # the final baking period, after the canary step
    request = urllib.request.Request(
        emu.url + "/_emulator/faults", data=json.dumps({"kind": "alarm", "alarm": "errors"}).encode()
    )
    with urllib.request.urlopen(request) as response:
        (fault,) = json.loads(response.read())["faults"]
    assert (fault["kind"], fault["alarm"], fault["since"]) == ("alarm", "errors", clock.now)
    assert phase(sm)[:2] == ("InService", "blue")


def test_linear_and_rolling_steps(sm: Any, clock: ManualClock, blue: None) -> None:
    linear = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 2},
                "WaitIntervalInSeconds": 10,
            }
        }
    }
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=linear)
    clock.advance(PROVISION)
    assert phase(sm)[2:] == ("Baking", 0.5)
    clock.advance(10)
    assert phase(sm)[2:] == ("Baking", 1.0)
    clock.advance(10)
    assert phase(sm)[:2] == ("InService", "green")

    rolling = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            "WaitIntervalInSeconds": 5,
        }
    }
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="blue", DeploymentConfig=rolling)
    clock.advance(PROVISION)
    shares = []
    for _ in range(4):
        shares.append(phase(sm)[3])
        clock.advance(5)
    assert shares == [0.25, 0.5, 0.75, 1.0]
    assert phase(sm)[:2] == ("InService", "blue")


def test_all_at_once_without_alarms_and_a_time_scale(
    sm: Any, emu: Emulator, clock: ManualClock, blue: None
) -> None:
    emu.set_delay(deployment_time_scale=0.01)
    config = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}
        }
    }
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=config)
    clock.advance(PROVISION)
    assert phase(sm)[2:] == ("Baking", 1.0)
    clock.advance(6)  # 600 s scaled by 0.01
    assert phase(sm)[:2] == ("InService", "green")


def test_traffic_shifts_to_the_new_fleet_step_by_step(
    sm: Any, runtime: Any, clock: ManualClock, blue: None
) -> None:
    def served(times: int) -> set[str]:
        answers = set()
        for _ in range(times):
            body = runtime.invoke_endpoint(EndpointName="ep", Body=b"x", ContentType="text/csv")[
                "Body"
            ].read()
            answers.add(body.decode().split("(")[1])  # the pipeline's first container: old or new
        return answers

    sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=canary(percent=50))
    assert served(20) == {"old"}  # provisioning: the old fleet serves everything
    clock.advance(PROVISION)
    assert served(60) == {"old", "new"}  # the canary takes half of the traffic (seeded draws)
    clock.advance(60)
    assert served(20) == {"new"}


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (canary(percent=60), "CanarySize must be 0-50% of the variant's total instance count (4)"),
        (
            {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 5}
                }
            },
            "TrafficRoutingConfiguration.CanarySize is required when Type is CANARY",
        ),
        (
            {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "LINEAR",
                        "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 3},
                        "WaitIntervalInSeconds": 5,
                    }
                }
            },
            "LinearStepSize must be 10-50%",
        ),
        (
            {
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 60},
                    "WaitIntervalInSeconds": 5,
                }
            },
            "MaximumBatchSize must be 5-50%",
        ),
        (
            {
                **canary(),
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                    "WaitIntervalInSeconds": 5,
                },
            },
            "not both",
        ),
    ],
)
def test_invalid_deployment_configs_are_refused(sm: Any, blue: None, config: Any, fragment: str) -> None:
    with pytest.raises(ClientError) as info:
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=config)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert fragment in info.value.response["Error"]["Message"]
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"


def test_botocore_constraints_of_a_deployment_config(sm: Any, blue: None) -> None:
    config = canary(wait=3601)
    with pytest.raises(ClientError) as info:
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="green", DeploymentConfig=config)
    assert info.value.response["Error"]["Message"] == (
        "1 validation error detected: Value '3601' at 'deploymentConfig.blueGreenUpdatePolicy."
        "trafficRoutingConfiguration.waitIntervalInSeconds' failed to satisfy constraint: Member must have "
        "value less than or equal to 3600"
    )


def test_a_guarded_deployment_keeps_the_variant_name(sm: Any, fleet: Callable[..., None], blue: None) -> None:
    fleet("renamed", "new", variant="other")
    with pytest.raises(ClientError) as info:
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="renamed", DeploymentConfig=canary())
    assert "keep the variant names of the current one (main)" in info.value.response["Error"]["Message"]
    # Without guardrails a new variant name is SageMaker's ordinary update.
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="renamed")
