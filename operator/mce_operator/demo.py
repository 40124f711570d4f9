"""``mce-operator demo``: the whole job on embedded defaults, with no cluster and no AWS account.

An in-memory Kubernetes API and the SageMaker emulator run in this process; the real operator (kopf,
boto3, HTTP) runs between them. The demo applies a manifest (``examples/direct.yaml`` unless
``--example`` names another file or a packaged example), waits for Ready, invokes the endpoint as its
mode allows, changes the spec so that SageMaker needs a new model and config, waits again, invokes
again, deletes the object and checks that the endpoint, models and configs are gone. Every step is
described from what it applies. It exits 0 only if every step happened.

It needs the ``demo`` extra (kmock, behind the in-memory API): ``pip install '.[demo]'``.

With ``--control-plane`` (``make demo-cluster``) the same steps run against a real kube-apiserver + etcd
(``mce_operator.testkit.controlplane``, binaries from ``make controlplane``), and the object's rows are
what the real ``kubectl get mce --watch`` prints.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import yaml

from mce_operator import api, core, crdgen, handlers
from mce_operator.emulator.server import Emulator
from mce_operator.sagemaker import SageMaker, SageMakerSettings
from mce_operator.testkit.client import KubeApiError, KubeClient
from mce_operator.testkit.kube_server import KubeServer
from mce_operator.testkit.operator_thread import OperatorThread

DEFAULT_REGION = "us-east-1"
MUTATING = ("Create", "Update", "Delete", "Add")
# The package that ships examples/ (pyproject maps it there: the files are the repository's, not copies).
EXAMPLES_PACKAGE = "mce_operator.examples"
DEFAULT_EXAMPLE = "direct.yaml"
# Set on the first container when the spec cannot switch mode (Serial without hostnames).
REVISION_VARIABLE = "MCE_DEMO_REVISION"


class DemoFailed(Exception):
    """A step did not happen as it should."""


class BadExample(Exception):
    """The manifest cannot be demonstrated (no such file, not a MultiContainerEndpoint, invalid spec)."""


@dataclass(frozen=True)
class Example:
    # How the steps name it: the path given, or examples/NAME for a packaged example.
    label: str
    manifest: dict[str, Any]


def packaged_examples() -> list[str]:
    files = resources.files(EXAMPLES_PACKAGE)
    return sorted(item.name for item in files.iterdir() if item.name.endswith(".yaml"))


def load_example(choice: str | None) -> Example:
    """A file (any valid MultiContainerEndpoint manifest), else a packaged example named as in the
    repository (``examples/serial.yaml``), by file name (``serial.yaml``) or by stem (``serial``)."""
    choice = choice or DEFAULT_EXAMPLE
    path = Path(choice)
    if path.is_file():
        return Example(choice, _manifest(path.read_text(), choice))
    name = path.name if path.suffix else f"{path.name}.yaml"
    packaged = packaged_examples()
    if name in packaged and path.parent in (Path("."), Path("examples")):
        text = resources.files(EXAMPLES_PACKAGE).joinpath(name).read_text()
        return Example(f"examples/{name}", _manifest(text, f"examples/{name}"))
    raise BadExample(f"{choice}: no such file, nor a packaged example ({', '.join(packaged)})")


def _manifest(text: str, label: str) -> dict[str, Any]:
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise BadExample(f"{label}: not YAML: {error}") from error
    found = [
        d
        for d in documents
        if isinstance(d, dict)
        and d.get("kind") == "MultiContainerEndpoint"
        and d.get("apiVersion") == f"{api.GROUP}/{api.VERSION}"
    ]
    if len(found) != 1:
        raise BadExample(
            f"{label}: expected one MultiContainerEndpoint ({api.GROUP}/{api.VERSION}), found {len(found)}"
        )
    manifest: dict[str, Any] = copy.deepcopy(found[0])
    metadata = manifest.get("metadata") or {}
    if not metadata.get("name"):
        raise BadExample(f"{label}: metadata.name is required")
    metadata.setdefault("namespace", "default")
    manifest["metadata"] = metadata
    try:
        api.parse_spec(dict(manifest.get("spec") or {}))
    except api.SpecError as error:
        raise BadExample(f"{label}: the spec is invalid: " + "; ".join(error.messages)) from error
    return manifest


def container_names(spec: api.MultiContainerEndpointSpec) -> list[str]:
    """The containers' names inside the endpoint: their hostnames, or (Serial without hostnames) the
    names SageMaker gives by position."""
    return [c.container_hostname or f"container-{i}" for i, c in enumerate(spec.containers, start=1)]


@dataclass(frozen=True)
class Change:
    """The demo's spec change: one SageMaker cannot apply in place (a new model, a new config)."""

    description: str
    patch: dict[str, Any]


def spec_change(manifest: dict[str, Any]) -> Change:
    spec = api.parse_spec(manifest["spec"])
    if spec.mode is api.Mode.DIRECT:
        return Change("spec.mode Direct -> Serial", {"spec": {"mode": "Serial"}})
    if all(c.container_hostname for c in spec.containers):
        return Change("spec.mode Serial -> Direct", {"spec": {"mode": "Direct"}})
    # Direct needs a hostname on every container: change the first container's environment instead.
    containers = copy.deepcopy(manifest["spec"]["containers"])
    environment = containers[0].setdefault("environment", {}) or {}
    current = str(environment.get(REVISION_VARIABLE, ""))
    revision = str(int(current) + 1) if current.isdigit() else "2"
    environment[REVISION_VARIABLE] = revision
    containers[0]["environment"] = environment
    return Change(
        f"spec.containers[0].environment.{REVISION_VARIABLE}={revision}", {"spec": {"containers": containers}}
    )


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

    def __init__(
        self, emulator: Emulator, kube: KubeClient, namespace: str, name: str, *, rows: bool = True
    ) -> None:
        self.emulator, self.kube, self.namespace, self.name = emulator, kube, namespace, name
        self.rows = rows  # False: kubectl itself prints them (see _kubectl_rows)
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
            if not self.rows:
                continue
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


def _ready(kube: KubeClient, namespace: str, name: str, config_not: str | None = None) -> Any:
    obj = kube.find(api.PLURAL, namespace, name)
    return obj if is_ready(obj, config_not) else None


def main(*, delay: float = 1.0, example: str | None = None, control_plane: bool = False) -> int:
    try:
        chosen = load_example(example)
    except BadExample as error:
        print(f"mce-operator demo: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    # kopf warns that it cannot install signal handlers outside the main thread: expected here.
    logging.getLogger("kopf._core.reactor.running").setLevel(logging.ERROR)
    manifest = chosen.manifest
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    # The emulator's ARNs must be in the endpoint's region, or the operator would see a region change.
    region = manifest["spec"].get("region") or DEFAULT_REGION
    credentials = {"aws_access_key_id": "demo", "aws_secret_access_key": "demo", "region_name": region}
    where = "a real kube-apiserver + etcd" if control_plane else "an in-memory Kubernetes API"
    print(f"mce-operator demo: {where} and an emulated SageMaker, the real operator between.")
    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(Emulator(delay=delay, region=region))
        try:
            kube, connection, kubeconfig = (
                _real_cluster(stack, namespace) if control_plane else _in_memory(stack, namespace)
            )
        except DemoFailed as failure:
            print(f"mce-operator demo: {failure}", file=sys.stderr)
            return 2
        session = boto3.session.Session(**credentials)
        sagemaker = SageMaker(SageMakerSettings(region=region, endpoint_url=emulator.url), session=session)
        config = handlers.OperatorConfig(timing=core.Timing(busy=0.5, steady=10.0), connection=connection)
        printer = _Printer(emulator, kube, namespace, name, rows=kubeconfig is None)
        clients = _Clients(
            runtime=boto3.client("sagemaker-runtime", endpoint_url=emulator.url, **credentials),
            control=boto3.client("sagemaker", endpoint_url=emulator.url, **credentials),
        )

        def factory(stop_flag: threading.Event, ready_flag: threading.Event) -> Any:
            return handlers.operator(
                sagemaker=sagemaker, config=config, stop_flag=stop_flag, ready_flag=ready_flag
            )

        try:
            with OperatorThread(factory, startup_timeout=20):
                if kubeconfig is None:
                    header = ROW.format(
                        "NAME", "MODE", "CONTAINERS", "STATUS", "READY", "ENDPOINT", "OBSERVED/GEN"
                    )
                    printer.say(f"  kubectl    {header}")
                else:
                    stack.enter_context(_kubectl_rows(kubeconfig, namespace, printer.say))
                printer.thread.start()
                _steps(printer, kube, emulator, clients, chosen)
        except DemoFailed as failure:
            printer.say(f"FAILED: {failure}")
            return 1
        finally:
            printer.stop.set()
    print("demo: every step happened.")
    return 0


def _in_memory(stack: contextlib.ExitStack, namespace: str) -> tuple[KubeClient, dict[str, Any], None]:
    kube = stack.enter_context(KubeServer(crds=[crdgen.build_crd()], namespaces=[namespace]))
    return kube, kube.connection_info(namespace), None


def _real_cluster(stack: contextlib.ExitStack, namespace: str) -> tuple[KubeClient, dict[str, Any], Path]:
    """etcd + kube-apiserver with the CRD installed and the namespace created, as an admin."""
    from mce_operator.testkit.controlplane import ControlPlane, ControlPlaneError

    if shutil.which("kubectl") is None:
        raise DemoFailed("--control-plane shows the real `kubectl get mce`: kubectl is not on the PATH")
    try:
        plane = stack.enter_context(ControlPlane())
    except ControlPlaneError as error:
        raise DemoFailed(str(error)) from None
    kube = plane.client()
    kube.create(crdgen.build_crd())
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    _wait("the CRD to be served", lambda: _served(kube), 30)
    return kube, plane.connection_info(namespace), plane.kubeconfig


def _served(kube: KubeClient) -> bool:
    # Discovered, and listable: a new CRD's storage answers 429 "(re)initializing" for a moment.
    try:
        kube.list(f"{api.PLURAL}.{api.GROUP}")
    except (KeyError, KubeApiError):
        return False
    return True


@contextlib.contextmanager
def _kubectl_rows(kubeconfig: Path, namespace: str, say: Callable[[str], None]) -> Iterator[None]:
    """`kubectl get mce --watch`, each new row said as it comes (one per change of a column)."""
    watch = subprocess.Popen(
        ["kubectl", "get", "mce", "-n", namespace, "--watch"],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # "No resources found" until the object exists
        text=True,
    )

    def read() -> None:
        assert watch.stdout is not None
        last: list[str] = []
        for line in watch.stdout:
            columns = line.split()
            # A row is printed for every write; one whose columns (but AGE) did not change says nothing.
            if columns[:-1] != last:
                say(f"  kubectl    {line.rstrip()}")
                last = columns[:-1]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield
    finally:
        watch.terminate()
        watch.wait(10)
        reader.join(10)


@dataclass(frozen=True)
class _Clients:
    runtime: Any
    control: Any


def _invoke(say: Callable[[str], None], runtime: Any, endpoint: str, manifest: dict[str, Any]) -> None:
    """Invoke the endpoint as its mode allows, and check which containers answered."""
    spec = api.parse_spec(manifest["spec"])
    names = container_names(spec)
    if spec.mode is api.Mode.DIRECT:
        for host in names:
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
        return
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Body=b'{"amount": 42}'
    )
    body = json.loads(answer["Body"].read())
    order, node = [], body
    while isinstance(node, dict) and "container" in node:
        order.append(node["container"])
        node = node.get("input")
    if list(reversed(order)) != names:
        raise DemoFailed(f"pipeline ran {list(reversed(order))}, expected {names}")
    say(f"   ran {' -> '.join(reversed(order))}: {json.dumps(body)}")


def _invoke_step(number: int, manifest: dict[str, Any]) -> str:
    mode = api.parse_spec(manifest["spec"]).mode
    if mode is api.Mode.DIRECT:
        return f"{number}. invoke each container (Direct: TargetContainerHostname picks one)"
    return f"{number}. invoke the pipeline (Serial: each container's output feeds the next)"


def _steps(
    printer: _Printer, kube: KubeClient, emulator: Emulator, clients: _Clients, example: Example
) -> None:
    manifest = copy.deepcopy(example.manifest)
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    spec = api.parse_spec(manifest["spec"])
    say = printer.say

    # Deleting the object must delete the endpoint for the demo to show it.
    policy = ""
    if spec.deletion_policy is not api.DeletionPolicy.DELETE:
        manifest["spec"]["deletionPolicy"] = api.DeletionPolicy.DELETE.value
        policy = f", deletionPolicy {spec.deletion_policy.value} -> Delete for the demo"
    say(
        f"1. kubectl apply -f {example.label}   ({namespace}/{name}: {spec.mode.value} mode, "
        f"{len(spec.containers)} containers{policy})"
    )
    kube.create(manifest)
    obj = _wait("Ready", lambda: _ready(kube, namespace, name), 60)
    endpoint, first_config = obj["status"]["endpointName"], obj["status"]["endpointConfigName"]
    say(f"   Ready: endpoint {endpoint} serves {first_config}")

    say(_invoke_step(2, manifest))
    _invoke(say, clients.runtime, endpoint, manifest)

    change = spec_change(manifest)
    say(f"3. kubectl patch: {change.description} (a new model, a new config, UpdateEndpoint)")
    kube.patch(api.PLURAL, namespace, name, change.patch)
    manifest["spec"].update(change.patch["spec"])
    obj = _wait("Ready on the new config", lambda: _ready(kube, namespace, name, config_not=first_config), 60)
    second_config = obj["status"]["endpointConfigName"]
    _wait(
        "the superseded config to be deleted",
        lambda: not clients.control.list_endpoint_configs(NameContains=first_config)["EndpointConfigs"],
        30,
    )
    model = clients.control.describe_model(ModelName=obj["status"]["modelName"])
    say(
        f"   Ready: {endpoint} serves {second_config} (mode {model['InferenceExecutionConfig']['Mode']});"
        " the superseded model and config are deleted"
    )

    say(_invoke_step(4, manifest))
    _invoke(say, clients.runtime, endpoint, manifest)

    say(f"5. kubectl delete mce {name}")
    kube.delete(api.PLURAL, namespace, name)
    _wait(
        "the object to be gone (finalizer released)",
        lambda: kube.find(api.PLURAL, namespace, name) is None,
        60,
    )
    control = clients.control
    left = {
        "endpoints": [e["EndpointName"] for e in control.list_endpoints(NameContains=endpoint)["Endpoints"]],
        "configs": [
            c["EndpointConfigName"]
            for c in control.list_endpoint_configs(NameContains=endpoint)["EndpointConfigs"]
        ],
        "models": [m["ModelName"] for m in control.list_models(NameContains=endpoint)["Models"]],
    }
    if any(left.values()):
        raise DemoFailed(f"SageMaker resources left behind: {left}")
    mutating = [c for c in emulator.calls if c.operation.startswith(MUTATING)]
    say(f"   gone: no endpoint, config or model named {endpoint}* is left in SageMaker")
    say(f"   SageMaker calls: {len(emulator.calls)} in all, {len(mutating)} that changed something")
