"""``mce-operator demo``: the whole job on embedded defaults, with no cluster and no AWS account.

An in-memory Kubernetes API and the SageMaker emulator run in this process; the real operator (kopf,
boto3, HTTP) runs between them. The demo applies ``examples/direct.yaml``, waits for Ready, invokes each
container, switches the mode to Serial, waits again, invokes the pipeline, deletes the object and checks
that the endpoint, models and configs are gone. It exits 0 only if every step happened.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import yaml

from mce_operator import api, core, crdgen, handlers
from mce_operator.emulator.server import Emulator
from mce_operator.sagemaker import SageMaker, SageMakerSettings
from mce_operator.testkit.kube_server import KubeServer
from mce_operator.testkit.operator_thread import OperatorThread

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "demo", "aws_secret_access_key": "demo", "region_name": REGION}
MUTATING = ("Create", "Update", "Delete", "Add")


class DemoFailed(Exception):
    pass


def _example(path: str | None) -> dict[str, Any]:
    candidates = [Path(path)] if path else [Path.cwd() / "examples" / "direct.yaml"]
    candidates.append(Path(__file__).resolve().parents[2] / "examples" / "direct.yaml")
    for candidate in candidates:
        if candidate.is_file():
            loaded: dict[str, Any] = yaml.safe_load(candidate.read_text())
            return loaded
    packaged = resources.files("mce_operator").joinpath("examples/direct.yaml")
    data: dict[str, Any] = yaml.safe_load(packaged.read_text())
    return data


ROW = "{:<8} {:<7} {:<11} {:<10} {:<6} {:<12} {}"


def _row(obj: dict[str, Any]) -> str:
    """The object as ``kubectl get mce`` shows it, plus which generation the status describes."""
    status = obj.get("status") or {}
    ready = next((c["status"] for c in status.get("conditions", []) if c.get("type") == "Ready"), "")
    observed = f"{status.get('observedGeneration') or '-'}/{obj['metadata'].get('generation')}"
    return ROW.format(
        obj["metadata"]["name"],
        obj["spec"].get("mode", "Serial"),
        status.get("containerCount") or "",
        status.get("endpointStatus") or "",
        ready,
        status.get("endpointName") or "",
        observed,
    )


class _Printer:
    """Prints, as they happen, the SageMaker calls that change something and the object's status row."""

    def __init__(self, emulator: Emulator, kube: KubeServer, namespace: str, name: str) -> None:
        self.emulator, self.kube, self.namespace, self.name = emulator, kube, namespace, name
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.lock = threading.Lock()
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        with self.lock:
            print(f"[{time.monotonic() - self.start:5.1f}s] {text}", flush=True)

    def _loop(self) -> None:
        seen, last_row = 0, ""
        while not self.stop.wait(0.05):
            calls = self.emulator.calls
            for call in calls[seen:]:
                if call.operation.startswith(MUTATING):
                    self.say(f"  sagemaker  {call.operation:<22} {call.name or '':<28} {call.outcome}")
            seen = len(calls)
            obj = self.kube.find(api.PLURAL, self.namespace, self.name)
            row = _row(obj) if obj else ""
            if row and row != last_row:
                self.say(f"  kubectl    {row}")
                last_row = row


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")


def is_ready(obj: dict[str, Any] | None, config_not: str | None = None) -> bool:
    """Ready as `kubectl wait --for=condition=Ready` means it: for the object's current generation
    (and, with ``config_not``, on another endpoint config than that one)."""
    if not obj:
        return False
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" and c.get("observedGeneration") == generation
        for c in status.get("conditions", [])
    )
    fresh = status.get("observedGeneration") == generation
    return fresh and ready and status.get("endpointConfigName") != config_not


def _ready(kube: KubeServer, namespace: str, name: str, config_not: str | None = None) -> Any:
    obj = kube.find(api.PLURAL, namespace, name)
    return obj if is_ready(obj, config_not) else None


def main(*, delay: float = 1.0, example: str | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    # kopf warns that it cannot install signal handlers outside the main thread: expected here.
    logging.getLogger("kopf._core.reactor.running").setLevel(logging.ERROR)
    manifest = _example(example)
    # Deleting the object must delete the endpoint for the demo to show it.
    manifest["spec"]["deletionPolicy"] = "Delete"
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    print(
        "mce-operator demo: an in-memory Kubernetes API and an emulated SageMaker, the real operator between."
    )
    with (
        Emulator(delay=delay, region=REGION) as emulator,
        KubeServer(crds=[crdgen.build_crd()], namespaces=[namespace]) as kube,
    ):
        session = boto3.session.Session(**CREDENTIALS)
        sagemaker = SageMaker(SageMakerSettings(region=REGION, endpoint_url=emulator.url), session=session)
        config = handlers.OperatorConfig(
            timing=core.Timing(busy=0.5, steady=10.0), connection=kube.connection_info(namespace)
        )
        printer = _Printer(emulator, kube, namespace, name)

        def factory(stop_flag: threading.Event, ready_flag: threading.Event) -> Any:
            return handlers.operator(
                sagemaker=sagemaker, config=config, stop_flag=stop_flag, ready_flag=ready_flag
            )

        try:
            with OperatorThread(factory, startup_timeout=20):
                printer.say(
                    "  kubectl    "
                    + ROW.format("NAME", "MODE", "CONTAINERS", "STATUS", "READY", "ENDPOINT", "OBSERVED/GEN")
                )
                printer.thread.start()
                _steps(printer, kube, emulator, manifest)
        except DemoFailed as failure:
            printer.say(f"FAILED: {failure}")
            return 1
        finally:
            printer.stop.set()
    print("demo: every step happened.")
    return 0


def _steps(printer: _Printer, kube: KubeServer, emulator: Emulator, manifest: dict[str, Any]) -> None:
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    runtime = boto3.client("sagemaker-runtime", endpoint_url=emulator.url, **CREDENTIALS)
    control = boto3.client("sagemaker", endpoint_url=emulator.url, **CREDENTIALS)
    say = printer.say

    say(
        f"1. kubectl apply -f examples/direct.yaml   ({name}: Direct mode, "
        f"{len(manifest['spec']['containers'])} containers, deletionPolicy Delete for the demo)"
    )
    kube.create(manifest)
    obj = _wait("Ready", lambda: _ready(kube, namespace, name), 60)
    endpoint, direct_config = obj["status"]["endpointName"], obj["status"]["endpointConfigName"]
    say(f"   Ready: endpoint {endpoint} serves {direct_config}")

    say("2. invoke each container (Direct: TargetContainerHostname picks one)")
    for container in manifest["spec"]["containers"]:
        host = container["containerHostname"]
        answer = runtime.invoke_endpoint(
            EndpointName=endpoint,
            TargetContainerHostname=host,
            ContentType="application/json",
            Body=b'{"amount": 42}',
        )
        body = json.loads(answer["Body"].read())
        if body.get("container") != host:
            raise DemoFailed(f"container {host} answered as {body.get('container')}")
        say(f"   {host:<10} -> {json.dumps(body)}")

    say("3. kubectl patch: spec.mode Direct -> Serial (a new model, a new config, UpdateEndpoint)")
    kube.patch(api.PLURAL, namespace, name, {"spec": {"mode": "Serial"}})
    obj = _wait(
        "Ready on the Serial config", lambda: _ready(kube, namespace, name, config_not=direct_config), 60
    )
    serial_config = obj["status"]["endpointConfigName"]
    _wait(
        "the superseded Direct config to be deleted",
        lambda: not control.list_endpoint_configs(NameContains=direct_config)["EndpointConfigs"],
        30,
    )
    model = control.describe_model(ModelName=obj["status"]["modelName"])
    say(
        f"   Ready: {endpoint} serves {serial_config} (mode {model['InferenceExecutionConfig']['Mode']});"
        " the Direct model and config are deleted"
    )

    say("4. invoke the pipeline (Serial: each container's output feeds the next)")
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Body=b'{"amount": 42}'
    )
    body = json.loads(answer["Body"].read())
    order, node = [], body
    while isinstance(node, dict) and "container" in node:
        order.append(node["container"])
        node = node.get("input")
    expected = [c["containerHostname"] for c in manifest["spec"]["containers"]]
    if list(reversed(order)) != expected:
        raise DemoFailed(f"pipeline ran {list(reversed(order))}, expected {expected}")
    say(f"   ran {' -> '.join(reversed(order))}: {json.dumps(body)}")

    say(f"5. kubectl delete mce {name}")
    kube.delete(api.PLURAL, namespace, name)
    _wait(
        "the object to be gone (finalizer released)",
        lambda: kube.find(api.PLURAL, namespace, name) is None,
        60,
    )
    prefix = endpoint
    left = {
        "endpoints": [e["EndpointName"] for e in control.list_endpoints(NameContains=prefix)["Endpoints"]],
        "configs": [
            c["EndpointConfigName"]
            for c in control.list_endpoint_configs(NameContains=prefix)["EndpointConfigs"]
        ],
        "models": [m["ModelName"] for m in control.list_models(NameContains=prefix)["Models"]],
    }
    if any(left.values()):
        raise DemoFailed(f"SageMaker resources left behind: {left}")
    mutating = [c for c in emulator.calls if c.operation.startswith(MUTATING)]
    say(f"   gone: no endpoint, config or model named {prefix}* is left in SageMaker")
    say(f"   SageMaker calls: {len(emulator.calls)} in all, {len(mutating)} that changed something")
