"""Many clients at once: one lock around the state keeps every answer consistent."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mce_operator.emulator import Emulator

ROLE = "arn:aws:iam::123456789012:role/x"


def test_fifty_endpoints_from_threads(emu: Emulator, new_client: Callable[..., Any]) -> None:
    emu.set_delay(0.1)
    # boto3 clients are thread-safe to use (not to create): share one with a connection per thread.
    sm = new_client(max_pool_connections=50)
    runtime = new_client("sagemaker-runtime", max_pool_connections=50)
    fast = {"Delay": 0.05, "MaxAttempts": 200}

    def lifecycle(i: int) -> Any:
        name = f"ep-{i}"
        sm.create_model(
            ModelName=f"{name}-model",
            Containers=[
                {"Image": "img", "ContainerHostname": "a"},
                {"Image": "img", "ContainerHostname": "b"},
            ],
            InferenceExecutionConfig={"Mode": "Direct"},
            ExecutionRoleArn=ROLE,
        )
        sm.create_endpoint_config(
            EndpointConfigName=f"{name}-config",
            ProductionVariants=[
                {
                    "VariantName": "v",
                    "ModelName": f"{name}-model",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
        sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=fast)
        body = runtime.invoke_endpoint(EndpointName=name, Body=json.dumps(i), TargetContainerHostname="b")[
            "Body"
        ]
        answer = json.loads(body.read())
        sm.delete_endpoint(EndpointName=name)
        sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=fast)
        return answer

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lifecycle, range(50)))

    assert answers == [{"container": "b", "input": i} for i in range(50)]
    assert sm.list_endpoints()["Endpoints"] == []
    assert len(list(sm.get_paginator("list_models").paginate())) == 5
    outcomes = Counter((c.operation, c.outcome) for c in emu.calls)
    assert outcomes[("CreateEndpoint", "ok")] == 50
    assert outcomes[("InvokeEndpoint", "ok")] == 50
    # The only errors are the endpoint_deleted waiters' final "Could not find endpoint".
    errors = {key: n for key, n in outcomes.items() if key[1] != "ok"}
    assert errors == {("DescribeEndpoint", "ValidationException"): 50}


def test_duplicate_creates_race_to_one_winner(emu: Emulator, new_client: Callable[..., Any]) -> None:
    sm = new_client(max_pool_connections=20)

    def create(_: int) -> str:
        try:
            sm.create_model(ModelName="contested", Containers=[{"Image": "img"}])
            return "ok"
        except sm.exceptions.ClientError as error:
            return str(error.response["Error"]["Code"])

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = Counter(pool.map(create, range(20)))
    assert outcomes == {"ok": 1, "ValidationException": 19}
