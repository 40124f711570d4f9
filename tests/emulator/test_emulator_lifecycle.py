"""Endpoint states over time, as SageMaker moves them, and the boto3 waiters against them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from mce_operator.emulator import Emulator

ARN = "arn:aws:sagemaker:us-east-1:123456789012"
FAST = {"Delay": 0.02, "MaxAttempts": 250}


def error_of(call: Callable[..., Any], **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def in_progress(name: str) -> tuple[str, str]:
    return "ValidationException", f'Cannot update in-progress endpoint "{ARN}:endpoint/{name}".'


def test_creating_then_in_service(
    emu: Emulator, sm: Any, make_model: Callable[..., str], make_config: Callable[..., str]
) -> None:
    emu.set_delay(0.2)
    make_model("m", "a", "b")
    make_config("c", "m")
    arn = sm.create_endpoint(EndpointName="Ep", EndpointConfigName="c", Tags=[{"Key": "k", "Value": "v"}])[
        "EndpointArn"
    ]
    assert arn == f"{ARN}:endpoint/ep"
    creating = sm.describe_endpoint(EndpointName="ep")
    assert creating["EndpointStatus"] == "Creating"
    assert creating["EndpointName"] == "Ep"
    assert creating["EndpointConfigName"] == "c"
    assert "FailureReason" not in creating
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    assert error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="c") == in_progress("ep")
    assert error_of(sm.delete_endpoint, EndpointName="ep") == in_progress("ep")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "InService"
    assert described["LastModifiedTime"] > described["CreationTime"]
    (variant,) = described["ProductionVariants"]
    assert variant["VariantName"] == "main"
    assert variant["CurrentInstanceCount"] == variant["DesiredInstanceCount"] == 1
    assert variant["CurrentWeight"] == variant["DesiredWeight"] == 1.0
    images = variant["DeployedImages"]
    assert [i["SpecifiedImage"] for i in images] == [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/a:1.0",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/b:1.0",
    ]
    assert images[0]["ResolvedImage"].startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/a@sha256:")
    assert len(images[0]["ResolvedImage"].split("@sha256:")[1]) == 64


def test_zero_delay_is_in_service_at_the_next_call(
    sm: Any, emu: Emulator, deploy: Callable[..., None]
) -> None:
    emu.set_delay(0)
    deploy("ep", wait=False)
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"


def test_update_moves_to_the_new_config(
    emu: Emulator,
    sm: Any,
    deploy: Callable[..., None],
    make_model: Callable[..., str],
    make_config: Callable[..., str],
) -> None:
    deploy("ep")
    emu.set_delay(0.2)
    make_model("m2", "x", "y", "z")
    make_config("c2", "m2")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
    updating = sm.describe_endpoint(EndpointName="ep")
    assert updating["EndpointStatus"] == "Updating"
    assert updating["EndpointConfigName"] == "ep-config"  # still the running one
    assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == "c2"
    assert error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="c2") == in_progress("ep")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    done = sm.describe_endpoint(EndpointName="ep")
    assert done["EndpointConfigName"] == "c2"
    assert "PendingDeploymentSummary" not in done
    assert len(done["ProductionVariants"][0]["DeployedImages"]) == 3


def test_update_needs_an_existing_config(sm: Any, deploy: Callable[..., None]) -> None:
    deploy("ep")
    assert error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="gone") == (
        "ValidationException",
        f'Could not find endpoint configuration "{ARN}:endpoint-config/gone".',
    )
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"


def test_delete_then_gone(emu: Emulator, sm: Any, deploy: Callable[..., None]) -> None:
    deploy("ep")
    emu.set_delay(0.2)
    sm.delete_endpoint(EndpointName="ep")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Deleting"
    assert error_of(sm.delete_endpoint, EndpointName="ep") == in_progress("ep")
    assert error_of(sm.create_endpoint, EndpointName="ep", EndpointConfigName="ep-config") == (
        "ValidationException",
        f'Cannot create already existing endpoint "{ARN}:endpoint/ep".',
    )
    sm.get_waiter("endpoint_deleted").wait(EndpointName="ep", WaiterConfig=FAST)
    assert error_of(sm.describe_endpoint, EndpointName="ep") == (
        "ValidationException",
        f'Could not find endpoint "{ARN}:endpoint/ep".',
    )
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="ep-config")  # the name is free again


def test_failed_creation(emu: Emulator, sm: Any, deploy: Callable[..., None]) -> None:
    emu.fail_endpoint_creation(
        "bad-*",
        reason="The primary container for production variant main did not pass the ping health check.",
    )
    deploy("bad-ep", wait=False)
    with pytest.raises(WaiterError) as info:
        sm.get_waiter("endpoint_in_service").wait(EndpointName="bad-ep", WaiterConfig=FAST)
    assert "Failed" in str(info.value)
    failed = sm.describe_endpoint(EndpointName="bad-ep")
    assert failed["EndpointStatus"] == "Failed"
    assert failed["FailureReason"].startswith("The primary container")
    # A Failed endpoint accepts only DeleteEndpoint.
    code, message = error_of(sm.update_endpoint, EndpointName="bad-ep", EndpointConfigName="bad-ep-config")
    assert code == "ValidationException"
    assert f"{ARN}:endpoint/bad-ep" in message
    code, _ = error_of(
        sm.update_endpoint_weights_and_capacities,
        EndpointName="bad-ep",
        DesiredWeightsAndCapacities=[{"VariantName": "main", "DesiredWeight": 2}],
    )
    assert code == "ValidationException"
    sm.delete_endpoint(EndpointName="bad-ep")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="bad-ep", WaiterConfig=FAST)
    deploy("good-ep")  # the fault matches only bad-*


def test_endpoint_deleted_waiter_fails_on_failed(emu: Emulator, sm: Any, deploy: Callable[..., None]) -> None:
    emu.fail_endpoint_creation(reason="boom")
    deploy("ep", wait=False)
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_deleted").wait(EndpointName="ep", WaiterConfig=FAST)


def test_failed_update_returns_to_the_old_config(
    emu: Emulator,
    sm: Any,
    deploy: Callable[..., None],
    make_model: Callable[..., str],
    make_config: Callable[..., str],
) -> None:
    deploy("ep")
    emu.fail_endpoint_update("ep", config="broken-*", reason="Image pull failed.")
    make_model("m2", "x", "y")
    make_config("broken-config", "m2")
    make_config("fine-config", "m2")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="broken-config")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Updating"
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    back = sm.describe_endpoint(EndpointName="ep")
    assert back["EndpointStatus"] == "InService"
    assert back["EndpointConfigName"] == "ep-config"
    assert back["FailureReason"] == "Image pull failed."
    # Another config is not affected, and success clears the reason.
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="fine-config")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    fine = sm.describe_endpoint(EndpointName="ep")
    assert fine["EndpointConfigName"] == "fine-config"
    assert "FailureReason" not in fine


def test_model_deleted_during_creation_fails_it(
    emu: Emulator, sm: Any, make_model: Callable[..., str], make_config: Callable[..., str]
) -> None:
    emu.set_delay(0.1)
    make_model("m")
    make_config("c", "m")
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c")
    sm.delete_model(ModelName="m")  # allowed, as in AWS
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    failed = sm.describe_endpoint(EndpointName="ep")
    assert failed["EndpointStatus"] == "Failed"
    assert failed["FailureReason"] == f'Could not find model "{ARN}:model/m".'


def test_config_deleted_during_creation_fails_it(
    emu: Emulator, sm: Any, make_model: Callable[..., str], make_config: Callable[..., str]
) -> None:
    emu.set_delay(0.1)
    make_model("m")
    make_config("c", "m")
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c")
    sm.delete_endpoint_config(EndpointConfigName="c")
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    reason = sm.describe_endpoint(EndpointName="ep")["FailureReason"]
    assert reason == f'Could not find endpoint configuration "{ARN}:endpoint-config/c".'


def test_resources_in_use_can_be_deleted_but_later_updates_fail(
    sm: Any,
    deploy: Callable[..., None],
    make_model: Callable[..., str],
    make_config: Callable[..., str],
    runtime: Any,
) -> None:
    deploy("ep", "a", "b")
    sm.delete_endpoint_config(EndpointConfigName="ep-config")
    sm.delete_model(ModelName="ep-model")
    # The running endpoint does not need them to serve.
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == "ep-config"
    body = runtime.invoke_endpoint(EndpointName="ep", Body=b"{}", TargetContainerHostname="a")["Body"].read()
    assert body == b'{"container": "a", "input": {}}'
    # A new config referring to the deleted model cannot even be created.
    assert (
        error_of(make_config, name="c2", model="ep-model")[1]
        == f'Could not find model "{ARN}:model/ep-model".'
    )
    # An update away from the deleted config fails, back on the old (deleted) config with the reason.
    make_model("m2")
    make_config("c2", "m2")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    after = sm.describe_endpoint(EndpointName="ep")
    assert after["EndpointConfigName"] == "ep-config"
    assert (
        after["FailureReason"] == f'Could not find endpoint configuration "{ARN}:endpoint-config/ep-config".'
    )


def test_update_fails_when_the_new_model_disappears(
    emu: Emulator,
    sm: Any,
    deploy: Callable[..., None],
    make_model: Callable[..., str],
    make_config: Callable[..., str],
) -> None:
    deploy("ep")
    emu.set_delay(0.1)
    make_model("m2")
    make_config("c2", "m2")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
    sm.delete_model(ModelName="m2")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    after = sm.describe_endpoint(EndpointName="ep")
    assert after["EndpointConfigName"] == "ep-config"
    assert after["FailureReason"] == f'Could not find model "{ARN}:model/m2".'


def test_system_updating_blocks_changes_until_it_ends(
    emu: Emulator, sm: Any, deploy: Callable[..., None]
) -> None:
    deploy("ep")
    emu.set_endpoint_status("ep", "SystemUpdating", duration=0.2)
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "SystemUpdating"
    assert error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="ep-config") == in_progress(
        "ep"
    )
    assert error_of(sm.delete_endpoint, EndpointName="ep") == in_progress("ep")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="ep-config")


def test_forced_failed_accepts_only_delete(emu: Emulator, sm: Any, deploy: Callable[..., None]) -> None:
    deploy("ep")
    emu.set_endpoint_status("ep", "Failed", failure_reason="Lost the instances.")
    described = sm.describe_endpoint(EndpointName="ep")
    assert (described["EndpointStatus"], described["FailureReason"]) == ("Failed", "Lost the instances.")
    assert (
        error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="ep-config")[0]
        == "ValidationException"
    )
    sm.delete_endpoint(EndpointName="ep")


def test_out_of_band_delete(emu: Emulator, sm: Any, deploy: Callable[..., None]) -> None:
    deploy("ep")
    emu.delete_endpoint_now("ep")
    assert (
        error_of(sm.describe_endpoint, EndpointName="ep")[1]
        == f'Could not find endpoint "{ARN}:endpoint/ep".'
    )
    assert emu.endpoint_status("ep") is None


def test_weights_and_capacities(emu: Emulator, sm: Any, deploy: Callable[..., None]) -> None:
    deploy("ep")
    emu.set_delay(0.2)
    sm.update_endpoint_weights_and_capacities(
        EndpointName="ep", DesiredWeightsAndCapacities=[{"VariantName": "main", "DesiredInstanceCount": 3}]
    )
    updating = sm.describe_endpoint(EndpointName="ep")
    assert updating["EndpointStatus"] == "Updating"
    variant = updating["ProductionVariants"][0]
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (1, 3)
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    variant = sm.describe_endpoint(EndpointName="ep")["ProductionVariants"][0]
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (3, 3)
    code, message = error_of(
        sm.update_endpoint_weights_and_capacities,
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": "nope", "DesiredWeight": 1}],
    )
    assert code == "ValidationException"
    assert "nope" in message


def test_waiter_with_integer_delay(emu: Emulator, sm: Any, deploy: Callable[..., None]) -> None:
    emu.set_delay(0.1)
    deploy("ep", wait=False)
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"
