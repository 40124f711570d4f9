"""InvokeEndpoint through boto3's sagemaker-runtime client: Direct, Serial, errors, the current config."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mce_operator.emulator import Emulator, transform


def runtime_error(runtime: Any, **kwargs: Any) -> tuple[str, str, int]:
    kwargs.setdefault("Body", b"{}")
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(**kwargs)
    response = info.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def invoke(runtime: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    response = runtime.invoke_endpoint(**kwargs)
    body = response["Body"].read()
    try:
        return json.loads(body), response
    except ValueError:
        return body, response


def test_direct_invokes_the_named_container(deploy: Callable[..., None], runtime: Any) -> None:
    deploy("ep", "alpha", "beta")
    body, response = invoke(
        runtime,
        EndpointName="ep",
        Body=b'{"x": [1, 2]}',
        ContentType="application/json",
        TargetContainerHostname="beta",
    )
    assert body == {"container": "beta", "input": {"x": [1, 2]}}
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "main"


def test_direct_needs_a_known_hostname(deploy: Callable[..., None], runtime: Any) -> None:
    deploy("ep", "alpha", "beta")
    code, message, status = runtime_error(runtime, EndpointName="ep")
    assert (code, status) == ("ValidationError", 400)
    assert "TargetContainerHostname" in message
    code, message, status = runtime_error(runtime, EndpointName="ep", TargetContainerHostname="gamma")
    assert (code, status) == ("ValidationError", 400)
    assert "gamma" in message


def test_serial_pipes_containers_in_order(deploy: Callable[..., None], runtime: Any) -> None:
    deploy("ep", "pre", "model", "post", mode="Serial")
    body, _ = invoke(runtime, EndpointName="ep", Body=b'"hello"', ContentType="application/json")
    assert body == {
        "container": "post",
        "input": {"container": "model", "input": {"container": "pre", "input": "hello"}},
    }


def test_serial_refuses_a_target_hostname(deploy: Callable[..., None], runtime: Any) -> None:
    deploy("ep", "pre", "model", mode="Serial")
    code, message, status = runtime_error(runtime, EndpointName="ep", TargetContainerHostname="pre")
    assert (code, status) == ("ValidationError", 400)
    assert "Direct" in message


def test_serial_without_hostnames_names_containers_by_position(
    deploy: Callable[..., None], runtime: Any
) -> None:
    deploy("ep", None, None, mode="Serial")
    body, _ = invoke(runtime, EndpointName="ep", Body=b"{}")
    assert body == {"container": "container-2", "input": {"container": "container-1", "input": {}}}


def test_non_json_bodies(deploy: Callable[..., None], runtime: Any) -> None:
    deploy("ep", "a", "b", mode="Serial")
    body, response = invoke(runtime, EndpointName="ep", Body=b"1,2,3\n4", ContentType="text/csv")
    assert body == b"b(a(1,2,3\n4))"
    assert response["ContentType"] == "text/csv"
    body, _ = invoke(runtime, EndpointName="ep", Body=b"\xff\x00")
    assert body == b"b(a(\xff\x00))"
    assert transform("c", b"[1]", None) == (b'{"container": "c", "input": [1]}', "application/json")


def test_missing_or_unready_endpoints(emu: Emulator, deploy: Callable[..., None], runtime: Any) -> None:
    assert runtime_error(runtime, EndpointName="nope") == (
        "ValidationError",
        "Endpoint nope of account 123456789012 not found.",
        400,
    )
    emu.set_delay(5)
    deploy("slow", wait=False)
    code, message, _ = runtime_error(runtime, EndpointName="slow", TargetContainerHostname="a")
    assert code == "ValidationError"
    assert "Creating" in message
    emu.fail_endpoint_creation("broken", reason="boom")
    emu.set_delay(0)
    deploy("broken", wait=False)
    assert runtime_error(runtime, EndpointName="broken", TargetContainerHostname="a")[0] == "ValidationError"


def test_body_limit(deploy: Callable[..., None], runtime: Any) -> None:
    deploy("ep", "a", "b")
    code, message, _ = runtime_error(
        runtime, EndpointName="ep", TargetContainerHostname="a", Body=b"x" * 6_291_457
    )
    assert code == "ValidationError"
    assert "6291456" in message
    body, _ = invoke(runtime, EndpointName="ep", TargetContainerHostname="a", Body=b"x" * 6_291_456)
    assert len(body) == 6_291_456 + 3


def test_invocation_follows_the_current_config(
    emu: Emulator,
    sm: Any,
    runtime: Any,
    deploy: Callable[..., None],
    make_model: Callable[..., str],
    make_config: Callable[..., str],
    wait_in_service: Callable[[str], None],
) -> None:
    deploy("ep", "a", "b")
    make_model("serial", "x", "y", mode="Serial")
    make_config("serial-config", "serial")
    # Long enough that the invocation below surely lands while Updating, on a loaded machine too.
    emu.set_delay(update=3.0)
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="serial-config")
    # While Updating, the old fleet still serves (no availability loss, as SageMaker's blue/green).
    body, _ = invoke(runtime, EndpointName="ep", Body=b"{}", TargetContainerHostname="a")
    assert body == {"container": "a", "input": {}}
    wait_in_service("ep")
    body, _ = invoke(runtime, EndpointName="ep", Body=b"{}")
    assert body == {"container": "y", "input": {"container": "x", "input": {}}}
    assert runtime_error(runtime, EndpointName="ep", TargetContainerHostname="a")[0] == "ValidationError"


def test_target_variant_and_custom_attributes(
    sm: Any, runtime: Any, make_model: Callable[..., str], wait_in_service: Callable[[str], None]
) -> None:
    make_model("m1", "a", "b")
    make_model("m2", "c", mode="Serial")
    sm.create_endpoint_config(
        EndpointConfigName="two",
        ProductionVariants=[
            {
                "VariantName": "blue",
                "ModelName": "m1",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            },
            {
                "VariantName": "green",
                "ModelName": "m2",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            },
        ],
    )
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="two")
    wait_in_service("ep")
    body, response = invoke(
        runtime, EndpointName="ep", Body=b"{}", TargetVariant="green", CustomAttributes="trace=1"
    )
    assert body == {"container": "c", "input": {}}
    assert response["InvokedProductionVariant"] == "green"
    assert response["CustomAttributes"] == "trace=1"
    assert runtime_error(runtime, EndpointName="ep", TargetVariant="red")[0] == "ValidationError"


def test_intermediate_payload_limit(deploy: Callable[..., None], runtime: Any) -> None:
    deploy("ep", "a", "b", mode="Serial")
    code, _, status = runtime_error(runtime, EndpointName="ep", Body=b"x" * (5 * 1024 * 1024))
    assert (code, status) == ("ModelError", 424)


def test_runtime_calls_are_logged(emu: Emulator, deploy: Callable[..., None], runtime: Any) -> None:
    deploy("ep", "a", "b")
    runtime.invoke_endpoint(EndpointName="ep", Body=b"{}", TargetContainerHostname="a")
    runtime_error(runtime, EndpointName="ep")
    assert [c.outcome for c in emu.calls_to("InvokeEndpoint")] == ["ok", "ValidationError"]


def test_one_url_for_both_services_through_the_environment(
    emu: Emulator, deploy: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    deploy("ep", "a", "b", mode="Serial")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", emu.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", emu.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    session = boto3.Session(region_name="us-east-1")
    assert session.client("sagemaker").describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"
    body = session.client("sagemaker-runtime").invoke_endpoint(EndpointName="ep", Body=b"{}")["Body"].read()
    assert json.loads(body) == {"container": "b", "input": {"container": "a", "input": {}}}
