"""``kubectl mce``: a kubectl plugin for MultiContainerEndpoint objects (installed as ``kubectl-mce``).

    kubectl mce get [NAME]                    the columns of ``kubectl get mce``, plus the Degraded message
    kubectl mce describe NAME                 spec summary, status, conditions and recent Events
    kubectl mce invoke NAME [--container HOST] [--body JSON|@file] [--content-type TYPE]
                                              InvokeEndpoint on the object's SageMaker endpoint

The cluster comes from the kubeconfig (``--kubeconfig``, ``KUBECONFIG``, ``~/.kube/config``) and its
``--context``; ``-n``/``--namespace`` and ``-A``/``--all-namespaces`` work as in kubectl. ``invoke`` uses
boto3's credential chain; its region is the object's ``spec.region`` or boto3's default, and
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` is honoured as boto3 does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from mce_operator import api

MAX_EVENTS = 20
NONE = "<none>"


class PluginError(Exception):
    """An error to print as ``error: ...`` with exit status 1."""


# --- formatting -----------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """kubectl's age format (k8s.io/apimachinery duration.HumanDuration): 45s, 3m20s, 5h, 3d4h, 400d."""
    total = int(seconds)
    if total < -1:
        return "<invalid>"
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = total // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(value: Any, now: datetime | None = None) -> str:
    stamp = _parse_time(value)
    if stamp is None:
        return NONE
    return human_duration(((now or datetime.now(UTC)) - stamp).total_seconds())


def table(rows: Sequence[Sequence[str]]) -> str:
    """kubectl's plain table: columns left-aligned, separated by three spaces, no trailing blanks."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _text(value: Any) -> str:
    return NONE if value is None or value == "" else str(value)


def conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    status = obj.get("status") or {}
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


def degraded_message(obj: Mapping[str, Any]) -> str:
    degraded = conditions(obj).get("Degraded")
    if degraded is None or degraded.get("status") != "True":
        return ""
    return str(degraded.get("message") or degraded.get("reason") or "")


def get_row(obj: Mapping[str, Any], now: datetime | None = None) -> list[str]:
    """NAME, MODE, CONTAINERS, STATUS, READY, ENDPOINT, AGE (the CRD's printer columns), MESSAGE."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    count = status.get("containerCount")
    if count is None and isinstance(spec.get("containers"), list):
        count = len(spec["containers"])
    ready = conditions(obj).get("Ready", {}).get("status")
    return [
        str(meta.get("name", "")),
        _text(spec.get("mode")),
        _text(count),
        _text(status.get("endpointStatus")),
        _text(ready),
        _text(status.get("endpointName")),
        age(meta.get("creationTimestamp"), now),
        degraded_message(obj),
    ]


GET_HEADERS = ["NAME", "MODE", "CONTAINERS", "STATUS", "READY", "ENDPOINT", "AGE", "MESSAGE"]


def format_get(
    objs: Sequence[Mapping[str, Any]], *, all_namespaces: bool, now: datetime | None = None
) -> str:
    rows: list[list[str]] = []
    for obj in objs:
        row = get_row(obj, now)
        if all_namespaces:
            row.insert(0, str((obj.get("metadata") or {}).get("namespace", "")))
        rows.append(row)
    headers = (["NAMESPACE"] if all_namespaces else []) + GET_HEADERS
    return table([headers, *rows])


def _event_time(event: Mapping[str, Any]) -> Any:
    meta = event.get("metadata") or {}
    return (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or meta.get("creationTimestamp")
    )


def _event_sort_key(event: Mapping[str, Any]) -> tuple[datetime, int]:
    stamp = _parse_time(_event_time(event)) or datetime.min.replace(tzinfo=UTC)
    try:
        version = int((event.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        version = 0
    return stamp, version


def format_describe(
    obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime | None = None
) -> str:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    out: list[str] = []

    def field(label: str, value: Any, indent: int = 0) -> None:
        out.append(f"{' ' * indent}{label + ':':<{22 - indent}}{_text(value)}")

    field("Name", meta.get("name"))
    field("Namespace", meta.get("namespace"))
    created = meta.get("creationTimestamp")
    field("Created", f"{created} ({age(created, now)} ago)" if created else None)
    if meta.get("deletionTimestamp"):
        field("Deleting since", meta.get("deletionTimestamp"))
    field("Generation", meta.get("generation"))
    field("Observed generation", status.get("observedGeneration"))

    out.append("Spec:")
    field(
        "Endpoint name",
        spec.get("endpointName") or f"(default, from {meta.get('namespace')}-{meta.get('name')})",
        2,
    )
    field("Region", spec.get("region") or "(the operator's default)", 2)
    field("Mode", spec.get("mode") or "Serial", 2)
    field("Execution role", spec.get("executionRoleArn"), 2)
    count = spec.get("initialInstanceCount", 1)
    field("Instances", f"{count} x {spec.get('instanceType')}", 2)
    field("Variant", spec.get("variantName") or "AllTraffic", 2)
    field("Deletion policy", spec.get("deletionPolicy") or "Delete", 2)
    tags = spec.get("tags") or {}
    field("Tags", ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) if tags else None, 2)
    containers = [c for c in spec.get("containers") or [] if isinstance(c, Mapping)]
    out.append(f"  Containers ({len(containers)}):")
    rows = [["HOSTNAME", "IMAGE", "MODEL DATA"]]
    for container in containers:
        rows.append(
            [
                _text(container.get("containerHostname")),
                _text(container.get("image")),
                _text(container.get("modelDataUrl")),
            ]
        )
    out.extend("    " + line for line in table(rows).splitlines())

    out.append("Status:")
    field("Endpoint", status.get("endpointName"), 2)
    field("Endpoint ARN", status.get("endpointArn"), 2)
    field("Endpoint status", status.get("endpointStatus"), 2)
    field("Model", status.get("modelName"), 2)
    field("Endpoint config", status.get("endpointConfigName"), 2)
    field("Failure reason", status.get("failureReason"), 2)

    out.append("Conditions:")
    items = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    if items:
        rows = [["TYPE", "STATUS", "REASON", "GENERATION", "SINCE", "MESSAGE"]]
        for cond in items:
            rows.append(
                [
                    _text(cond.get("type")),
                    _text(cond.get("status")),
                    _text(cond.get("reason")),
                    _text(cond.get("observedGeneration")),
                    age(cond.get("lastTransitionTime"), now),
                    str(cond.get("message") or ""),
                ]
            )
        out.extend("  " + line for line in table(rows).splitlines())
    else:
        out.append(f"  {NONE}")

    out.append("Events:")
    recent = sorted(events, key=_event_sort_key)[-MAX_EVENTS:]
    if recent:
        rows = [["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]]
        for event in recent:
            source = event.get("source") or {}
            rows.append(
                [
                    _text(event.get("type")),
                    _text(event.get("reason")),
                    age(_event_time(event), now),
                    _text(source.get("component") or event.get("reportingController")),
                    str(event.get("message") or event.get("note") or ""),
                ]
            )
        out.extend("  " + line for line in table(rows).splitlines())
    else:
        out.append(f"  {NONE}")
    return "\n".join(out) + "\n"


# --- Kubernetes -----------------------------------------------------------------------------------------


class Cluster:
    """The objects of one kubeconfig context, as plain dicts."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client, config

        try:
            config.load_kube_config(config_file=kubeconfig, context=context)
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        except (config.ConfigException, OSError) as error:
            raise PluginError(f"cannot load the kubeconfig: {error}") from error
        chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
        self.default_namespace = str(((chosen or {}).get("context") or {}).get("namespace") or "default")
        self._client = client
        self._api = client.ApiClient()
        self._custom = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            response = method(*args, _preload_content=False, **kwargs)
        except self._client.ApiException as error:
            raise PluginError(_api_error(error)) from error
        return json.loads(response.data or b"null")

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            self._custom.get_namespaced_custom_object, api.GROUP, api.VERSION, namespace, api.PLURAL, name
        )
        return result

    def list_objects(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            answer = self._call(self._custom.list_cluster_custom_object, api.GROUP, api.VERSION, api.PLURAL)
        else:
            answer = self._call(
                self._custom.list_namespaced_custom_object, api.GROUP, api.VERSION, namespace, api.PLURAL
            )
        items: list[dict[str, Any]] = list(answer.get("items") or [])
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", f"{api.GROUP}/{api.VERSION}")
            item.setdefault("kind", api.KIND)
        return sorted(
            items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"].get("name", ""))
        )

    def events(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        """core/v1 Events about the object (kopf posts those)."""
        meta = obj.get("metadata") or {}
        namespace, uid, name = meta.get("namespace"), meta.get("uid"), meta.get("name")
        try:
            answer = self._call(
                self._core.list_namespaced_event, namespace, field_selector=f"involvedObject.uid={uid}"
            )
        except PluginError:
            # Not every API server (or proxy) supports that field selector: filter here instead.
            answer = self._call(self._core.list_namespaced_event, namespace)
        events: list[dict[str, Any]] = []
        for event in answer.get("items") or []:
            involved = event.get("involvedObject") or event.get("regarding") or {}
            same_uid = involved.get("uid") == uid if involved.get("uid") else False
            same_name = involved.get("kind") == api.KIND and involved.get("name") == name
            if same_uid or (not involved.get("uid") and same_name):
                events.append(event)
        return events


def _api_error(error: Any) -> str:
    try:
        body = json.loads(error.body)
        return (
            f"Error from server ({body.get('reason') or error.status}): {body.get('message') or error.reason}"
        )
    except (TypeError, ValueError, AttributeError):
        return f"Error from server ({error.status}): {error.reason}"


# --- commands -------------------------------------------------------------------------------------------


def _namespace(args: argparse.Namespace, cluster: Cluster) -> str:
    return str(args.namespace or cluster.default_namespace)


def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    cluster = Cluster(args.kubeconfig, args.context)
    all_namespaces = bool(args.all_namespaces) and not args.name
    if args.name:
        objs = [cluster.get(_namespace(args, cluster), args.name)]
    else:
        objs = cluster.list_objects(None if all_namespaces else _namespace(args, cluster))
    if not objs:
        where = "" if all_namespaces else f" in {_namespace(args, cluster)} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
        return 0
    out.write(format_get(objs, all_namespaces=all_namespaces))
    return 0


def cmd_describe(args: argparse.Namespace, out: TextIO) -> int:
    cluster = Cluster(args.kubeconfig, args.context)
    obj = cluster.get(_namespace(args, cluster), args.name)
    out.write(format_describe(obj, cluster.events(obj)))
    return 0


def _body(value: str | None) -> bytes:
    if value is None:
        if sys.stdin.isatty():
            raise PluginError("give the request body with --body JSON, --body @file, or on stdin")
        return sys.stdin.buffer.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_bytes()
        except OSError as error:
            raise PluginError(f"cannot read the body: {error}") from error
    return value.encode()


def cmd_invoke(args: argparse.Namespace, out: TextIO) -> int:
    import boto3
    import botocore.exceptions

    cluster = Cluster(args.kubeconfig, args.context)
    obj = cluster.get(_namespace(args, cluster), args.name)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    endpoint = status.get("endpointName")
    if not endpoint:
        raise PluginError(f"{args.name} has no SageMaker endpoint yet (status.endpointName is empty)")
    ready = conditions(obj).get("Ready", {})
    if ready.get("status") != "True":
        print(
            f"warning: {args.name} is not Ready ({ready.get('reason') or status.get('endpointStatus')}); "
            "invoking anyway",
            file=sys.stderr,
        )
    params: dict[str, Any] = {
        "EndpointName": endpoint,
        "Body": _body(args.body),
        "ContentType": args.content_type,
        "Accept": args.accept,
    }
    if args.container:
        params["TargetContainerHostname"] = args.container
    try:
        runtime = boto3.client("sagemaker-runtime", region_name=spec.get("region") or None)
        response = runtime.invoke_endpoint(**params)
        payload: bytes = response["Body"].read()
    except botocore.exceptions.ClientError as error:
        details = error.response.get("Error", {})
        raise PluginError(
            f"InvokeEndpoint {endpoint}: {details.get('Code')}: {details.get('Message')}"
        ) from error
    except botocore.exceptions.BotoCoreError as error:
        raise PluginError(f"InvokeEndpoint {endpoint}: {error}") from error
    variant = response.get("InvokedProductionVariant")
    if variant:
        print(f"variant: {variant}; content type: {response.get('ContentType')}", file=sys.stderr)
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        out.flush()
        sys.stdout.buffer.write(payload)
        return 0
    out.write(text if text.endswith("\n") else text + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    def connection(parser: argparse.ArgumentParser, default: Any) -> None:
        # On the top level and on each command, so that `kubectl mce -n ml get` and `kubectl mce get -n ml`
        # both work; the commands' copies default to SUPPRESS so that they do not undo the top level's.
        parser.add_argument("--kubeconfig", default=default, help="Path to the kubeconfig file.")
        parser.add_argument("--context", default=default, help="The kubeconfig context to use.")
        parser.add_argument(
            "-n", "--namespace", default=default, help="The namespace (default: the context's)."
        )

    parser = argparse.ArgumentParser(
        prog="kubectl mce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    connection(parser, None)
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="get: list across all namespaces."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    get = commands.add_parser("get", help="List MultiContainerEndpoints, or show one.")
    connection(get, argparse.SUPPRESS)
    get.add_argument("-A", "--all-namespaces", action="store_true", default=argparse.SUPPRESS)
    get.add_argument("name", nargs="?", help="Show only this object.")
    get.set_defaults(run=cmd_get)

    describe = commands.add_parser(
        "describe", help="Spec, status, conditions and recent Events of one object."
    )
    connection(describe, argparse.SUPPRESS)
    describe.add_argument("name")
    describe.set_defaults(run=cmd_describe)

    invoke = commands.add_parser("invoke", help="Call SageMaker InvokeEndpoint on the object's endpoint.")
    connection(invoke, argparse.SUPPRESS)
    invoke.add_argument("name")
    invoke.add_argument("--container", help="TargetContainerHostname (Direct mode).")
    invoke.add_argument("--body", help="The request body: JSON text, or @file (default: stdin).")
    invoke.add_argument("--content-type", default="application/json", help="Default application/json.")
    invoke.add_argument("--accept", default="application/json", help="Default application/json.")
    invoke.set_defaults(run=cmd_invoke)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args, out or sys.stdout)
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
