"""Issue 13's items 1-4 and 7 on a real kube-apiserver: the operator (real kopf, in a thread) talks to the
apiserver through a fault proxy that can refuse chosen requests, and to the SageMaker emulator.

Item 7 needs a rename the CRD's CEL rule forbids: it installs, for that test only, the CRD without its
transition rules — as an older CRD, or one applied with the rules stripped, would be.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from conftest import CRD_NAME, Kubectl

from mce_operator import api, core, crdgen, handlers
from mce_operator.emulator import Emulator
from mce_operator.sagemaker import SageMaker, SageMakerSettings
from mce_operator.testkit.client import KubeClient
from mce_operator.testkit.controlplane import ControlPlane
from mce_operator.testkit.fault_proxy import FaultProxy
from mce_operator.testkit.kube import kopf_peering_crds
from mce_operator.testkit.operator_thread import OperatorThread
from waiting import wait

pytestmark = pytest.mark.cluster

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "cluster", "aws_secret_access_key": "cluster", "region_name": REGION}
ROLE = "arn:aws:iam::123456789012:role/sagemaker-cluster"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/{}:1.0"
TIMING = core.Timing(busy=0.3, steady=1.5)


def manifest(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "endpointName": f"c-{name}",
        "executionRoleArn": ROLE,
        "mode": "Direct",
        "containers": [
            {"containerHostname": "features", "image": IMAGE.format("features")},
            {"containerHostname": "scorer", "image": IMAGE.format("scorer")},
        ],
        "instanceType": "ml.m5.large",
    }
    body.update(spec)
    return {
        "apiVersion": f"{api.GROUP}/{api.VERSION}",
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


class World:
    """The apiserver (through the proxy, for the operator), the emulator, and operators on request."""

    def __init__(self, plane: ControlPlane, proxy: FaultProxy, emulator: Emulator, namespace: str) -> None:
        self.plane, self.proxy, self.emulator, self.namespace = plane, proxy, emulator, namespace
        self.kube: KubeClient = plane.client()
        self.sm = boto3.client("sagemaker", endpoint_url=emulator.url, **CREDENTIALS)
        self.operators: list[OperatorThread] = []

    def start_operator(self, *, peering: str | None = None, priority: int | None = None) -> OperatorThread:
        settings = SageMakerSettings(region=REGION, endpoint_url=self.emulator.url, calls_per_second=0)
        sagemaker = SageMaker(settings, session=boto3.session.Session(**CREDENTIALS))
        connection = {"server": self.proxy.url, "token": self.plane.admin_token}
        config = handlers.OperatorConfig(
            timing=TIMING, connection=connection, peering=peering, peering_priority=priority
        )

        def factory(stop_flag: threading.Event, ready_flag: threading.Event) -> Any:
            return handlers.operator(
                sagemaker=sagemaker,
                config=config,
                namespaces=[self.namespace],
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )

        thread = OperatorThread(factory, startup_timeout=30, shutdown_timeout=30)
        self.operators.append(thread)
        return thread.start()

    def close(self) -> None:
        for thread in self.operators:
            if thread.alive:
                thread.stop()
        self.sm.close()

    def find(self, name: str) -> dict[str, Any] | None:
        return self.kube.find(api.PLURAL, self.namespace, name)

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.kube.patch(api.PLURAL, self.namespace, name, patch)

    def ready(self, name: str, timeout: float = 30) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            obj = self.find(name)
            status = (obj or {}).get("status") or {}
            cond = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
            generation = (obj or {}).get("metadata", {}).get("generation")
            ok = cond.get("status") == "True" and cond.get("observedGeneration") == generation
            return obj if ok and status.get("observedGeneration") == generation else None

        result: dict[str, Any] = wait(f"{name} Ready", check, timeout, lambda: self.find(name))
        return result

    def gone(self, name: str, timeout: float = 30) -> None:
        wait(f"{name} deleted", lambda: self.find(name) is None, timeout, lambda: self.find(name))

    def calls(self, name: str, operation: str) -> list[Any]:
        return [c for c in self.emulator.calls if c.operation == operation and c.name and name in c.name]

    def left(self, prefix: str) -> list[str]:
        endpoints = self.sm.list_endpoints(NameContains=prefix)["Endpoints"]
        configs = self.sm.list_endpoint_configs(NameContains=prefix)["EndpointConfigs"]
        models = self.sm.list_models(NameContains=prefix)["Models"]
        return (
            [e["EndpointName"] for e in endpoints]
            + [c["EndpointConfigName"] for c in configs]
            + [m["ModelName"] for m in models]
        )


@pytest.fixture
def world(plane: ControlPlane, crd_applied: str, namespace: str) -> Iterator[World]:
    with (
        FaultProxy(plane.url, ca_path=plane.ca_path) as proxy,
        Emulator(delay=0.3, region=REGION) as emulator,
    ):
        world = World(plane, proxy, emulator, namespace)
        try:
            yield world
        finally:
            world.close()


def test_1_a_change_reverted_while_sagemaker_updates_is_followed(world: World) -> None:
    world.start_operator()
    world.kube.create(manifest(world.namespace, "revert"))
    first = world.ready("revert")["status"]["endpointConfigName"]
    world.patch("revert", {"spec": {"mode": "Serial"}})
    wait("UpdateEndpoint to Serial", lambda: world.calls("c-revert", "UpdateEndpoint"))
    world.patch("revert", {"spec": {"mode": "Direct"}})
    obj = world.ready("revert")
    assert obj["metadata"]["generation"] == 3
    assert obj["status"]["endpointConfigName"] == first
    assert world.sm.describe_endpoint(EndpointName="c-revert")["EndpointConfigName"] == first


def test_2_conflicts_on_the_objects_writes_during_creation_do_not_strand_it(world: World) -> None:
    world.start_operator()
    world.kube.create(manifest(world.namespace, "conflict"))
    wait("CreateEndpoint", lambda: world.calls("c-conflict", "CreateEndpoint"))
    fault = world.proxy.inject("PATCH", 409, plural=api.PLURAL, name="conflict", times=3)
    world.ready("conflict")
    assert fault.hits == 3


def test_3_conflicts_during_deletion_do_not_keep_the_finalizer(world: World) -> None:
    world.start_operator()
    world.kube.create(manifest(world.namespace, "delconflict"))
    world.ready("delconflict")
    world.kube.delete(api.PLURAL, world.namespace, "delconflict")
    wait("DeleteEndpoint", lambda: world.calls("c-delconflict", "DeleteEndpoint"))
    fault = world.proxy.inject("PATCH", 409, plural=api.PLURAL, name="delconflict", times=3)
    world.gone("delconflict")
    assert fault.hits >= 1
    assert world.left("c-delconflict") == []


def test_4_two_replicas_with_peering_one_acts_and_the_other_takes_over(world: World) -> None:
    for crd in kopf_peering_crds():
        if world.kube.find("customresourcedefinitions", None, crd["metadata"]["name"]) is None:
            world.kube.create(crd)
    for crd in kopf_peering_crds():
        wait(
            f"{crd['metadata']['name']} Established",
            lambda crd=crd: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (
                    world.kube.get("customresourcedefinitions", None, crd["metadata"]["name"]).get("status")
                    or {}
                ).get("conditions", [])
            ),
        )
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "mce"}}
    wait("the KopfPeering resource served", lambda: _try_create(world.kube, peering, world.namespace))
    low = world.start_operator(peering="mce", priority=10)
    high = world.start_operator(peering="mce", priority=20)
    wait(
        "both replicas in the peering object",
        lambda: len(world.kube.get("kopfpeerings", world.namespace, "mce").get("status") or {}) == 2,
    )
    time.sleep(1.0)
    world.kube.create(manifest(world.namespace, "ha"))
    world.ready("ha")
    creates = [
        c.operation for c in world.emulator.calls if c.operation.startswith("Create") and c.outcome == "ok"
    ]
    assert creates == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"], creates
    high.stop()
    world.patch("ha", {"spec": {"mode": "Serial"}})
    obj = world.ready("ha", timeout=60)
    assert obj["metadata"]["generation"] == 2
    assert low.alive
    assert len(world.calls("c-ha", "UpdateEndpoint")) == 1


def _try_create(kube: KubeClient, obj: dict[str, Any], namespace: str) -> bool:
    try:
        kube.create(obj, namespace)
    except Exception:
        return False
    return True


def test_7_deleting_after_a_bypassed_rename_deletes_the_managed_endpoint(
    world: World, kubectl: Kubectl
) -> None:
    world.start_operator()
    world.kube.create(manifest(world.namespace, "renamed"))
    world.ready("renamed")
    # The CEL rule refuses the rename on this apiserver, as it should:
    refused = kubectl(
        "patch",
        "mce",
        "renamed",
        "-n",
        world.namespace,
        "--type=merge",
        "-p",
        '{"spec":{"endpointName":"c-elsewhere"}}',
        check=False,
    )
    assert refused.returncode != 0 and "immutable" in refused.stderr.lower(), refused.stderr
    # ... unless the CRD lacks it (an older CRD): then the operator must still not orphan the endpoint.
    crd = world.kube.get("customresourcedefinitions", None, CRD_NAME)
    original = copy.deepcopy(crd)
    _strip_transition_rules(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    world.kube.replace(crd)
    try:
        wait("the rename accepted", lambda: _try_rename(world))
        wait(
            "Degraded InvalidSpec",
            lambda: any(
                c["type"] == "Degraded" and c["status"] == "True" and c["reason"] == "InvalidSpec"
                for c in ((world.find("renamed") or {}).get("status") or {}).get("conditions", [])
            ),
        )
        world.kube.delete(api.PLURAL, world.namespace, "renamed")
        world.gone("renamed")
        assert world.left("c-renamed") == []
        assert world.calls("c-elsewhere", "CreateEndpoint") == []
    finally:
        current = world.kube.get("customresourcedefinitions", None, CRD_NAME)
        original["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        world.kube.replace(original)


def _strip_transition_rules(schema: dict[str, Any]) -> None:
    rules = schema.get("x-kubernetes-validations")
    if rules:
        kept = [rule for rule in rules if "oldSelf" not in rule.get("rule", "")]
        if kept:
            schema["x-kubernetes-validations"] = kept
        else:
            del schema["x-kubernetes-validations"]
    for child in (schema.get("properties") or {}).values():
        _strip_transition_rules(child)
    if isinstance(schema.get("items"), dict):
        _strip_transition_rules(schema["items"])


def _try_rename(world: World) -> bool:
    try:
        world.patch("renamed", {"spec": {"endpointName": "c-elsewhere"}})
    except Exception:
        return False
    return True


# The CRD the models generate is what the fixture applied; the test above restores it.
assert crdgen.build_crd()["metadata"]["name"] == CRD_NAME
