"""Soak: 20 objects, random spec changes and reverts, random single 409/500 answers to the objects'
writes, and the operator process killed with SIGKILL at random — for a bounded time. Then every object
must be Ready on its last spec, SageMaker must hold exactly what the specs ask for (no orphan, no
duplicate), no model or config may have been deleted while an endpoint served it, and deleting every
object must leave nothing behind.

The operator runs as users run it (``mce-operator run`` in its own process, kubeconfig and
AWS_ENDPOINT_URL_SAGEMAKER), against the in-memory Kubernetes API and the SageMaker emulator. The seed is
printed; set MCE_SOAK_SEED to replay a run, MCE_SOAK_SECONDS to soak longer.
"""

from __future__ import annotations

import copy
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mce_operator import api, core, crdgen
from mce_operator.demo import is_ready
from mce_operator.emulator import Emulator
from mce_operator.testkit.kube_server import KubeServer
from waiting import wait

pytestmark = [pytest.mark.soak, pytest.mark.timeout(420)]

NAMESPACE = "soak"
REGION = "us-east-1"
OBJECTS = 20
SECONDS = float(os.environ.get("MCE_SOAK_SECONDS", "40"))
ROLE = "arn:aws:iam::123456789012:role/sagemaker-soak"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/{}"


def spec(index: int) -> dict[str, Any]:
    return {
        "endpointName": f"soak-{index:02d}",
        "executionRoleArn": ROLE,
        "mode": "Direct",
        "containers": [
            {"containerHostname": "features", "image": IMAGE.format("features:1")},
            {"containerHostname": "scorer", "image": IMAGE.format("scorer:1")},
        ],
        "instanceType": "ml.m5.large",
        "tags": {"team": "soak"},
    }


def mutate(rng: random.Random, current: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """A random change: the mode, an image, the tags, or back to an earlier spec."""
    new = copy.deepcopy(current)
    choice = rng.choice(["mode", "image", "tags", "revert"])
    if choice == "revert" and history:
        return copy.deepcopy(rng.choice(history))
    if choice == "mode":
        new["mode"] = "Serial" if new["mode"] == "Direct" else "Direct"
    elif choice == "image":
        new["containers"][1]["image"] = IMAGE.format(f"scorer:{rng.randint(1, 3)}")
    else:
        new["tags"] = {"team": "soak", "round": str(rng.randint(1, 5))}
    return new


class OperatorProcess:
    """``mce-operator run`` as a child process that can be killed and started again."""

    def __init__(self, kubeconfig: Path, emulator_url: str, log: Path) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "AWS_ENDPOINT_URL_SAGEMAKER": emulator_url,
            "AWS_ACCESS_KEY_ID": "soak",
            "AWS_SECRET_ACCESS_KEY": "soak",
            "AWS_DEFAULT_REGION": REGION,
        }
        self.log = log.open("ab")
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "mce_operator.cli",
            "run",
            "--plain-logs",
            "--liveness",
            "",
            "--metrics-port",
            "0",
        ]
        command += ["--busy-interval", "0.3", "--steady-interval", "3", "--calls-per-second", "0"]
        self.process = subprocess.Popen(command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.kills += 1
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None
        self.log.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[KubeServer, Emulator, OperatorProcess]]:
    with (
        Emulator(delay=0.3, region=REGION) as emulator,
        # kmock rescans every request it keeps for each new one: keep few, or the API itself slows down.
        KubeServer(crds=[crdgen.build_crd()], namespaces=[NAMESPACE], request_history=200) as kube,
    ):
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", NAMESPACE)
        operator = OperatorProcess(kubeconfig, emulator.url, tmp_path / "operator.log")
        operator.start()
        try:
            yield kube, emulator, operator
        finally:
            operator.stop()
            print(f"operator log: {tmp_path / 'operator.log'}")


def test_soak(world: tuple[KubeServer, Emulator, OperatorProcess]) -> None:
    kube, emulator, operator = world
    seed = int(os.environ.get("MCE_SOAK_SEED") or random.SystemRandom().randint(0, 2**32))
    print(f"soak seed: {seed}")
    rng = random.Random(seed)
    specs = {f"obj-{i:02d}": spec(i) for i in range(OBJECTS)}
    history: dict[str, list[dict[str, Any]]] = {name: [] for name in specs}
    for name, body in specs.items():
        kube.create(
            {
                "apiVersion": f"{api.GROUP}/{api.VERSION}",
                "kind": "MultiContainerEndpoint",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": body,
            }
        )

    faults = []
    changes = 0
    deadline = time.monotonic() + SECONDS
    next_kill = time.monotonic() + rng.uniform(4, 10)
    while time.monotonic() < deadline:
        name = rng.choice(sorted(specs))
        roll = rng.random()
        if roll < 0.6:
            history[name].append(specs[name])
            specs[name] = mutate(rng, specs[name], history[name])
            kube.patch(api.PLURAL, NAMESPACE, name, {"spec": {**specs[name], "tags": specs[name]["tags"]}})
            changes += 1
        else:
            status = rng.choice([409, 500])
            # The operator's and kopf's writes only (status, finalizers, annotations), not the soak's own.
            faults.append(
                kube.inject(
                    "PATCH", status, plural=api.PLURAL, name=name, match=lambda data: "spec" not in data
                )
            )
        if time.monotonic() >= next_kill:
            operator.kill()
            time.sleep(rng.uniform(0, 1.5))
            operator.start()
            next_kill = time.monotonic() + rng.uniform(4, 10)
        time.sleep(rng.uniform(0.1, 0.6))

    print(f"changes: {changes}, kills: {operator.kills}, faults met: {sum(f.hits for f in faults)}")
    assert operator.kills >= 1 and changes >= 10

    def all_ready() -> bool:
        objects = kube.list(api.PLURAL, NAMESPACE)
        return len(objects) == len(specs) and all(is_ready(obj) for obj in objects)

    wait("every object Ready on its last spec", all_ready, 120)

    identities = {}
    for name in specs:
        obj = kube.get(api.PLURAL, NAMESPACE, name)
        assert obj["spec"]["mode"] == specs[name]["mode"]
        meta = obj["metadata"]
        identity = core.Identity(NAMESPACE, name, meta["uid"], meta["generation"])
        desired = core.desired_state(api.parse_spec(obj["spec"]), identity)
        identities[name] = desired
        assert obj["status"]["endpointConfigName"] == desired.config_name, name

    snapshot = emulator.snapshot()
    endpoints = {e["EndpointName"]: e for e in emulator_endpoints(emulator)}
    assert sorted(endpoints) == sorted(d.endpoint_name for d in identities.values()), snapshot
    for desired in identities.values():
        described = endpoints[desired.endpoint_name]
        assert described["EndpointStatus"] == "InService"
        assert described["EndpointConfigName"] == desired.config_name
    configs = names(emulator, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName")
    models = names(emulator, "list_models", "Models", "ModelName")
    assert configs == sorted(d.config_name for d in identities.values()), "orphaned or missing configs"
    assert models == sorted(d.model_name for d in identities.values()), "orphaned or missing models"
    assert emulator.deleted_while_served == []

    # Deletion, with one more kill in the middle of it.
    for name in specs:
        kube.delete(api.PLURAL, NAMESPACE, name)
    time.sleep(0.5)
    operator.kill()
    operator.start()
    wait("every object deleted", lambda: all(kube.find(api.PLURAL, NAMESPACE, n) is None for n in specs), 90)
    assert emulator_endpoints(emulator) == []
    assert names(emulator, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName") == []
    assert names(emulator, "list_models", "Models", "ModelName") == []
    assert emulator.deleted_while_served == []


def _client(emulator: Emulator) -> Any:
    import boto3

    return boto3.client(
        "sagemaker",
        endpoint_url=emulator.url,
        region_name=REGION,
        aws_access_key_id="soak",
        aws_secret_access_key="soak",
    )


def emulator_endpoints(emulator: Emulator) -> list[dict[str, Any]]:
    client = _client(emulator)
    try:
        listed = client.list_endpoints(MaxResults=100)["Endpoints"]
        return [client.describe_endpoint(EndpointName=e["EndpointName"]) for e in listed]
    finally:
        client.close()


def names(emulator: Emulator, method: str, key: str, field: str) -> list[str]:
    client = _client(emulator)
    try:
        return sorted(item[field] for item in getattr(client, method)(MaxResults=100)[key])
    finally:
        client.close()
