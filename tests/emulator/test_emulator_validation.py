"""Validation from botocore's service model and SageMaker's multi-container rules, as SageMaker words them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

NAME = "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"


def message_of(call: Callable[..., Any], **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    message: str = info.value.response["Error"]["Message"]
    return message


def test_bad_hostname_pattern(sm: Any) -> None:
    message = message_of(
        sm.create_model,
        ModelName="m",
        Containers=[
            {"Image": "i", "ContainerHostname": "a"},
            {"Image": "i", "ContainerHostname": "bad_name"},
        ],
        InferenceExecutionConfig={"Mode": "Direct"},
    )
    assert message == (
        "1 validation error detected: Value 'bad_name' at 'containers.2.member.containerHostname' failed to "
        f"satisfy constraint: Member must satisfy regular expression pattern: {NAME}"
    )


def test_several_errors_are_counted_and_joined(sm: Any) -> None:
    message = message_of(
        sm.create_model,
        ModelName="m" * 64,
        Containers=[{"Image": "i"}] * 16,
        InferenceExecutionConfig={"Mode": "Bogus"},
    )
    assert message.startswith("3 validation errors detected: ")
    parts = message.removeprefix("3 validation errors detected: ").split("; ")
    assert parts[0] == (
        f"Value '{'m' * 64}' at 'modelName' failed to satisfy constraint: "
        "Member must have length less than or equal to 63"
    )
    assert parts[1].endswith(
        "at 'containers' failed to satisfy constraint: Member must have length less than or equal to 15"
    )
    assert parts[2] == (
        "Value 'Bogus' at 'inferenceExecutionConfig.mode' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Serial, Direct]"
    )


def test_name_pattern_is_matched_on_the_whole_string(sm: Any) -> None:
    message = message_of(
        sm.create_endpoint_config, EndpointConfigName="ok-", ProductionVariants=[{"VariantName": "v"}]
    )
    assert message.startswith(
        "1 validation error detected: Value 'ok-' at 'endpointConfigName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {NAME}"
    )


def test_nested_variant_constraints(sm: Any) -> None:
    sm.create_model(ModelName="m", Containers=[{"Image": "i"}])
    message = message_of(
        sm.create_endpoint_config,
        EndpointConfigName="c",
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": "bad_model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.nope",
                "VolumeSizeInGB": 513,
            }
        ],
    )
    assert message.startswith("3 validation errors detected: ")
    assert (
        "Value 'bad_model' at 'productionVariants.1.member.modelName' failed to satisfy constraint" in message
    )
    assert (
        "Value 'ml.nope' at 'productionVariants.1.member.instanceType' failed to satisfy constraint: "
        in message
    )
    assert (
        "Value '513' at 'productionVariants.1.member.volumeSizeInGB' failed to satisfy constraint: "
        "Member must have value less than or equal to 512" in message
    )


def test_too_many_variants_and_range(sm: Any) -> None:
    variant = {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    message = message_of(sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=[variant] * 11)
    assert (
        "at 'productionVariants' failed to satisfy constraint: "
        "Member must have length less than or equal to 10" in message
    )
    message = message_of(
        sm.create_endpoint_config,
        EndpointConfigName="c",
        ProductionVariants=[{**variant, "ModelDataDownloadTimeoutInSeconds": 3601}],
    )
    assert message == (
        "1 validation error detected: Value '3601' at "
        "'productionVariants.1.member.modelDataDownloadTimeoutInSeconds' "
        "failed to satisfy constraint: Member must have value less than or equal to 3600"
    )


def test_environment_keys_and_role(sm: Any) -> None:
    message = message_of(
        sm.create_model,
        ModelName="m",
        Containers=[{"Image": "i", "Environment": {"1BAD": "x"}}],
        ExecutionRoleArn="arn:aws:iam::123:role/x",
    )
    assert message.startswith("2 validation errors detected: ")
    assert (
        "at 'containers.1.member.environment' failed to satisfy constraint: "
        "Map keys must satisfy constraint: [" in message
    )
    assert "Value 'arn:aws:iam::123:role/x' at 'executionRoleArn'" in message


def test_tag_constraints(sm: Any) -> None:
    sm.create_model(ModelName="m", Containers=[{"Image": "i"}])
    message = message_of(
        sm.add_tags,
        ResourceArn="arn:aws:sagemaker:us-east-1:123456789012:model/m",
        Tags=[{"Key": "k" * 129, "Value": "v"}],
    )
    assert (
        "at 'tags.1.member.key' failed to satisfy constraint: "
        "Member must have length less than or equal to 128" in message
    )


def test_tag_keys_starting_with_aws_are_reserved(sm: Any) -> None:
    """SageMaker refuses "aws:" keys wherever a tag key is given, as a TagKey pattern violation."""
    arn = sm.create_model(ModelName="m", Containers=[{"Image": "i"}])["ModelArn"]
    message = message_of(
        sm.add_tags, ResourceArn=arn, Tags=[{"Key": "team", "Value": "a"}, {"Key": "aws:owner", "Value": "b"}]
    )
    assert message.startswith("1 validation error detected: Value 'aws:owner' at 'tags.2.member.key'")
    assert "Member must satisfy regular expression pattern: ^((?!aws:)" in message
    message = message_of(
        sm.create_model,
        ModelName="m2",
        Containers=[{"Image": "i"}],
        Tags=[{"Key": "aws:cloudformation:stack-name", "Value": "x"}],
    )
    assert "at 'tags.1.member.key'" in message and "(?!aws:)" in message
    assert "at 'tagKeys.1.member'" in message_of(sm.delete_tags, ResourceArn=arn, TagKeys=["aws:owner"])
    # Only the prefix is reserved: the same letters elsewhere in a key, or in a value, are fine.
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team-aws:x", "Value": "aws:y"}])
    tags = sm.list_tags(ResourceArn=arn)["Tags"]
    assert tags == [{"Key": "team-aws:x", "Value": "aws:y"}]


def test_direct_needs_every_hostname(sm: Any) -> None:
    message = message_of(
        sm.create_model,
        ModelName="m",
        Containers=[{"Image": "i", "ContainerHostname": "a"}, {"Image": "i"}],
        InferenceExecutionConfig={"Mode": "Direct"},
    )
    assert "ContainerHostname" in message and "Direct" in message


def test_serial_hostnames_all_or_none(sm: Any) -> None:
    message = message_of(
        sm.create_model,
        ModelName="m",
        Containers=[{"Image": "i", "ContainerHostname": "a"}, {"Image": "i"}],
    )
    assert "ContainerHostname" in message
    sm.create_model(ModelName="unnamed", Containers=[{"Image": "i"}, {"Image": "i"}])
    sm.create_model(ModelName="named", Containers=[{"Image": "i", "ContainerHostname": n} for n in "ab"])


def test_hostnames_are_unique(sm: Any) -> None:
    message = message_of(
        sm.create_model,
        ModelName="m",
        Containers=[{"Image": "i", "ContainerHostname": "a"}, {"Image": "i", "ContainerHostname": "a"}],
        InferenceExecutionConfig={"Mode": "Direct"},
    )
    assert "unique" in message


def test_one_multimodel_container_per_pipeline(sm: Any) -> None:
    message = message_of(
        sm.create_model,
        ModelName="m",
        Containers=[{"Image": "i", "Mode": "MultiModel"}, {"Image": "i", "Mode": "MultiModel"}],
    )
    assert message == "More than one container in MultiModel mode is not supported with inference pipeline."
    sm.create_model(ModelName="ok", Containers=[{"Image": "i", "Mode": "MultiModel"}, {"Image": "i"}])


def test_environment_total_size(sm: Any) -> None:
    big = {f"K{i}": "v" * 1000 for i in range(17)}  # ~17 KB per container, 34 KB in all
    message = message_of(
        sm.create_model,
        ModelName="m",
        Containers=[{"Image": "i", "Environment": big}, {"Image": "i", "Environment": big}],
    )
    assert "environment" in message
    sm.create_model(ModelName="ok", Containers=[{"Image": "i", "Environment": big}])


def test_a_model_needs_containers(sm: Any) -> None:
    assert "Containers" in message_of(sm.create_model, ModelName="m")
    message = message_of(
        sm.create_model, ModelName="m", PrimaryContainer={"Image": "i"}, Containers=[{"Image": "i"}]
    )
    assert "PrimaryContainer" in message
    sm.create_model(ModelName="single", PrimaryContainer={"Image": "i"})
