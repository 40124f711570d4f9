"""The end-to-end harness (helpers; fixtures in conftest.py): the real operator between two emulators.

Every test gets its own Kubernetes API, its own emulated SageMaker and its own operator (all over HTTP on
ephemeral ports), so no test can see another's objects, faults or call log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import boto3

from mce_operator import api, core, handlers
from mce_operator.emulator import Emulator
from mce_operator.emulator.service import Call
from mce_operator.sagemaker import SageMaker, SageMakerSettings
from mce_operator.testkit.kube_server import KubeServer
from mce_operator.testkit.operator_thread import OperatorThread
from waiting import wait

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "e2e", "aws_secret_access_key": "e2e", "region_name": REGION}
NAMESPACE = "ml"
FINALIZER = "sagemaker.mce.dev/finalizer"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-e2e"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/{}:1.0"
MUTATING = ("Create", "Update", "Delete", "AddTags")
TIMING = core.Timing(busy=0.3, steady=1.5)

# kopf cannot install signal handlers outside the main thread, and logs each wait as an error.
logging.getLogger("kopf._core.reactor.running").setLevel(logging.ERROR)


def manifest(name: str, *, mode: str = "Direct", **spec: Any) -> dict[str, Any]:
    """A two-container MultiContainerEndpoint whose endpoint is named ``e2e-<name>``."""
    body: dict[str, Any] = {
        "endpointName": f"e2e-{name}",
        "executionRoleArn": ROLE,
        "mode": mode,
        "containers": [
            {"containerHostname": "features", "image": IMAGE.format("features")},
            {"containerHostname": "scorer", "image": IMAGE.format("scorer")},
        ],
        "instanceType": "ml.m5.large",
        "tags": {"team": "risk"},
    }
    body.update(spec)
    return {
        "apiVersion": f"{api.GROUP}/{api.VERSION}",
        "kind": "MultiContainerEndpoint",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": body,
    }


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def is_ready(obj: dict[str, Any]) -> bool:
    """Ready as ``kubectl wait --for=condition=Ready`` sees it: True, and about the current generation."""
    generation = obj["metadata"].get("generation")
    ready = condition(obj, "Ready")
    return (
        ready.get("status") == "True"
        and ready.get("observedGeneration") == generation
        and (obj.get("status") or {}).get("observedGeneration") == generation
    )


class _ClosingSession:
    """A boto3 session that remembers the clients it made, so that the harness can close them."""

    def __init__(self, clients: list[Any]) -> None:
        self._session = boto3.session.Session(**CREDENTIALS)
        self._clients = clients

    def client(self, *args: Any, **kwargs: Any) -> Any:
        client = self._session.client(*args, **kwargs)
        self._clients.append(client)
        return client


class Harness:
    def __init__(self, kube: KubeServer, emulator: Emulator) -> None:
        self.kube = kube
        self.emulator = emulator
        self.sm = boto3.client("sagemaker", endpoint_url=emulator.url, **CREDENTIALS)
        self.scaling = boto3.client("application-autoscaling", endpoint_url=emulator.url, **CREDENTIALS)
        self.operators: list[OperatorThread] = []
        self.clients: list[Any] = [self.sm, self.scaling]

    # --- the operator -----------------------------------------------------------------------------

    def start_operator(
        self, timing: core.Timing = TIMING, *, peering: str | None = None, priority: int | None = None
    ) -> OperatorThread:
        """A fresh operator: its own SageMaker adapter (boto3 session, clients) and its own memo."""
        session = _ClosingSession(self.clients)
        # No client-side rate limit: it only slows the tests (and the stopping of a busy operator).
        settings = SageMakerSettings(region=REGION, endpoint_url=self.emulator.url, calls_per_second=0)
        sagemaker = SageMaker(settings, session=session)
        config = handlers.OperatorConfig(
            timing=timing,
            connection=self.kube.connection_info(NAMESPACE),
            peering=peering,
            peering_priority=priority,
        )

        def factory(stop_flag: threading.Event, ready_flag: threading.Event) -> Any:
            return handlers.operator(
                sagemaker=sagemaker, config=config, stop_flag=stop_flag, ready_flag=ready_flag
            )

        thread = OperatorThread(factory, startup_timeout=20, shutdown_timeout=20)
        self.operators.append(thread)
        return thread.start()

    def close(self) -> None:
        """Stop the operators, then close every boto3 client: a kept-alive connection slows the emulator's
        stop by seconds."""
        try:
            for thread in self.operators:
                if thread.alive:
                    thread.stop()
        finally:
            for client in self.clients:
                client.close()

    # --- Kubernetes -------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.kube.create(body)

    def get(self, name: str) -> dict[str, Any]:
        return self.kube.get(api.PLURAL, NAMESPACE, name)

    def find(self, name: str) -> dict[str, Any] | None:
        return self.kube.find(api.PLURAL, NAMESPACE, name)

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.kube.patch(api.PLURAL, NAMESPACE, name, patch)

    def delete(self, name: str) -> dict[str, Any]:
        return self.kube.delete(api.PLURAL, NAMESPACE, name)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.kube.events(NAMESPACE)
            if (e.get("involvedObject") or e.get("regarding") or {}).get("name") == name
        ]

    def reasons(self, name: str) -> list[str]:
        return [str(e.get("reason")) for e in self.events(name)]

    def wait_ready(self, name: str, *, config_not: str | None = None, timeout: float = 20) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            obj = self.find(name)
            if obj and is_ready(obj) and obj["status"].get("endpointConfigName") != config_not:
                return obj
            return None

        result: dict[str, Any] = wait(
            f"{name} to be Ready (config not {config_not})", check, timeout, self._show(name)
        )
        return result

    def _show(self, name: str) -> Callable[[], str]:
        return lambda: f"object: {self.find(name)!r}\ncalls: {self.mutations(f'e2e-{name}')}"

    # --- SageMaker --------------------------------------------------------------------------------

    def calls(self, prefix: str, operation: str | None = None) -> list[Call]:
        return [
            c
            for c in self.emulator.calls
            if c.name and prefix in c.name and (operation is None or c.operation == operation)
        ]

    def mutations(self, prefix: str) -> list[tuple[str, str | None, str]]:
        return [
            (c.operation, c.name, c.outcome) for c in self.calls(prefix) if c.operation.startswith(MUTATING)
        ]

    def left_in_sagemaker(self, prefix: str) -> dict[str, list[str]]:
        return {
            "endpoints": [
                e["EndpointName"]
                for e in self.sm.list_endpoints(NameContains=prefix)["Endpoints"]
                if e["EndpointName"].startswith(prefix)
            ],
            "configs": [
                c["EndpointConfigName"]
                for c in self.sm.list_endpoint_configs(NameContains=prefix)["EndpointConfigs"]
                if c["EndpointConfigName"].startswith(prefix)
            ],
            "models": [
                m["ModelName"]
                for m in self.sm.list_models(NameContains=prefix)["Models"]
                if m["ModelName"].startswith(prefix)
            ],
        }

    def tags(self, arn: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.sm.list_tags(ResourceArn=arn)["Tags"]}
