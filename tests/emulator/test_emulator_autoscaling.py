"""Application Auto Scaling of SageMaker variants, through boto3's own ``application-autoscaling`` client on
the emulator's port: scalable targets, policies, SageMaker's documented rules, the admin API's scaling."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mce_operator.emulator import Emulator

ARN = "arn:aws:sagemaker:us-east-1:123456789012"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
RESOURCE = "endpoint/ep/variant/main"
TARGET = {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE, "ScalableDimension": DIMENSION}
TRACKING = {
    "TargetValue": 70.0,
    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
    "ScaleInCooldown": 300,
    "ScaleOutCooldown": 60,
}


@pytest.fixture
def aas(new_client: Callable[..., Any]) -> Any:
    return new_client("application-autoscaling")


def error_of(call: Callable[..., Any], **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def admin(emu: Emulator, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        emu.url + "/_emulator" + path, data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def config(sm: Any, name: str, model: str, *, instance_type: str = "ml.m5.large", count: int = 1) -> None:
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "main",
                "ModelName": model,
                "InitialInstanceCount": count,
                "InstanceType": instance_type,
            }
        ],
    )


def test_register_describe_policies_and_deregister(aas: Any, deploy: Callable[..., None]) -> None:
    deploy("ep")
    arn = aas.register_scalable_target(**TARGET, MinCapacity=1, MaxCapacity=4)["ScalableTargetARN"]
    assert arn.startswith("arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/")
    (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[RESOURCE])[
        "ScalableTargets"
    ]
    assert (target["MinCapacity"], target["MaxCapacity"], target["ScalableTargetARN"]) == (1, 4, arn)
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in target["RoleARN"]
    # Registering again updates the bounds in place (same ARN); a bound left out is kept.
    assert aas.register_scalable_target(**TARGET, MaxCapacity=6)["ScalableTargetARN"] == arn
    (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 6)

    put = aas.put_scaling_policy(
        PolicyName="invocations",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=TRACKING,
        **TARGET,
    )
    assert put["PolicyARN"].endswith(f":resource/sagemaker/{RESOURCE}:policyName/invocations")
    assert [a["AlarmName"].split("-")[-2] for a in put["Alarms"]] == ["AlarmHigh", "AlarmLow"]
    (policy,) = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=RESOURCE)[
        "ScalingPolicies"
    ]
    assert policy["PolicyName"] == "invocations"
    assert policy["TargetTrackingScalingPolicyConfiguration"] == TRACKING

    aas.deregister_scalable_target(**TARGET)
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    # Deregistering deleted the target's policies too.
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []


def test_not_found_answers_are_application_auto_scaling_s(aas: Any, deploy: Callable[..., None]) -> None:
    deploy("ep")
    not_registered = (
        "ObjectNotFoundException",
        f"No scalable target registered for service namespace: sagemaker, resource ID: {RESOURCE}, "
        f"scalable dimension: {DIMENSION}",
    )
    assert error_of(aas.deregister_scalable_target, **TARGET) == not_registered
    assert (
        error_of(
            aas.put_scaling_policy,
            PolicyName="p",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration=TRACKING,
            **TARGET,
        )
        == not_registered
    )
    aas.register_scalable_target(**TARGET, MinCapacity=1, MaxCapacity=2)
    assert error_of(aas.delete_scaling_policy, PolicyName="p", **TARGET) == (
        "ObjectNotFoundException",
        f"No scaling policy found for service namespace: sagemaker, resource ID: {RESOURCE}, "
        f"scalable dimension: {DIMENSION}, policy name: p",
    )


def test_invalid_registrations_are_refused(aas: Any, deploy: Callable[..., None]) -> None:
    deploy("ep")

    def refused(**kwargs: Any) -> str:
        code, message = error_of(aas.register_scalable_target, **kwargs)
        assert code == "ValidationException"
        return message

    assert "cannot be greater" in refused(**TARGET, MinCapacity=3, MaxCapacity=2)
    assert "at least 1" in refused(**TARGET, MinCapacity=0, MaxCapacity=2)
    assert "are required" in refused(**TARGET)
    assert "does not exist" in refused(
        **{**TARGET, "ResourceId": "endpoint/nope/variant/main"}, MinCapacity=1, MaxCapacity=2
    )
    assert "does not exist" in refused(
        **{**TARGET, "ResourceId": "endpoint/ep/variant/other"}, MinCapacity=1, MaxCapacity=2
    )
    assert "Unsupported resource ID" in refused(
        **{**TARGET, "ResourceId": "ep/main"}, MinCapacity=1, MaxCapacity=2
    )
    assert "Only ServiceNamespace sagemaker" in refused(
        ServiceNamespace="ecs",
        ResourceId="service/c/s",
        ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=1,
        MaxCapacity=2,
    )
    # botocore's service model: the enum and the length constraints reach the server, worded as AWS does.
    assert refused(**{**TARGET, "ServiceNamespace": "bogus"}, MinCapacity=1, MaxCapacity=2) == (
        "1 validation error detected: Value 'bogus' at 'serviceNamespace' failed to satisfy constraint: "
        "Member must satisfy enum value set: [ecs, elasticmapreduce, ec2, appstream, dynamodb, rds, "
        "sagemaker, custom-resource, comprehend, lambda, cassandra, kafka, elasticache, neptune, workspaces]"
    )
    aas.register_scalable_target(**TARGET, MinCapacity=1, MaxCapacity=2)
    code, message = error_of(
        aas.put_scaling_policy,
        PolicyName="p" * 257,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=TRACKING,
        **TARGET,
    )
    assert code == "ValidationException"
    assert (
        "at 'policyName' failed to satisfy constraint: Member must have length less than or equal to 256"
        in message
    )
    code, message = error_of(
        aas.put_scaling_policy,
        PolicyName="p",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 50.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
        },
        **TARGET,
    )
    assert (code, "not a metric of a SageMaker variant" in message) == ("ValidationException", True)


def test_an_instance_type_change_of_a_registered_variant_is_refused(
    aas: Any, sm: Any, emu: Emulator, deploy: Callable[..., None], make_model: Callable[..., str]
) -> None:
    deploy("ep")
    aas.register_scalable_target(**TARGET, MinCapacity=1, MaxCapacity=4)
    config(sm, "bigger", "ep-model", instance_type="ml.m5.xlarge")
    code, message = error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="bigger")
    assert code == "ValidationException"
    assert f'[main] of endpoint "{ARN}:endpoint/ep" are registered as scalable targets' in message
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"
    # Removing the variant (another variant name) is refused the same way.
    sm.create_endpoint_config(
        EndpointConfigName="renamed",
        ProductionVariants=[
            {
                "VariantName": "other",
                "ModelName": "ep-model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    assert (
        error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="renamed")[0]
        == "ValidationException"
    )
    # A new model on the same instance type is allowed while registered.
    make_model("m2", "x", "y")
    config(sm, "new-model", "m2")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="new-model")
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName="ep", WaiterConfig={"Delay": 0.02, "MaxAttempts": 250}
    )
    # Deregistered, the instance type may change.
    aas.deregister_scalable_target(**TARGET)
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="bigger")
    assert [c.outcome for c in emu.calls_to("UpdateEndpoint")] == [
        "ValidationException",
        "ValidationException",
        "ok",
        "ok",
    ]


def test_admin_scaling_then_retained_or_reset_by_an_update(
    aas: Any, sm: Any, emu: Emulator, deploy: Callable[..., None], wait_in_service: Callable[[str], None]
) -> None:
    deploy("ep")
    scale = {"endpoint": "ep", "variant": "main", "desiredInstanceCount": 3}
    status, answer = admin(emu, "/scale", scale)
    assert (status, "not registered" in answer["error"]) == (400, True)
    aas.register_scalable_target(**TARGET, MinCapacity=1, MaxCapacity=4)
    status, answer = admin(emu, "/scale", {**scale, "desiredInstanceCount": 5})
    assert (status, "outside the scalable target's bounds [1, 4]" in answer["error"]) == (400, True)
    status, answer = admin(emu, "/scale", scale)
    assert status == 200
    assert answer["endpoints"]["ep"]["status"] == "Updating"  # as UpdateEndpointWeightsAndCapacities
    assert answer["scalableTargets"] == {RESOURCE: {"minCapacity": 1, "maxCapacity": 4, "policies": []}}
    status, answer = admin(emu, "/scale", scale)
    assert (status, answer["code"]) == (400, "ValidationException")  # busy: Cannot update in-progress
    wait_in_service("ep")
    (variant,) = sm.describe_endpoint(EndpointName="ep")["ProductionVariants"]
    assert (variant["DesiredInstanceCount"], variant["CurrentInstanceCount"]) == (3, 3)

    # RetainAllVariantProperties keeps what autoscaling chose; the config says 1.
    config(sm, "same", "ep-model")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="same", RetainAllVariantProperties=True)
    wait_in_service("ep")
    (variant,) = sm.describe_endpoint(EndpointName="ep")["ProductionVariants"]
    assert (variant["DesiredInstanceCount"], variant["CurrentInstanceCount"]) == (3, 3)
    # Excluding DesiredInstanceCount from the retained properties takes the config's count.
    sm.update_endpoint(
        EndpointName="ep",
        EndpointConfigName="ep-config",
        RetainAllVariantProperties=True,
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredInstanceCount"}],
    )
    wait_in_service("ep")
    assert sm.describe_endpoint(EndpointName="ep")["ProductionVariants"][0]["DesiredInstanceCount"] == 1
    # Without RetainAllVariantProperties an update resets the count to the config's.
    emu.scale_variant("ep", "main", 2)
    wait_in_service("ep")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="same")
    wait_in_service("ep")
    assert sm.describe_endpoint(EndpointName="ep")["ProductionVariants"][0]["DesiredInstanceCount"] == 1


def test_delete_endpoint_deregisters_its_targets(
    aas: Any, sm: Any, emu: Emulator, deploy: Callable[..., None]
) -> None:
    deploy("ep")
    aas.register_scalable_target(**TARGET, MinCapacity=1, MaxCapacity=4)
    aas.put_scaling_policy(
        PolicyName="p",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=TRACKING,
        **TARGET,
    )
    sm.delete_endpoint(EndpointName="ep")
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    assert emu.snapshot()["scalableTargets"] == {}


def test_faults_and_the_call_log_cover_autoscaling(
    aas: Any, emu: Emulator, deploy: Callable[..., None]
) -> None:
    deploy("ep")
    emu.deny(["RegisterScalableTarget"], count=1)
    code, message = error_of(aas.register_scalable_target, **TARGET, MinCapacity=1, MaxCapacity=2)
    assert code == "AccessDeniedException"
    assert "is not authorized to perform: application-autoscaling:RegisterScalableTarget" in message
    aas.register_scalable_target(**TARGET, MinCapacity=1, MaxCapacity=2)
    assert [(c.name, c.outcome) for c in emu.calls_to("RegisterScalableTarget")] == [
        (RESOURCE, "AccessDeniedException"),
        (RESOURCE, "ok"),
    ]
    assert emu.calls_to("RegisterScalableTarget")[1].request == {**TARGET, "MinCapacity": 1, "MaxCapacity": 2}


def test_describe_pages(aas: Any, sm: Any, deploy: Callable[..., None]) -> None:
    for name in ("a", "b", "c"):
        deploy(name)
        aas.register_scalable_target(
            **{**TARGET, "ResourceId": f"endpoint/{name}/variant/main"}, MinCapacity=1, MaxCapacity=2
        )
    first = aas.describe_scalable_targets(ServiceNamespace="sagemaker", MaxResults=2)
    second = aas.describe_scalable_targets(ServiceNamespace="sagemaker", NextToken=first["NextToken"])
    assert [t["ResourceId"] for t in first["ScalableTargets"] + second["ScalableTargets"]] == [
        "endpoint/a/variant/main",
        "endpoint/b/variant/main",
        "endpoint/c/variant/main",
    ]
    assert "NextToken" not in second
    paginator = aas.get_paginator("describe_scalable_targets")
    assert (
        sum(
            len(page["ScalableTargets"])
            for page in paginator.paginate(ServiceNamespace="sagemaker", PaginationConfig={"PageSize": 1})
        )
        == 3
    )
    assert (
        error_of(aas.describe_scalable_targets, ServiceNamespace="sagemaker", NextToken="junk")[0]
        == "InvalidNextTokenException"
    )
