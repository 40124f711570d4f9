"""``make bench``: the operator against a floor, at scale, each in its own process.

For each API server (the in-memory one of the testkit, and a real kube-apiserver + etcd when
``make controlplane`` has built them) and each N, a run:

1. starts the SageMaker emulator (``mce-emulator``, its own process);
2. runs the **floor**: plain boto3 making only the calls a deployment needs (CreateModel,
   CreateEndpointConfig, CreateEndpoint, then DescribeEndpoint every busy interval until InService) for N
   endpoints, with the operator's concurrency (20 threads; a wait holds no thread), against that
   emulator, from the first create until all are InService;
3. resets the emulator, starts the API server and the operator (``mce-operator run``, its own process,
   logged in with a kubeconfig as users run it), waits until it is idle, then applies N objects one after
   the other; the clock starts at the first create and stops when every object is Ready;
4. measures the steady state (optional): Kubernetes writes (counted by the API server) and SageMaker
   reads (the emulator's log) per object per steady interval, over one drift interval;
5. changes every object's spec (Direct -> Serial: a new model, a new config, UpdateEndpoint, the old ones
   deleted), then deletes every object, and checks that nothing is left in SageMaker.

It records SageMaker calls per lifecycle (all but the steady window), looks per object, apply -> first
SageMaker call latency for every object (create and change), and the operator process's RSS (idle, at
every phase, peak). Results go to ``.cache/benchmarks.json`` (ignored by git); ``--markdown`` renders
them into docs/benchmarks.md between its markers.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import heapq
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config

from mce_operator import api, core, crdgen
from mce_operator.scheduler import MAX_WORKERS

REGION = "us-east-1"
NAMESPACE = "bench"
MUTATING = ("Create", "Update", "Delete", "Add")
# create: CreateModel, CreateEndpointConfig, CreateEndpoint; change: CreateModel, CreateEndpointConfig,
# UpdateEndpoint, DeleteEndpointConfig + DeleteModel (superseded); delete: DeleteEndpoint,
# DeleteEndpointConfig, DeleteModel.
MINIMUM_MUTATING = 11
# DescribeEndpoint before and after each of the three changes, and the owner's tags read before changing
# what was not just created (the endpoint before UpdateEndpoint and DeleteEndpoint, each model and config
# before deleting it): see docs/calls-per-lifecycle.md.
MINIMUM_READS = 12
# What the floor makes per object to create it: three creates, a DescribeEndpoint before and after.
MINIMUM_CREATE_CALLS = 5
THREADS = MAX_WORKERS  # the operator's default: objects visited at once, each in a thread
APPLIERS = 8  # the bench's own threads creating, changing and deleting the objects
MARK_BEGIN = "<!-- bench:begin -->"
MARK_END = "<!-- bench:end -->"


def _manifest(index: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{api.GROUP}/{api.VERSION}",
        "kind": api.KIND,
        "metadata": {"name": f"mce-{index:04d}", "namespace": NAMESPACE},
        "spec": {
            "executionRoleArn": "arn:aws:iam::123456789012:role/bench",
            "mode": "Direct",
            "instanceType": "ml.m5.large",
            "containers": [
                {
                    "containerHostname": f"c{i}",
                    "image": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/c{i}:1",
                }
                for i in range(3)
            ],
        },
    }


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _http(method: str, url: str, body: Any = None, timeout: float = 60) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        raw = answer.read()
    return json.loads(raw) if raw.strip().startswith(b"{") else raw.decode()


def _wait(what: str, check: Callable[[], bool], timeout: float, pause: float = 0.1) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not done after {timeout} s")
        time.sleep(pause)
    return time.monotonic() - start


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


# --- the processes ---------------------------------------------------------------------------------------


class EmulatorProcess:
    """``mce-emulator`` in its own process, with its admin API."""

    def __init__(self, delay: float, log: Path) -> None:
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mce_operator.emulator", "--port", "0", "--delay", str(delay)],
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        found = re.search(r"listening on (\S+)", line)
        if not found:
            raise RuntimeError(f"mce-emulator did not start: {line!r}")
        self.url = found.group(1)

    def calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = _http("GET", f"{self.url}/_emulator/calls")["calls"]
        return calls

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = _http("GET", f"{self.url}/_emulator/state")
        return state

    def reset(self) -> None:
        _http("POST", f"{self.url}/_emulator/reset", {})

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log.close()


class OperatorProcess:
    """``mce-operator run`` in its own process: its metrics, its RSS sampled in a thread."""

    def __init__(self, kubeconfig: Path, sagemaker_url: str, options: list[str], log: Path) -> None:
        self.metrics_port = _free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "AWS_ENDPOINT_URL_SAGEMAKER": sagemaker_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
        }
        command = [sys.executable, "-m", "mce_operator.cli", "run", "--plain-logs", "--liveness", ""]
        command += ["--metrics-port", str(self.metrics_port), "--namespace", NAMESPACE, *options]
        self._log = log.open("ab")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.peak_rss_mb = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def rss_mb(self) -> float:
        try:
            text = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0.0
        found = re.search(r"VmRSS:\s+(\d+) kB", text)
        return round(int(found.group(1)) / 1024, 1) if found else 0.0

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())

    def metrics(self) -> dict[str, float]:
        """Every sample of its /metrics, by name with labels (e.g. ``mce_operator_reconcile_total{...}``)."""
        text = _http("GET", f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
        samples = {}
        for line in str(text).splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def looks(self) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith("mce_operator_reconcile_total"))

    def wait_idle(self, timeout: float = 60) -> None:
        """Up, and not growing: the start-up (kopf, boto3's client, the first LIST) is over."""

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"mce-operator run exited with {self.process.returncode}")
            try:
                self.metrics()
            except OSError:
                return False
            return True

        _wait("the operator's metrics", up, timeout, 0.2)
        previous = -1.0
        while abs(self.rss_mb() - previous) > 0.5:
            previous = self.rss_mb()
            time.sleep(1.0)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self._stop.set()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log.close()


# --- the API servers -------------------------------------------------------------------------------------


class ApiServer:
    """What a run needs of an API server: a client, a kubeconfig, and the count of writes it served."""

    name = ""
    client: Any

    def kubeconfig(self, directory: Path) -> Path:
        raise NotImplementedError

    def writes(self) -> dict[str, int]:
        """Write requests served so far to the objects and their status, and Events created."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class InMemoryApi(ApiServer):
    name = "in-memory"

    def __init__(self, request_history: int) -> None:
        from mce_operator.testkit.kube_server import KubeServer

        self.server = KubeServer(
            crds=[crdgen.build_crd()],
            namespaces=[NAMESPACE],
            request_history=request_history,
            request_timeout=120,
        ).start()
        self.client = self.server

    def kubeconfig(self, directory: Path) -> Path:
        return self.server.write_kubeconfig(directory / "kubeconfig", NAMESPACE)

    def writes(self) -> dict[str, int]:
        counts = dict(self.server.emulator.request_counts)
        found = {"objects": 0, "status": 0, "events": 0}
        for (verb, plural, sub), count in counts.items():
            if verb in ("POST", "PUT", "PATCH", "DELETE") and plural == api.PLURAL:
                found["status" if sub == "status" else "objects"] += count
            elif verb == "POST" and plural == "events":
                found["events"] += count
        return found

    def stop(self) -> None:
        self.server.stop()


class RealApi(ApiServer):
    """kube-apiserver + etcd (``make controlplane``); writes from the apiserver's own metrics."""

    name = "kube-apiserver"

    def __init__(self) -> None:
        from mce_operator.testkit.controlplane import ControlPlane

        self.plane = ControlPlane().start()
        self.client = self.plane.client()
        self.client.request_timeout = 120
        self.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        self.client.create(crdgen.build_crd())
        _wait("the CRD served", self._served, 60, 0.2)

    def _served(self) -> bool:
        try:
            self.client.resource(f"{api.PLURAL}.{api.GROUP}")
        except KeyError:
            self.client._discovered = []  # discovery is cached: look again
            return False
        return True

    def kubeconfig(self, directory: Path) -> Path:
        return self.plane.write_kubeconfig(directory / "kubeconfig", namespace=NAMESPACE)

    def writes(self) -> dict[str, int]:
        text = self.client.request_raw("GET", "/metrics").decode()
        found = {"objects": 0, "status": 0, "events": 0}
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            count = int(float(line.rsplit(" ", 1)[1]))
            if labels.get("verb") not in ("POST", "PUT", "PATCH", "DELETE", "CREATE", "UPDATE", "APPLY"):
                continue
            if labels.get("resource") == api.PLURAL:
                found["status" if labels.get("subresource") == "status" else "objects"] += count
            elif labels.get("resource") == "events" and labels.get("verb") in ("POST", "CREATE"):
                found["events"] += count
        return found

    def stop(self) -> None:
        self.plane.stop()


# --- the floor -------------------------------------------------------------------------------------------


def _client(url: str) -> Any:
    return boto3.session.Session().client(
        "sagemaker",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=botocore.config.Config(max_pool_connections=THREADS, retries={"mode": "standard"}),
    )


def _requests(index: int) -> core.Desired:
    manifest = _manifest(index)
    identity = core.Identity(NAMESPACE, manifest["metadata"]["name"], f"floor-{index}", 1)
    return core.desired_state(api.parse_spec(manifest["spec"]), identity)


def floor(url: str, count: int, busy: float) -> float:
    """The minimal deployment of ``count`` endpoints with plain boto3: the same requests the operator
    sends, ``THREADS`` threads, and a DescribeEndpoint every ``busy`` seconds while an endpoint is not
    InService (a wait holds no thread, as in the operator)."""
    client = _client(url)
    wanted = [_requests(i) for i in range(count)]
    tags = [[{"Key": k, "Value": v} for k, v in sorted(d.tags.items())] for d in wanted]
    due: list[tuple[float, int]] = []
    done: set[int] = set()
    lock = threading.Condition()

    def later(index: int) -> None:
        with lock:
            heapq.heappush(due, (time.monotonic() + busy, index))
            lock.notify()

    def create(index: int) -> None:
        desired = wanted[index]
        client.create_model(**desired.model_request, Tags=tags[index])
        client.create_endpoint_config(**desired.config_request, Tags=tags[index])
        client.create_endpoint(
            EndpointName=desired.endpoint_name, EndpointConfigName=desired.config_name, Tags=tags[index]
        )
        later(index)

    def describe(index: int) -> None:
        status = client.describe_endpoint(EndpointName=wanted[index].endpoint_name)["EndpointStatus"]
        if status == "InService":
            with lock:
                done.add(index)
                lock.notify()
        else:
            later(index)

    started = time.monotonic()
    failures: list[BaseException] = []

    def guarded(step: Callable[[int], None], index: int) -> None:
        try:
            step(index)
        except BaseException as error:
            with lock:
                failures.append(error)
                lock.notify()

    with ThreadPoolExecutor(THREADS) as pool:
        for index in range(count):
            pool.submit(guarded, create, index)
        with lock:
            while len(done) < count and not failures:
                now = time.monotonic()
                while due and due[0][0] <= now:
                    pool.submit(guarded, describe, heapq.heappop(due)[1])
                lock.wait(timeout=(due[0][0] - now) if due else 0.05)
        elapsed = time.monotonic() - started
    if failures:
        raise failures[0]
    client.close()
    return round(elapsed, 2)


# --- one run of the operator -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    api: str = "in-memory"
    delay: float = 0.5  # the emulator's Creating/Updating/Deleting time
    busy: float = 0.5
    # Long enough that no steady look falls in the lifecycle's phases (a steady run sets it short).
    steady: float = 600.0
    drift: float | None = None  # None: the operator's default
    calls_per_second: float = 0.0  # no client-side limit: the operator, not the limiter, is measured
    # The in-memory API's request log: kmock scans all of it for each reaction at every request.
    request_history: int = 1
    phases: tuple[str, ...] = ("create", "update", "delete")
    steady_window: float = 0.0  # seconds of steady state measured after creation (0: none)
    profile: bool = False


def is_ready(obj: Mapping[str, Any]) -> bool:
    """Ready as ``kubectl wait --for=condition=Ready`` means it: True, for the object's generation."""
    generation = obj["metadata"].get("generation")
    status = obj.get("status") or {}
    return status.get("observedGeneration") == generation and any(
        c.get("type") == "Ready" and c.get("status") == "True" and c.get("observedGeneration") == generation
        for c in status.get("conditions") or []
    )


def _endpoint_name(index: int) -> str:
    return _requests(index).endpoint_name


class Run:
    def __init__(self, count: int, settings: Settings, workdir: Path) -> None:
        self.count, self.settings, self.workdir = count, settings, workdir
        self.names = [_manifest(i)["metadata"]["name"] for i in range(count)]
        self.endpoints = {_endpoint_name(i).lower(): self.names[i] for i in range(count)}
        self.result: dict[str, Any] = {"objects": count, "api": settings.api, "load_before": _load()}

    # helpers

    def _objects(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.server.client.list(api.PLURAL, NAMESPACE)
        return items

    def _pause(self) -> float:
        return 0.1 if self.count <= 10 else 0.25 if self.count <= 100 else 0.5

    def _until(self, what: str, check: Callable[[list[dict[str, Any]]], bool], timeout: float) -> None:
        _wait(what, lambda: check(self._objects()), timeout, self._pause())

    def _apply(self, write: Callable[[int], Any]) -> dict[str, float]:
        """One write per object, from APPLIERS threads (as a GitOps tool applies many manifests); when each
        was sent, by name."""
        sent: dict[str, float] = {}

        def one(index: int) -> None:
            sent[self.names[index]] = time.time()
            write(index)

        with ThreadPoolExecutor(APPLIERS) as pool:
            list(pool.map(one, range(self.count)))
        return sent

    def _ready_times(self, generation: int, started: float) -> list[float]:
        """Wait until every object is Ready on ``generation``; when each was first seen so (sorted)."""
        seen: dict[str, float] = {}

        def check(objects: list[dict[str, Any]]) -> bool:
            now = round(time.time() - started, 2)
            for obj in objects:
                if is_ready(obj) and obj["metadata"]["generation"] == generation:
                    seen.setdefault(obj["metadata"]["name"], now)
            return len(seen) == self.count

        self._until(f"all Ready on generation {generation}", check, 1800)
        return sorted(seen.values())

    def _mark(self, phase: str) -> None:
        self.marks[phase] = {
            "time": time.time(),
            "looks": self.operator.looks(),
            "writes": self.server.writes(),
            "rss_mb": self.operator.rss_mb(),
            "cpu_s": self.operator.cpu_seconds(),
        }

    # the run

    def execute(self) -> dict[str, Any]:
        settings = self.settings
        emulator = EmulatorProcess(settings.delay, self.workdir / "emulator.log")
        try:
            if "create" in settings.phases and settings.calls_per_second == 0:
                self.result["floor_all_ready_s"] = floor(emulator.url, self.count, settings.busy)
                self.result["floor_calls_per_object"] = round(len(emulator.calls()) / self.count, 2)
                emulator.reset()
            self.server: ApiServer = (
                InMemoryApi(settings.request_history) if settings.api == "in-memory" else RealApi()
            )
            try:
                self._with_operator(emulator)
            finally:
                self.server.stop()
        finally:
            emulator.stop()
        self.result["load_after"] = _load()
        return self.result

    def _with_operator(self, emulator: EmulatorProcess) -> None:
        settings = self.settings
        options = ["--busy-interval", str(settings.busy), "--steady-interval", str(settings.steady)]
        options += ["--calls-per-second", str(settings.calls_per_second)]
        if settings.drift is not None:
            options += ["--drift-interval", str(settings.drift)]
        self.operator = OperatorProcess(
            self.server.kubeconfig(self.workdir), emulator.url, options, self.workdir / "operator.log"
        )
        profiler: subprocess.Popen[bytes] | None = None
        try:
            self.operator.wait_idle()
            self.result["idle_rss_mb"] = self.operator.rss_mb()
            self.marks: dict[str, dict[str, Any]] = {}
            self._mark("start")
            if settings.profile:
                profiler = _profile(self.operator.process.pid, self.workdir / "profile.txt")
            self._phases(emulator)
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
                self.result["profile"] = summarize_profile(self.workdir / "profile.txt")
            self.result["peak_rss_mb"] = self.operator.peak_rss_mb
            self.operator.stop()

    def _phases(self, emulator: EmulatorProcess) -> None:
        settings, client, result = self.settings, self.server.client, self.result
        started = time.time()
        sent = self._apply(lambda index: client.create(_manifest(index)))
        result["applied_s"] = round(time.time() - started, 2)
        ready_at = self._ready_times(1, started)
        result["all_ready_s"] = ready_at[-1]
        result["ready_s"] = {"p50": ready_at[len(ready_at) // 2], "max": ready_at[-1]}
        self._mark("ready")
        result["rss_ready_mb"] = self.marks["ready"]["rss_mb"]
        first_calls = {"create": sent}

        if settings.steady_window:
            # Settle: the looks that confirm the creation are over once a busy interval or two has passed.
            time.sleep(max(2 * settings.busy, 1.0))
            self._mark("steady_start")
            time.sleep(settings.steady_window)
            self._mark("steady_end")

        if "update" in settings.phases:
            update_started = time.time()
            changed = self._apply(
                lambda index: client.patch(
                    api.PLURAL, NAMESPACE, self.names[index], {"spec": {"mode": "Serial"}}
                )
            )
            updated_at = self._ready_times(2, update_started)
            result["all_updated_s"] = updated_at[-1]
            result["updated_s"] = {"p50": updated_at[len(updated_at) // 2], "max": updated_at[-1]}
            _wait(
                "the superseded models and configs deleted",
                lambda: len(emulator.state()["endpointConfigs"]) <= self.count,
                600,
                self._pause(),
            )
            self._mark("updated")
            first_calls["update"] = changed

        if "delete" in settings.phases:
            delete_started = time.time()
            self._apply(lambda index: client.delete(api.PLURAL, NAMESPACE, self.names[index]))
            self._until("all gone", lambda objects: not objects, 1800)
            result["all_deleted_s"] = round(time.time() - delete_started, 2)
            self._mark("deleted")
            state = emulator.state()
            result["left_in_sagemaker"] = {
                "endpoints": len(state["endpoints"]),
                "configs": len(state["endpointConfigs"]),
                "models": len(state["models"]),
            }
        self._account(emulator.calls(), first_calls)

    def _account(self, calls: list[dict[str, Any]], first_calls: dict[str, dict[str, float]]) -> None:
        result, marks, count = self.result, self.marks, self.count
        steady = (
            (marks["steady_start"]["time"], marks["steady_end"]["time"]) if "steady_start" in marks else None
        )
        lifecycle = [c for c in calls if not (steady and steady[0] <= c["time"] < steady[1])]
        mutating = [c for c in lifecycle if c["operation"].startswith(MUTATING)]
        by_operation: dict[str, int] = {}
        for call in lifecycle:
            by_operation[call["operation"]] = by_operation.get(call["operation"], 0) + 1
        phases = [p for p in ("create", "update", "delete") if p in self.settings.phases]
        result["calls_per_object"] = {
            "mutating": round(len(mutating) / count, 2),
            "reads": round((len(lifecycle) - len(mutating)) / count, 2),
            "by_operation": {op: round(n / count, 2) for op, n in sorted(by_operation.items())},
            "phases": "+".join(phases),
        }
        order = ["start", "ready", "steady_start", "steady_end", "updated", "deleted"]
        present = [m for m in order if m in marks]
        result["looks_per_object"] = {
            f"{a}->{b}": round((marks[b]["looks"] - marks[a]["looks"]) / count, 2)
            for a, b in itertools.pairwise(present)
            if (a, b) != ("ready", "steady_start")
        }
        # Less the bench's own writes: the create, the change, the delete of each object.
        own = {"ready": 1, "updated": 1, "deleted": 1}
        result["kube_writes_per_object"] = {
            f"{a}->{b}": {
                kind: round(
                    (marks[b]["writes"][kind] - marks[a]["writes"][kind]) / count
                    - (own.get(b, 0) if kind == "objects" else 0),
                    2,
                )
                for kind in marks[a]["writes"]
            }
            for a, b in itertools.pairwise(present)
        }
        result["rss_mb"] = {m: marks[m]["rss_mb"] for m in present}
        result["operator_cpu_s"] = {
            f"{a}->{b}": round(marks[b]["cpu_s"] - marks[a]["cpu_s"], 2)
            for a, b in itertools.pairwise(present)
        }
        if steady:
            window = steady[1] - steady[0]
            reads = [c for c in calls if steady[0] <= c["time"] < steady[1]]
            intervals = window / self.settings.steady
            result["steady"] = {
                "window_s": round(window, 1),
                "steady_interval_s": self.settings.steady,
                "drift_interval_s": self.settings.drift,
                "kube_writes": {
                    k: marks["steady_end"]["writes"][k] - marks["steady_start"]["writes"][k]
                    for k in marks["steady_start"]["writes"]
                },
                "sagemaker_calls": len(reads),
                "mutating_calls": sum(1 for c in reads if c["operation"].startswith(MUTATING)),
                "reads_per_object_per_interval": round(len(reads) / count / intervals, 3),
                "looks_per_object_per_interval": round(
                    (marks["steady_end"]["looks"] - marks["steady_start"]["looks"]) / count / intervals, 3
                ),
                "operator_cpu_s": round(marks["steady_end"]["cpu_s"] - marks["steady_start"]["cpu_s"], 2),
            }
        # Apply -> the first SageMaker call about the object: its endpoint's DescribeEndpoint.
        latency: dict[str, Any] = {}
        for phase, times in first_calls.items():
            seen: dict[str, float] = {}
            for call in calls:
                name = self.endpoints.get(str(call.get("name") or "").lower())
                if name and name not in seen and call["time"] >= times[name]:
                    seen[name] = call["time"] - times[name]
            values = [seen[name] for name in times if name in seen]
            if values:
                latency[phase] = {
                    "p50_ms": round(statistics.median(values) * 1000, 1),
                    "p99_ms": round(_percentile(values, 0.99) * 1000, 1),
                    "max_ms": round(max(values) * 1000, 1),
                }
        result["first_call_latency"] = latency
        # Error answers by operation, per object: SageMaker answers DescribeEndpoint about an endpoint that
        # does not exist with a ValidationException: two per object are expected, the first look's and the
        # one that sees the endpoint gone after DeleteEndpoint.
        refused = collections.Counter(
            f"{c['operation']} {c['outcome']}" for c in lifecycle if c["outcome"] != "ok"
        )
        result["error_answers_per_object"] = {k: round(v / self.count, 2) for k, v in sorted(refused.items())}


# --- profiling -------------------------------------------------------------------------------------------


def _py_spy() -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        raise SystemExit(
            "--profile needs py-spy (make bench installs it; or pip install py-spy, or --profile 0)"
        )
    return spy


def _profile(pid: int, output: Path) -> subprocess.Popen[bytes]:
    spy = _py_spy()
    # Only the thread holding the GIL: where the process spends CPU in Python, not where it waits.
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--gil", "--nonblocking"]
    command += ["--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Where CPU goes, by the innermost frame of each sample that belongs to one of these (first match wins).
_CATEGORIES = (
    ("mce_operator (handlers, core, adapters)", ("mce_operator/",)),
    ("botocore/boto3 (SageMaker requests: signing, serialising, parsing)", ("botocore/", "boto3/")),
    ("kopf (watching, dispatching, posting Events)", ("kopf/",)),
    ("HTTP and TLS (urllib3, http.client, aiohttp, ssl)", ("urllib3/", "http/client", "aiohttp/", "ssl.py")),
    ("JSON, logging, pydantic, yaml", ("json/", "logging/", "pydantic", "yaml/", "pythonjsonlogger")),
    ("asyncio and threads", ("asyncio/", "threading.py", "concurrent/")),
)


def summarize_profile(path: Path) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks: the share of CPU samples by where their innermost known frame is,
    and the functions with the most samples at the top of the stack."""
    if not path.exists():
        return {}
    by_category: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf = re.sub(r" \((.*/)?", " (", frames[-1])
        leaves[leaf] = leaves.get(leaf, 0) + count
        category = "other"
        for frame in reversed(frames):
            match = next((name for name, keys in _CATEGORIES if any(k in frame for k in keys)), None)
            if match:
                category = match
                break
        by_category[category] = by_category.get(category, 0) + count
    if not total:
        return {}
    return {
        "samples": total,
        "by_category_percent": {
            k: round(100 * v / total, 1) for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])
        },
        "top_functions_percent": {
            k: round(100 * v / total, 1) for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:12]
        },
    }


# --- the suite -------------------------------------------------------------------------------------------


def _scaled(steady: float) -> float:
    """The drift interval that keeps the operator's default ratio to the steady interval."""
    from mce_operator.core import Timing

    defaults = Timing()
    return round(steady * defaults.drift / defaults.steady, 1)


def plan(args: argparse.Namespace, apis: list[str]) -> list[tuple[str, int, Settings]]:
    """Every run of the suite: (kind, objects, settings)."""
    runs: list[tuple[str, int, Settings]] = []
    for server in apis:
        for count in args.objects:
            runs += [("scale", count, Settings(api=server))] * args.runs
        if args.steady:
            steady = 2.0
            drift = _scaled(steady)
            settings = Settings(
                api=server, steady=steady, drift=drift, steady_window=drift, phases=("create", "delete")
            )
            runs.append(("steady", args.steady, settings))
        if args.memory:
            runs.append(("memory", args.memory, Settings(api=server, phases=("create",))))
    if args.rate_limited:
        from mce_operator.core import Timing

        limited = Settings(busy=Timing().busy, calls_per_second=10.0, phases=("create",))
        runs.append(("rate-limited", args.rate_limited, limited))
    if args.profile:
        runs.append(("profile", args.profile, Settings(profile=True)))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mce_operator.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--api", choices=["in-memory", "kube-apiserver", "both"], default="both")
    parser.add_argument("--objects", type=int, nargs="*", default=[10, 100, 500])
    parser.add_argument("--runs", type=int, default=3, help="runs of each N (min/median/max)")
    parser.add_argument("--steady", type=int, default=100, help="objects of the steady-state run (0: none)")
    parser.add_argument("--memory", type=int, default=1000, help="objects of the memory run (0: none)")
    parser.add_argument(
        "--rate-limited", type=int, default=500, help="objects of the run at the default rate limit (0: none)"
    )
    parser.add_argument("--profile", type=int, default=500, help="objects of the py-spy run (0: none)")
    # Not a tracked file: a run must not rewrite one unless asked to.
    parser.add_argument("--output", default=".cache/benchmarks.json")
    parser.add_argument("--markdown", help="render the results into this file, between its bench markers")
    parser.add_argument("--render-only", action="store_true", help="render --output; run nothing")
    parser.add_argument("--logs", help="keep each run's logs (operator, emulator, profile) in this folder")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the runs already in --output, but those of the same kind, API server and N as this time's",
    )
    args = parser.parse_args(argv)
    output = Path(args.output)
    if not args.render_only:
        from mce_operator.testkit.controlplane import missing_binaries

        apis = ["in-memory", "kube-apiserver"] if args.api == "both" else [args.api]
        if "kube-apiserver" in apis and missing_binaries():
            print(
                "bench: no kube-apiserver/etcd (make controlplane): the in-memory API only", file=sys.stderr
            )
            apis.remove("kube-apiserver")
        report: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "commit": _commit(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "runs": [],
        }
        planned = plan(args, apis)
        if args.profile:
            _py_spy()  # now, not after the half hour of runs before the profile's
        if args.merge and output.exists():
            again = {(kind, settings.api, count) for kind, count, settings in planned}
            earlier = json.loads(output.read_text())
            report["runs"] = [
                r for r in earlier["runs"] if (r.get("kind"), r["api"], r["objects"]) not in again
            ]
            report["earlier"] = [
                *earlier.get("earlier", []),
                {k: earlier[k] for k in ("commit", "started") if k in earlier},
            ]
        output.parent.mkdir(parents=True, exist_ok=True)
        for kind, count, settings in planned:
            with tempfile.TemporaryDirectory(prefix="mce-bench-") as scratch:
                print(f"bench: {kind} run, {count} objects, {settings.api} ...", file=sys.stderr, flush=True)
                workdir = Path(scratch)
                if args.logs:
                    workdir = Path(args.logs) / f"{len(report['runs']):02d}-{kind}-{settings.api}-{count}"
                    workdir.mkdir(parents=True, exist_ok=True)
                result = Run(count, settings, workdir).execute()
            result["kind"] = kind
            result["commit"] = report["commit"]
            result["settings"] = {k: v for k, v in vars(settings).items() if k != "api"}
            report["runs"].append(result)
            print(json.dumps(result), flush=True)
            output.write_text(json.dumps(report, indent=2) + "\n")
    report = json.loads(output.read_text())
    markdown = render(report)
    if args.markdown:
        target = Path(args.markdown)
        text = target.read_text()
        begin, end = text.index(MARK_BEGIN) + len(MARK_BEGIN), text.index(MARK_END)
        target.write_text(text[:begin] + "\n" + markdown + "\n" + text[end:])
    else:
        print(markdown)
    return 0


def _commit() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    return "unknown"


# --- the report ------------------------------------------------------------------------------------------


def _spread(values: list[float], unit: str = "") -> str:
    """min / median / max, or the single value."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:g}{unit}"
    return f"{min(values):g} / {statistics.median(values):g} / {max(values):g}{unit}"


def _group(runs: list[dict[str, Any]], kind: str) -> dict[tuple[str, int], list[dict[str, Any]]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        if run.get("kind") == kind:
            groups.setdefault((run["api"], run["objects"]), []).append(run)
    return groups


def render(report: Mapping[str, Any]) -> str:
    runs = report["runs"]
    commits = ", ".join(f"`{c}`" for c in sorted({str(r.get("commit", report["commit"])) for r in runs}))
    lines = [
        f"Commit {commits}, {report['started']} (last run); {report['machine']['cpus']} CPUs shared with "
        f"other work, Python {report['machine']['python']}. The machine's load average (1 min) before "
        "and after each run is in the last column; every figure of the JSON has it.",
        "",
        "### Operator against the floor (all Ready from the first create; min / median / max of the runs)",
        "",
        "| API server | objects | runs | operator, all Ready | floor | ratio | all updated | all deleted "
        "| load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    scale = _group(runs, "scale")
    for (server, count), group in sorted(scale.items()):
        ratios = [r["all_ready_s"] / r["floor_all_ready_s"] for r in group]
        loads = [r["load_before"][0] for r in group] + [r["load_after"][0] for r in group]
        lines.append(
            f"| {server} | {count} | {len(group)} | {_spread([r['all_ready_s'] for r in group], ' s')} "
            f"| {_spread([r['floor_all_ready_s'] for r in group], ' s')} "
            f"| {_spread([round(x, 2) for x in ratios], 'x')} "
            f"| {_spread([r.get('all_updated_s', 0) for r in group], ' s')} "
            f"| {_spread([r.get('all_deleted_s', 0) for r in group], ' s')} "
            f"| {min(loads):g} to {max(loads):g} |"
        )
    lines += [
        "",
        "### SageMaker calls per object, create -> change -> delete (minimum: 11 mutating, 12 reads)",
        "",
        "| API server | objects | mutating | reads | reads / minimum | looks per object: create, change, "
        "delete (median) | Kubernetes writes per object: create, change, delete (median) "
        "| left in SageMaker |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (server, count), group in sorted(scale.items()):
        calls = [r["calls_per_object"] for r in group]
        looks = [list(r["looks_per_object"].values()) for r in group]
        writes = [[round(sum(w.values()), 2) for w in r["kube_writes_per_object"].values()] for r in group]
        left = {
            "nothing" if not any((r.get("left_in_sagemaker") or {"?": 1}).values()) else "something"
            for r in group
        }
        lines.append(
            f"| {server} | {count} | {_spread([c['mutating'] for c in calls])} "
            f"| {_spread([c['reads'] for c in calls])} "
            f"| {_spread([round(c['reads'] / MINIMUM_READS, 2) for c in calls], 'x')} "
            f"| {', '.join(f'{statistics.median(x):g}' for x in zip(*looks, strict=True))} "
            f"| {', '.join(f'{statistics.median(x):g}' for x in zip(*writes, strict=True))} "
            f"| {', '.join(sorted(left))} |"
        )
    lines += [
        "",
        "### Apply -> first SageMaker call about the object (every object; p50 / p99 / max, median run)",
        "",
        "| API server | objects | on create | on change |",
        "|---|---|---|---|",
    ]
    for (server, count), group in sorted(scale.items()):
        cells = []
        for phase in ("create", "update"):
            values = sorted(group, key=lambda r: r["first_call_latency"].get(phase, {}).get("p99_ms", 0))
            middle = values[len(values) // 2]["first_call_latency"].get(phase)
            cells.append(
                f"{middle['p50_ms']:g} / {middle['p99_ms']:g} / {middle['max_ms']:g} ms" if middle else "—"
            )
        lines.append(f"| {server} | {count} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "### Operator RSS (MB)",
        "",
        "| run | API server | objects | idle | all Ready | peak |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        if run.get("kind") in ("scale", "memory") and (run["kind"] == "memory" or run is _first(scale, run)):
            lines.append(
                f"| {run['kind']} | {run['api']} | {run['objects']} | {run['idle_rss_mb']} "
                f"| {run['rss_ready_mb']} | {run['peak_rss_mb']} |"
            )
    steady_runs = [r for r in runs if r.get("kind") == "steady"]
    if steady_runs:
        lines += [
            "",
            "### Steady state (objects Ready, nothing changes)",
            "",
            "| API server | objects | steady / drift interval | window | Kubernetes writes | SageMaker "
            "mutating calls | reads per object per steady interval | looks per object per interval "
            "| operator CPU |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for run in steady_runs:
            steady = run["steady"]
            lines.append(
                f"| {run['api']} | {run['objects']} | {steady['steady_interval_s']:g} s / "
                f"{steady['drift_interval_s']:g} s | {steady['window_s']:g} s "
                f"| {sum(steady['kube_writes'].values())} | {steady['mutating_calls']} "
                f"| {steady['reads_per_object_per_interval']} | {steady['looks_per_object_per_interval']} "
                f"| {steady['operator_cpu_s']} s |"
            )
    for run in runs:
        if run.get("kind") == "rate-limited":
            minimum = MINIMUM_CREATE_CALLS * run["objects"] / run["settings"]["calls_per_second"]
            lines += [
                "",
                f"### At the default rate limit ({run['settings']['calls_per_second']:g} calls/s, busy "
                f"interval {run['settings']['busy']:g} s)",
                "",
                f"{run['objects']} objects all Ready in {run['all_ready_s']} s; the minimal "
                f"{MINIMUM_CREATE_CALLS} calls per object need {minimum:g} s at that rate: "
                f"{run['all_ready_s'] / minimum:.2f}x. Calls per object: "
                f"{run['calls_per_object']['mutating']} mutating, {run['calls_per_object']['reads']} "
                f"reads (load {run['load_before'][0]:g} -> "
                f"{run['load_after'][0]:g}).",
            ]
    for run in runs:
        if run.get("kind") == "profile" and run.get("profile"):
            profile = run["profile"]
            lines += [
                "",
                f"### Where the operator's CPU goes ({run['objects']} objects, create -> change -> delete, "
                f"py-spy, {profile['samples']} samples)",
                "",
                "| innermost frame in | share of samples |",
                "|---|---|",
                *(f"| {k} | {v} % |" for k, v in profile["by_category_percent"].items()),
                "",
                "| function on top of the stack | share |",
                "|---|---|",
                *(f"| `{k}` | {v} % |" for k, v in profile["top_functions_percent"].items()),
            ]
    return "\n".join(lines)


def _first(groups: dict[tuple[str, int], list[dict[str, Any]]], run: dict[str, Any]) -> dict[str, Any] | None:
    group = groups.get((run["api"], run["objects"]))
    return group[0] if group else None


if __name__ == "__main__":
    sys.exit(main())
