"""The control plane through unmodified boto3 over HTTP: resources, ARNs, errors, lists, tags."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mce_operator.emulator import Emulator

ARN = "arn:aws:sagemaker:us-east-1:123456789012"


def error_of(call: Callable[..., Any], **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def test_model_round_trip(sm: Any, containers: Callable[..., Any]) -> None:
    arn = sm.create_model(
        ModelName="Pipeline-1",
        Containers=containers("pre", "main"),
        InferenceExecutionConfig={"Mode": "Serial"},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        Tags=[{"Key": "team", "Value": "ml"}],
    )["ModelArn"]
    assert arn == f"{ARN}:model/pipeline-1"
    described = sm.describe_model(ModelName="pipeline-1")
    assert described["ModelName"] == "Pipeline-1"
    assert described["ModelArn"] == arn
    assert [c["ContainerHostname"] for c in described["Containers"]] == ["pre", "main"]
    assert described["InferenceExecutionConfig"] == {"Mode": "Serial"}
    assert described["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/x"
    assert described["EnableNetworkIsolation"] is False
    assert "CreationTime" in described
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}]
    sm.delete_model(ModelName="Pipeline-1")
    assert error_of(sm.describe_model, ModelName="Pipeline-1") == (
        "ValidationException",
        f'Could not find model "{ARN}:model/pipeline-1".',
    )


def test_not_found_errors(sm: Any) -> None:
    model = ("ValidationException", f'Could not find model "{ARN}:model/nope".')
    config = ("ValidationException", f'Could not find endpoint configuration "{ARN}:endpoint-config/nope".')
    endpoint = ("ValidationException", f'Could not find endpoint "{ARN}:endpoint/nope".')
    assert error_of(sm.describe_model, ModelName="nope") == model
    assert error_of(sm.delete_model, ModelName="nope") == model
    assert error_of(sm.describe_endpoint_config, EndpointConfigName="nope") == config
    assert error_of(sm.delete_endpoint_config, EndpointConfigName="nope") == config
    assert error_of(sm.describe_endpoint, EndpointName="nope") == endpoint
    assert error_of(sm.delete_endpoint, EndpointName="nope") == endpoint
    assert error_of(sm.update_endpoint, EndpointName="nope", EndpointConfigName="x") == endpoint
    assert error_of(sm.list_tags, ResourceArn=f"{ARN}:endpoint/nope") == endpoint


def test_duplicates_are_refused_case_insensitively(
    sm: Any, make_model: Callable[..., str], make_config: Callable[..., str]
) -> None:
    make_model("dup")
    assert error_of(make_model, name="DUP") == (
        "ValidationException",
        f'Cannot create already existing model "{ARN}:model/dup".',
    )
    make_config("dup-config", "dup")
    assert error_of(make_config, name="Dup-Config", model="dup") == (
        "ValidationException",
        f'Cannot create already existing endpoint configuration "{ARN}:endpoint-config/dup-config".',
    )
    sm.create_endpoint(EndpointName="dup-ep", EndpointConfigName="dup-config")
    assert error_of(sm.create_endpoint, EndpointName="DUP-EP", EndpointConfigName="dup-config") == (
        "ValidationException",
        f'Cannot create already existing endpoint "{ARN}:endpoint/dup-ep".',
    )


def test_config_needs_its_models_and_endpoint_its_config(sm: Any, make_config: Callable[..., str]) -> None:
    assert error_of(make_config, name="c", model="missing") == (
        "ValidationException",
        f'Could not find model "{ARN}:model/missing".',
    )
    assert error_of(sm.create_endpoint, EndpointName="e", EndpointConfigName="missing") == (
        "ValidationException",
        f'Could not find endpoint configuration "{ARN}:endpoint-config/missing".',
    )
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []


def test_endpoint_config_round_trip(
    sm: Any, make_model: Callable[..., str], make_config: Callable[..., str]
) -> None:
    make_model("m")
    arn = make_config("cfg", "m", Tags=[{"Key": "k", "Value": "v"}])
    assert arn == f"{ARN}:endpoint-config/cfg"
    described = sm.describe_endpoint_config(EndpointConfigName="cfg")
    assert described["EndpointConfigArn"] == arn
    variant = described["ProductionVariants"][0]
    assert variant["ModelName"] == "m"
    assert variant["InstanceType"] == "ml.m5.large"
    assert variant["InitialVariantWeight"] == 1.0
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    sm.delete_endpoint_config(EndpointConfigName="cfg")
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []


def test_instance_based_variants_need_type_and_count(sm: Any, make_model: Callable[..., str]) -> None:
    make_model("m")
    code, message = error_of(
        sm.create_endpoint_config,
        EndpointConfigName="c",
        ProductionVariants=[{"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1}],
    )
    assert code == "ValidationException"
    assert "InstanceType" in message


def test_serverless_does_not_take_pipelines(sm: Any, make_model: Callable[..., str]) -> None:
    make_model("m")
    code, message = error_of(
        sm.create_endpoint_config,
        EndpointConfigName="c",
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": "m",
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 1},
            }
        ],
    )
    assert code == "ValidationException"
    assert "Serverless" in message


def test_account_and_region_are_configurable() -> None:
    import boto3

    with Emulator(account="210987654321", region="eu-west-1", delay=0) as emu:
        sm = boto3.client(
            "sagemaker",
            endpoint_url=emu.url,
            region_name="eu-west-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        arn = sm.create_model(ModelName="m", Containers=[{"Image": "img"}])["ModelArn"]
        assert arn == "arn:aws:sagemaker:eu-west-1:210987654321:model/m"


def test_lists_paginate_filter_and_sort(sm: Any, make_model: Callable[..., str]) -> None:
    names = [f"model-{i:02d}" for i in range(25)] + ["other-1", "OTHER-2"]
    for index, name in enumerate(names):
        if index == 10:
            time.sleep(0.01)
            cut = datetime.now(UTC)
            time.sleep(0.01)
        make_model(name)
    first = sm.list_models()
    assert len(first["Models"]) == 10  # SageMaker's default page
    assert first["Models"][0]["ModelName"] == "OTHER-2"  # newest first by default
    assert "NextToken" in first
    pages = list(sm.get_paginator("list_models").paginate(PaginationConfig={"PageSize": 7}))
    assert [len(p["Models"]) for p in pages] == [7, 7, 7, 6]
    listed = [m["ModelName"] for p in pages for m in p["Models"]]
    assert listed == list(reversed(names))
    ascending = sm.list_models(SortBy="Name", SortOrder="Ascending", MaxResults=100)["Models"]
    assert [m["ModelName"] for m in ascending] == sorted(names)
    matching = sm.list_models(NameContains="other", MaxResults=100)["Models"]
    assert sorted(m["ModelName"] for m in matching) == ["OTHER-2", "other-1"]
    assert "NextToken" not in sm.list_models(NameContains="other")
    before = sm.list_models(CreationTimeBefore=cut, MaxResults=100)["Models"]
    assert {m["ModelName"] for m in before} == {f"model-{i:02d}" for i in range(10)}
    after = sm.list_models(CreationTimeAfter=cut, MaxResults=100)["Models"]
    assert len(after) == len(names) - 10


def test_bad_pagination_token(sm: Any) -> None:
    assert error_of(sm.list_models, NextToken="garbage")[0] == "ValidationException"


def test_list_endpoints_and_configs(
    sm: Any, make_model: Callable[..., str], make_config: Callable[..., str]
) -> None:
    make_model("m")
    for i in range(12):
        make_config(f"cfg-{i}", "m")
    pages = list(sm.get_paginator("list_endpoint_configs").paginate(NameContains="cfg-1"))
    names = [c["EndpointConfigName"] for p in pages for c in p["EndpointConfigs"]]
    assert names == ["cfg-11", "cfg-10", "cfg-1"]
    for i in range(3):
        sm.create_endpoint(EndpointName=f"ep-{i}", EndpointConfigName="cfg-0")
    endpoints = sm.list_endpoints(SortBy="Name", SortOrder="Ascending")["Endpoints"]
    assert [e["EndpointName"] for e in endpoints] == ["ep-0", "ep-1", "ep-2"]
    assert {e["EndpointStatus"] for e in endpoints} <= {"Creating", "InService"}
    assert set(endpoints[0]) >= {"EndpointArn", "CreationTime", "LastModifiedTime"}
    assert sm.list_endpoints(StatusEquals="Failed")["Endpoints"] == []


def test_tags(sm: Any, make_model: Callable[..., str]) -> None:
    arn = make_model("m", Tags=[{"Key": "a", "Value": "1"}])
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "a", "Value": "3"}, {"Key": "b", "Value": "2"}]
    sm.delete_tags(ResourceArn=arn, TagKeys=["a"])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(49)])
    assert len(sm.list_tags(ResourceArn=arn)["Tags"]) == 50
    assert error_of(sm.add_tags, ResourceArn=arn, Tags=[{"Key": "one-too-many", "Value": ""}])[0] == (
        "ValidationException"
    )
    assert error_of(sm.list_tags, ResourceArn=f"{ARN}:model/nope") == (
        "ValidationException",
        f'Could not find model "{ARN}:model/nope".',
    )


def test_tags_go_with_the_resource(sm: Any, make_model: Callable[..., str]) -> None:
    arn = make_model("m", Tags=[{"Key": "a", "Value": "1"}])
    sm.delete_model(ModelName="m")
    make_model("m")
    assert sm.list_tags(ResourceArn=arn)["Tags"] == []


def test_unknown_and_unsupported_operations(emu: Emulator) -> None:
    import json
    import urllib.error
    import urllib.request

    def post(target: str, body: bytes = b"{}") -> tuple[int, dict[str, Any], str]:
        request = urllib.request.Request(
            emu.url + "/",
            data=body,
            headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.loads(response.read()), ""
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), error.headers["x-amzn-ErrorType"]

    status, body, header = post("SageMaker.Frobnicate")
    assert (status, body["__type"], header) == (400, "UnknownOperationException", "UnknownOperationException")
    status, body, _ = post("SageMaker.CreateTrainingJob")
    assert body["__type"] == "UnknownOperationException"
    assert "not supported" in body["message"]
    status, body, _ = post("SageMaker.ListModels", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body, _ = post("SageMaker.DescribeModel", b'{"ModelName": 7}')
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body, _ = post("SageMaker.ListModels")
    assert (status, body) == (200, {"Models": []})
