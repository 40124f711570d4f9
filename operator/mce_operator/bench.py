"""``make bench``: how fast and how frugal the operator is, against the emulator, with the real kopf.

Measures, for N objects created at once:
- time to converge (all Ready), and to delete them all (all gone, nothing left in SageMaker);
- SageMaker calls per lifecycle (create -> mode change -> delete), mutating and read, against the minimum;
- reaction latency: from a spec change written to Kubernetes to the first SageMaker call it causes;
- the process's peak memory (RSS).
Results go to a JSON file (``--output``) and a Markdown summary is printed for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from mce_operator import api, core, crdgen, handlers
from mce_operator.demo import is_ready
from mce_operator.emulator.server import Emulator
from mce_operator.sagemaker import SageMaker, SageMakerSettings
from mce_operator.testkit.kube_server import KubeServer
from mce_operator.testkit.operator_thread import OperatorThread

REGION = "us-east-1"
NAMESPACE = "bench"
MUTATING = ("Create", "Update", "Delete", "Add")
# create: CreateModel, CreateEndpointConfig, CreateEndpoint; mode change: CreateModel, CreateEndpointConfig,
# UpdateEndpoint, DeleteEndpointConfig + DeleteModel (superseded); delete: DeleteEndpoint,
# DeleteEndpointConfig, DeleteModel.
MINIMUM_MUTATING = 11


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


def _objects(kube: KubeServer, names: list[str]) -> list[dict[str, Any] | None]:
    """One LIST per poll, not a GET per object: the poller must not be the in-memory API's main load."""
    found = {o["metadata"]["name"]: o for o in kube.list(api.PLURAL, NAMESPACE)}
    return [found.get(name) for name in names]


def _wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not done after {timeout}s")
        time.sleep(0.1)
    return time.monotonic() - start


def run(count: int, delay: float, busy: float) -> dict[str, Any]:
    logging.basicConfig(level=logging.CRITICAL)
    with (
        Emulator(delay=delay, region=REGION) as emulator,
        KubeServer(crds=[crdgen.build_crd()], namespaces=[NAMESPACE], request_timeout=60) as kube,
    ):
        session = boto3.session.Session(aws_access_key_id="b", aws_secret_access_key="b", region_name=REGION)
        # No client-side rate limit here: the benchmark measures the operator, not the limiter.
        sagemaker = SageMaker(
            SageMakerSettings(region=REGION, endpoint_url=emulator.url, calls_per_second=0), session=session
        )
        config = handlers.OperatorConfig(
            timing=core.Timing(busy=busy, steady=60.0),
            connection=kube.connection_info(NAMESPACE),
            max_workers=32,
        )

        def factory(stop_flag: threading.Event, ready_flag: threading.Event) -> Any:
            return handlers.operator(
                sagemaker=sagemaker, config=config, stop_flag=stop_flag, ready_flag=ready_flag
            )

        names = [_manifest(i)["metadata"]["name"] for i in range(count)]
        with OperatorThread(factory, startup_timeout=30):
            started = time.monotonic()
            for index in range(count):
                kube.create(_manifest(index))
            converge = _wait("all Ready", lambda: all(is_ready(o) for o in _objects(kube, names)), 600)
            create_calls = list(emulator.calls)

            # Reaction latency: a spec change, then the first SageMaker call that mentions the object.
            latencies = []
            for name in names[: min(count, 10)]:
                before = len(emulator.calls)
                old_config = kube.get(api.PLURAL, NAMESPACE, name)["status"]["endpointConfigName"]
                written = time.time()
                kube.patch(api.PLURAL, NAMESPACE, name, {"spec": {"mode": "Serial"}})
                _wait("a reaction", lambda: len(emulator.calls) > before, 60)  # noqa: B023 (called at once)
                first = emulator.calls[before]
                latencies.append(first.time - written)
                _wait(
                    "Ready on Serial",
                    lambda: is_ready(kube.find(api.PLURAL, NAMESPACE, name), old_config),  # noqa: B023
                    120,
                )
            for name in names[min(count, 10) :]:
                kube.patch(api.PLURAL, NAMESPACE, name, {"spec": {"mode": "Serial"}})
            update_start = time.monotonic()
            _wait(
                "all Ready on Serial",
                lambda: all(
                    o is not None and is_ready(o) and o["spec"]["mode"] == "Serial"
                    for o in _objects(kube, names)
                ),
                600,
            )
            update_time = time.monotonic() - update_start
            control = boto3.client(
                "sagemaker",
                endpoint_url=emulator.url,
                **{"aws_access_key_id": "b", "aws_secret_access_key": "b", "region_name": REGION},
            )
            _wait(
                "superseded configs deleted",
                lambda: (
                    len(
                        control.list_endpoint_configs(MaxResults=100, NameContains="bench")["EndpointConfigs"]
                    )
                    <= count
                ),
                120,
            )

            delete_start = time.monotonic()
            for name in names:
                kube.delete(api.PLURAL, NAMESPACE, name)
            deletion = _wait("all gone", lambda: all(o is None for o in _objects(kube, names)), 600)
            total = time.monotonic() - started
            calls = list(emulator.calls)
        left = {
            "endpoints": len(control.list_endpoints(MaxResults=100)["Endpoints"]),
            "configs": len(control.list_endpoint_configs(MaxResults=100)["EndpointConfigs"]),
            "models": len(control.list_models(MaxResults=100)["Models"]),
        }
    mutating = [c for c in calls if c.operation.startswith(MUTATING)]
    by_operation: dict[str, int] = {}
    for call in calls:
        by_operation[call.operation] = by_operation.get(call.operation, 0) + 1
    return {
        "objects": count,
        "emulator_delay_s": delay,
        "busy_interval_s": busy,
        "converge_all_ready_s": round(converge, 2),
        "update_all_ready_s": round(update_time, 2),
        "delete_all_gone_s": round(deletion, 2),
        "total_s": round(total, 2),
        "calls_total": len(calls),
        "calls_during_create": len(create_calls),
        "mutating_calls_per_lifecycle": round(len(mutating) / count, 2),
        "minimum_mutating_calls_per_lifecycle": MINIMUM_MUTATING,
        "read_calls_per_lifecycle": round((len(calls) - len(mutating)) / count, 2),
        "calls_by_operation": dict(sorted(by_operation.items())),
        "errors": sum(1 for c in calls if c.outcome != "ok"),
        "reaction_latency_ms": {
            "median": round(statistics.median(latencies) * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "left_in_sagemaker": left,
        "delete_started_after_s": round(delete_start - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mce_operator.bench")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--delay", type=float, default=0.5, help="emulated SageMaker state change delay")
    parser.add_argument("--busy", type=float, default=0.5, help="operator's busy re-check interval")
    # Not docs/benchmarks.json: a run must not rewrite a tracked file unless asked to.
    parser.add_argument("--output", default=".cache/benchmarks.json")
    args = parser.parse_args()
    results = []
    for count in args.objects:
        result = run(count, args.delay, args.busy)
        results.append(result)
        print(json.dumps(result), flush=True)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    header = (
        "objects",
        "all Ready",
        "all updated",
        "all deleted",
        f"mutating calls (min {MINIMUM_MUTATING})",
        "reads",
        "reaction median / max",
        "peak RSS",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        latency = r["reaction_latency_ms"]
        cells = (
            r["objects"],
            f"{r['converge_all_ready_s']} s",
            f"{r['update_all_ready_s']} s",
            f"{r['delete_all_gone_s']} s",
            r["mutating_calls_per_lifecycle"],
            r["read_calls_per_lifecycle"],
            f"{latency['median']} / {latency['max']} ms",
            f"{r['peak_rss_mb']} MB",
        )
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


if __name__ == "__main__":
    main()
