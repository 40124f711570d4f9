"""Fault injection (Python and the admin HTTP API), the call log and reset."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mce_operator.emulator import Emulator, ServiceError


def admin(emu: Emulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(emu.url + "/_emulator" + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def error_of(call: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response: dict[str, Any] = info.value.response
    return response


def test_throttling_is_recovered_by_standard_retries(emu: Emulator, new_client: Callable[..., Any]) -> None:
    patient = new_client(retries={"mode": "standard", "total_max_attempts": 5})
    emu.throttle(count=2, operations=["ListModels"])
    response = patient.list_models()
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert [c.outcome for c in emu.calls_to("ListModels")] == [
        "ThrottlingException",
        "ThrottlingException",
        "ok",
    ]


def test_throttling_as_aws_answers_it(emu: Emulator, sm: Any) -> None:
    emu.throttle(1.0, operations=["DescribeEndpoint"])
    response = error_of(sm.describe_endpoint, EndpointName="x")
    assert response["Error"] == {"Code": "ThrottlingException", "Message": "Rate exceeded"}
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    sm.list_models()  # other operations are not throttled


def test_a_share_of_calls_is_throttled() -> None:
    with Emulator(delay=0, seed=7) as emu:
        emu.throttle(0.5)
        for _ in range(200):
            with contextlib.suppress(ServiceError):
                emu.control("ListModels", {})
        throttled = sum(1 for c in emu.calls if c.outcome == "ThrottlingException")
        assert 60 < throttled < 140


@pytest.mark.parametrize(("status", "code"), [(500, "InternalFailure"), (503, "ServiceUnavailable")])
def test_server_errors(emu: Emulator, sm: Any, status: int, code: str) -> None:
    emu.server_error(status, count=1)
    response = error_of(sm.list_endpoints)
    assert response["Error"]["Code"] == code
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert sm.list_endpoints()["Endpoints"] == []


def test_denied_access_as_iam_answers_it(emu: Emulator, sm: Any) -> None:
    fault = emu.deny(["DescribeEndpoint", "CreateModel"])
    for _ in range(3):  # no count: every matching call, until the fault is removed
        response = error_of(sm.describe_endpoint, EndpointName="x")
        assert response["Error"]["Code"] == "AccessDeniedException"
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "is not authorized to perform: sagemaker:DescribeEndpoint" in response["Error"]["Message"]
        assert "123456789012" in response["Error"]["Message"]
    assert sm.list_endpoints()["Endpoints"] == []  # other operations are allowed
    assert emu.faults == [
        {"id": fault.id, "kind": "deny", "count": None, "operations": ["CreateModel", "DescribeEndpoint"]}
    ]
    assert [c.outcome for c in emu.calls_to("DescribeEndpoint")] == ["AccessDeniedException"] * 3
    emu.remove_fault(fault)
    assert error_of(sm.describe_endpoint, EndpointName="x")["Error"]["Code"] == "ValidationException"

    emu.deny(count=1)  # every control-plane operation, once
    assert error_of(sm.list_models)["Error"]["Code"] == "AccessDeniedException"
    assert sm.list_models()["Models"] == []


def test_latency(emu: Emulator, sm: Any) -> None:
    fault = emu.add_latency(0.2, operations=["ListModels"])
    started = time.monotonic()
    sm.list_models()
    assert time.monotonic() - started >= 0.2
    emu.remove_fault(fault)
    # Removed: no latency is added any more (checked on the fault list, not with a clock, which a loaded
    # machine makes slow).
    assert emu.faults == []
    assert sm.list_models()["Models"] == []


def test_fault_counts_run_out(emu: Emulator, deploy: Callable[..., None], sm: Any) -> None:
    emu.fail_endpoint_creation("ep-*", reason="boom", count=1)
    deploy("ep-1", wait=False)
    deploy("ep-2")
    assert sm.describe_endpoint(EndpointName="ep-1")["EndpointStatus"] == "Failed"
    assert emu.faults[0]["count"] == 0


def test_call_log(emu: Emulator, sm: Any, make_model: Callable[..., str]) -> None:
    before = time.time()
    make_model("m")
    error_of(sm.describe_model, ModelName="nope")
    calls = emu.calls
    assert [(c.operation, c.name, c.outcome) for c in calls] == [
        ("CreateModel", "m", "ok"),
        ("DescribeModel", "nope", "ValidationException"),
    ]
    assert before <= calls[0].time <= calls[1].time <= time.time()
    assert emu.calls_to("DescribeModel", "NOPE") == [calls[1]]
    # Each call keeps the request body as it arrived, refused ones included.
    assert calls[0].request is not None and calls[0].request["ModelName"] == "m"
    assert calls[1].request == {"ModelName": "nope"}
    emu.clear_calls()
    assert emu.calls == []


def test_reset_forgets_everything(emu: Emulator, sm: Any, deploy: Callable[..., None]) -> None:
    deploy("ep")
    emu.throttle(count=5)
    emu.reset()
    assert emu.faults == []
    assert emu.calls == []
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_models()["Models"] == []


def test_reset_returns_to_the_delays_the_emulator_was_started_with() -> None:
    """Delays changed at run time are forgotten; the ones given at start are kept (a user who started
    ``mce-emulator --delay 0.2`` does not expect a reset to bring back the class default)."""
    with Emulator(delay=0.2, delete_delay=0.3, deployment_time_scale=0.5) as emu:
        started = emu.delays.to_dict()
        assert started == {"create": 0.2, "update": 0.2, "delete": 0.3, "deploymentTimeScale": 0.5}
        emu.set_delay(5, update=7, deployment_time_scale=2)
        answer = admin(emu, "POST", "/config", {"createDelay": 9, "deploymentTimeScale": 3})[1]
        assert answer["delays"]["create"] == 9
        assert answer["delays"]["deploymentTimeScale"] == 3
        emu.reset()
        assert emu.delays.to_dict() == started
        emu.set_delay(4)
        assert admin(emu, "POST", "/reset")[0] == 200
        assert admin(emu, "GET", "/health")[1]["delays"] == started


def test_reset_restarts_the_seeded_random_choices() -> None:
    with Emulator(delay=0, seed=11) as emu:

        def pattern() -> list[str]:
            emu.throttle(0.5, operations=["ListModels"])
            for _ in range(20):
                with contextlib.suppress(ServiceError):
                    emu.control("ListModels", {"MaxResults": 5})
            return [c.outcome for c in emu.calls_to("ListModels")]

        first = pattern()
        assert set(first) == {"ok", "ThrottlingException"}
        emu.reset()
        assert pattern() == first


def test_admin_api(emu: Emulator, sm: Any, deploy: Callable[..., None]) -> None:
    status, health = admin(emu, "GET", "/health")
    assert (status, health["account"], health["region"]) == (200, "123456789012", "us-east-1")

    status, answer = admin(
        emu, "POST", "/faults", {"kind": "throttle", "count": 1, "operations": ["ListModels"]}
    )
    assert status == 200
    fault_id = answer["faults"][0]["id"]
    assert admin(emu, "GET", "/faults")[1]["faults"][0]["kind"] == "throttle"
    assert error_of(sm.list_models)["Error"]["Code"] == "ThrottlingException"
    sm.list_models()
    assert admin(emu, "DELETE", f"/faults/{fault_id}")[0] == 200

    admin(
        emu,
        "POST",
        "/faults",
        [{"kind": "server_error", "status": 503, "count": 1}, {"kind": "latency", "seconds": 0}],
    )
    assert error_of(sm.list_models)["Error"]["Code"] == "ServiceUnavailable"
    assert admin(emu, "DELETE", "/faults")[0] == 200

    status, answer = admin(emu, "POST", "/faults", {"kind": "deny", "operations": "ListModels"})
    assert (status, answer["faults"][0]["count"], answer["faults"][0]["operations"]) == (
        200,
        None,
        ["ListModels"],
    )
    denied = error_of(sm.list_models)["Error"]
    assert denied["Code"] == "AccessDeniedException"
    assert "sagemaker:ListModels" in denied["Message"]
    sm.list_endpoints()
    assert admin(emu, "DELETE", "/faults")[0] == 200
    assert admin(emu, "GET", "/faults")[1] == {"faults": []}

    admin(emu, "POST", "/faults", {"kind": "fail_create", "endpoint": "doomed", "reason": "No capacity."})
    deploy("doomed", wait=False)
    deploy("fine")
    described = sm.describe_endpoint(EndpointName="doomed")
    assert (described["EndpointStatus"], described["FailureReason"]) == ("Failed", "No capacity.")

    status, state = admin(
        emu, "POST", "/state", {"endpoint": "fine", "status": "SystemUpdating", "duration": 0.1}
    )
    assert state["endpoints"]["fine"]["status"] == "SystemUpdating"
    assert sm.describe_endpoint(EndpointName="fine")["EndpointStatus"] == "SystemUpdating"
    time.sleep(0.15)
    assert sm.describe_endpoint(EndpointName="fine")["EndpointStatus"] == "InService"
    admin(emu, "POST", "/state", {"endpoint": "fine", "status": "Failed", "failureReason": "Gone wrong."})
    assert sm.describe_endpoint(EndpointName="fine")["FailureReason"] == "Gone wrong."
    admin(emu, "POST", "/state", {"endpoint": "fine", "delete": True})
    assert error_of(sm.describe_endpoint, EndpointName="fine")["Error"]["Code"] == "ValidationException"
    assert admin(emu, "POST", "/state", {"endpoint": "nope", "status": "Failed"})[0] == 400

    status, calls = admin(emu, "GET", "/calls?operation=DescribeEndpoint&name=doomed")
    assert status == 200
    assert calls["calls"] == [
        {
            "operation": "DescribeEndpoint",
            "name": "doomed",
            "time": calls["calls"][0]["time"],
            "outcome": "ok",
            "request": {"EndpointName": "doomed"},
        }
    ]

    assert admin(emu, "POST", "/config", {"delay": 0.01})[1]["delays"] == {
        "create": 0.01,
        "update": 0.01,
        "delete": 0.01,
        "deploymentTimeScale": 1.0,
    }
    assert admin(emu, "POST", "/reset")[0] == 200
    assert admin(emu, "GET", "/state")[1] == {
        "models": [],
        "endpointConfigs": [],
        "endpoints": {},
        "scalableTargets": {},
    }
    assert admin(emu, "GET", "/calls")[1] == {"calls": []}


def test_admin_api_refuses_nonsense(emu: Emulator) -> None:
    assert admin(emu, "POST", "/faults", {"kind": "meteor"})[0] == 400
    assert admin(emu, "POST", "/faults", {"kind": "throttle"})[0] == 400  # neither rate nor count
    assert admin(emu, "POST", "/faults", {"kind": "server_error", "count": 1, "status": 418})[0] == 400
    assert admin(emu, "POST", "/faults", {"kind": "throttle", "rate": 2})[0] == 400
    assert admin(emu, "POST", "/faults", {"kind": "deny", "count": -1})[0] == 400
    assert admin(emu, "POST", "/config", {"delay": -1})[0] == 400
    assert admin(emu, "POST", "/state", {"endpoint": "x", "status": "Bogus"})[0] == 400
    assert admin(emu, "GET", "/nothing")[0] == 404
    assert admin(emu, "DELETE", "/faults/999")[0] == 400


def test_runtime_faults_are_opt_in(emu: Emulator, deploy: Callable[..., None], runtime: Any) -> None:
    deploy("ep", "a", "b")
    emu.throttle(1.0)  # control plane only
    runtime.invoke_endpoint(EndpointName="ep", Body=b"{}", TargetContainerHostname="a")
    emu.clear_faults()
    emu.server_error(500, count=1, operations=["InvokeEndpoint"])
    response = error_of(runtime.invoke_endpoint, EndpointName="ep", Body=b"{}", TargetContainerHostname="a")
    assert response["Error"]["Code"] == "InternalFailure"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
