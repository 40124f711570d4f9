"""``mce-operator``: ``run`` the operator against a cluster, or ``demo`` the whole job without one."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from mce_operator import core
from mce_operator.sagemaker import SageMaker, SageMakerSettings
from mce_operator.scheduler import MAX_WORKERS

# What `mce-operator demo` imports beyond the operator's own dependencies (the `demo` extra).
DEMO_MODULES = frozenset({"kmock", "jsonpatch", "aiohttp"})
DEMO_EXTRA_MISSING = (
    "mce-operator demo needs the optional 'demo' dependencies (kmock, for the in-memory Kubernetes API), "
    "which the operator itself does not install. Install the package with its extra, e.g. "
    "`pip install -c constraints.txt '.[demo]'` in a checkout, or "
    "`pip install 'mce_operator-<version>-py3-none-any.whl[demo]'`."
)


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _at_least_one(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mce-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="Run the operator against the current kubeconfig or the in-cluster service account.",
        description="Credentials, region and AWS_ENDPOINT_URL_SAGEMAKER come from boto3's usual chain.",
    )
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=None,
        help="Watch only this namespace (repeatable; glob patterns allowed). Default: MCE_NAMESPACES "
        "(comma-separated), else the whole cluster.",
    )
    run.add_argument("--region", default=os.environ.get("MCE_REGION"), help="Default region of endpoints.")
    run.add_argument(
        "--busy-interval",
        type=float,
        default=_env_float("MCE_BUSY_INTERVAL", 10.0),
        help="Seconds between checks while SageMaker creates, updates or deletes (default 10).",
    )
    run.add_argument(
        "--steady-interval",
        type=float,
        default=_env_float("MCE_STEADY_INTERVAL", 300.0),
        help="Seconds between drift checks of a steady endpoint (default 300).",
    )
    run.add_argument(
        "--drift-interval",
        type=float,
        default=_env_float("MCE_DRIFT_INTERVAL", core.Timing().drift),
        help="Longest time between two full reads of an endpoint's models, configs and tags, when changes "
        "made to them outside the operator are found (default 10800: 3 h; the endpoint itself is described "
        "every steady interval).",
    )
    run.add_argument(
        "--calls-per-second",
        type=float,
        default=_env_float("MCE_CALLS_PER_SECOND", 10.0),
        help="Client-side limit on SageMaker API calls, all objects together (default 10; 0: no limit).",
    )
    run.add_argument(
        "--max-workers",
        type=_at_least_one,
        # A string, so that argparse checks MCE_MAX_WORKERS as it checks the option.
        default=os.environ.get("MCE_MAX_WORKERS") or str(MAX_WORKERS),
        help="Objects visited at once, each in a thread while it waits for SageMaker or Kubernetes "
        f"(default {MAX_WORKERS}).",
    )
    run.add_argument(
        "--peering",
        default=os.environ.get("MCE_PEERING"),
        help="kopf peering object's name: with several "
        "replicas only one acts at a time. Default: standalone.",
    )
    run.add_argument(
        "--peering-priority",
        type=int,
        default=int(os.environ["MCE_PEERING_PRIORITY"]) if os.environ.get("MCE_PEERING_PRIORITY") else None,
        help="This replica's peering priority (the highest acts). Default: a random one, so that "
        "replicas never tie (kopf pauses every replica of equal priority).",
    )
    run.add_argument("--liveness", default=os.environ.get("MCE_LIVENESS", "http://0.0.0.0:8080/healthz"))
    run.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("MCE_METRICS_PORT", 8081),
        help="Port of the Prometheus metrics endpoint, /metrics on all addresses (default 8081; 0: none).",
    )
    run.add_argument("--verbose", action="store_true")
    run.add_argument("--plain-logs", action="store_true", help="Human-readable logs instead of JSON.")

    demo = commands.add_parser("demo", help="The whole job on embedded defaults: no cluster, no AWS account.")
    demo.add_argument("--delay", type=float, default=1.0, help="The emulated SageMaker's state change delay.")
    demo.add_argument(
        "--example",
        default=None,
        help="The manifest to apply: a file, or a packaged example (direct, serial). Default: direct.",
    )
    demo.add_argument(
        "--control-plane",
        action="store_true",
        help="Against a real kube-apiserver + etcd (`make controlplane` builds them, Go needed) instead of "
        "the in-memory API, with the real `kubectl get mce --watch` output.",
    )
    return parser


def namespaces(args: argparse.Namespace) -> list[str]:
    """The flags, else MCE_NAMESPACES (what a kustomize overlay can set from one value), else none."""
    if args.namespace:
        return list(args.namespace)
    return [n.strip() for n in os.environ.get("MCE_NAMESPACES", "").split(",") if n.strip()]


def keep_kubernetes_out() -> None:
    """Make the ``kubernetes`` package unimportable in this process (``mce-operator run`` only).

    kopf imports ``kubernetes.client`` whenever it can (``try: ... except ImportError``), which costs about
    44 MB of RSS, though the operator uses neither it nor kopf's logins built on it (it logs in with
    :mod:`mce_operator.credentials`). The package stays installed for ``kubectl mce``. A None entry in
    sys.modules makes ``import kubernetes`` raise ImportError, so this must run before kopf is imported.
    Left alone if something imported it already (it is in use then; only ever in another entry point)."""
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]


def _run(args: argparse.Namespace) -> int:
    keep_kubernetes_out()
    from mce_operator import handlers, metrics, peering
    from mce_operator.credentials import LoginError
    from mce_operator.kube import Kube

    handlers.configure_logging(verbose=args.verbose, json=not args.plain_logs)
    watched = namespaces(args)
    try:
        kube = Kube.from_environment()
    except LoginError as error:
        logging.getLogger("mce_operator.credentials").error(f"Login: {error}")
        return 1
    if args.peering:
        try:
            peering.ensure(args.peering, watched, kube=kube)
        except peering.PeeringError as error:
            logging.getLogger("mce_operator.peering").error(f"Peering: {error}")
            return 1
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    sagemaker = SageMaker(SageMakerSettings(region=args.region, calls_per_second=args.calls_per_second))
    config = handlers.OperatorConfig(
        timing=core.Timing(busy=args.busy_interval, steady=args.steady_interval, drift=args.drift_interval),
        peering=args.peering,
        peering_priority=args.peering_priority,
        liveness_endpoint=args.liveness or None,
        max_workers=args.max_workers,
    )
    asyncio.run(handlers.operator(sagemaker=sagemaker, config=config, kube=kube, namespaces=watched))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    try:
        from mce_operator import demo
    except ModuleNotFoundError as missing:
        if missing.name not in DEMO_MODULES:
            raise
        print(DEMO_EXTRA_MISSING, file=sys.stderr)
        return 2
    return demo.main(delay=args.delay, example=args.example, control_plane=args.control_plane)


if __name__ == "__main__":
    sys.exit(main())
