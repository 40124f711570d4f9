"""Fixtures for the emulator's tests: a fresh emulator per test and boto3 clients talking to it over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.config
import pytest

from mce_operator.emulator import Emulator

ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:1.0"


def _client(emu: Emulator, service: str = "sagemaker", **config: Any) -> Any:
    """A boto3 client of the emulator; no retries unless asked, so errors show at once."""
    config.setdefault("retries", {"mode": "standard", "total_max_attempts": 1})
    return boto3.client(
        service,
        endpoint_url=emu.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=botocore.config.Config(**config),
    )


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(delay=0.05) as emulator:
        yield emulator


@pytest.fixture
def sm(emu: Emulator) -> Any:
    return _client(emu)


@pytest.fixture
def runtime(emu: Emulator) -> Any:
    return _client(emu, "sagemaker-runtime")


@pytest.fixture
def new_client(emu: Emulator) -> Callable[..., Any]:
    """``new_client(service="sagemaker", **botocore_config)``: another client of the test's emulator."""

    def make(service: str = "sagemaker", **config: Any) -> Any:
        return _client(emu, service, **config)

    return make


def _containers(*hostnames: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index, hostname in enumerate(hostnames, start=1):
        container: dict[str, Any] = {"Image": IMAGE.format(name=hostname or f"image{index}")}
        if hostname:
            container["ContainerHostname"] = hostname
        out.append(container)
    return out


@pytest.fixture
def containers() -> Callable[..., list[dict[str, Any]]]:
    """``containers("a", "b")``: container definitions with these hostnames (None: no hostname)."""
    return _containers


@pytest.fixture
def make_model(sm: Any) -> Callable[..., str]:
    def make(name: str, *hostnames: str | None, mode: str = "Direct", **extra: Any) -> str:
        arn: str = sm.create_model(
            ModelName=name,
            Containers=_containers(*(hostnames or ("a", "b"))),
            InferenceExecutionConfig={"Mode": mode},
            ExecutionRoleArn=ROLE,
            **extra,
        )["ModelArn"]
        return arn

    return make


@pytest.fixture
def make_config(sm: Any) -> Callable[..., str]:
    def make(name: str, model: str, **extra: Any) -> str:
        arn: str = sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "main",
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
            **extra,
        )["EndpointConfigArn"]
        return arn

    return make


@pytest.fixture
def deploy(sm: Any, make_model: Callable[..., str], make_config: Callable[..., str]) -> Callable[..., None]:
    """Create a model, a config and an endpoint named after ``name`` and wait until it is InService."""

    def make(name: str, *hostnames: str | None, mode: str = "Direct", wait: bool = True) -> None:
        make_model(f"{name}-model", *hostnames, mode=mode)
        make_config(f"{name}-config", f"{name}-model")
        sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
        if wait:
            _wait_in_service(sm, name)

    return make


def _wait_in_service(sm: Any, name: str) -> None:
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.02, "MaxAttempts": 250}
    )


@pytest.fixture
def wait_in_service(sm: Any) -> Callable[[str], None]:
    return lambda name: _wait_in_service(sm, name)


@pytest.fixture
def wait_until() -> Callable[..., None]:
    return _wait_until


def _wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
