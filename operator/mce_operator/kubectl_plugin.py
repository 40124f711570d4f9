"""``kubectl mce``: a kubectl plugin for MultiContainerEndpoint objects (installed as ``kubectl-mce``).

    kubectl mce get [NAME]                    the columns of ``kubectl get mce``, plus the Degraded message
    kubectl mce describe NAME                 spec summary, status, conditions and recent Events
    kubectl mce invoke NAME [--container HOST] [--body JSON|@file] [--content-type TYPE]
                                              InvokeEndpoint on the object's SageMaker endpoint
    kubectl mce validate -f PATH...           check manifests offline (the CRD's and the operator's rules)
    kubectl mce render -f PATH...             the SageMaker requests the operator makes for them
    kubectl mce diff -f PATH...               what applying them would cause; the exit code tells CI

The cluster comes from the kubeconfig (``--kubeconfig``, ``KUBECONFIG``, ``~/.kube/config``) and its
``--context``; ``-n``/``--namespace`` and ``-A``/``--all-namespaces`` work as in kubectl. ``invoke`` and
``diff`` use boto3's credential chain; the region is the object's ``spec.region`` or boto3's default, and
``AWS_ENDPOINT_URL_SAGEMAKER`` / ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` are honoured as boto3 does.
``kubectl mce COMMAND --help`` tells more, exit codes included.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from mce_operator import api, core

if TYPE_CHECKING:
    from mce_operator.cli_tools.crd_eval import CrdEvaluator
    from mce_operator.cli_tools.validate import Checked, Report

MAX_EVENTS = 20
NONE = "<none>"
UNKNOWN = "<unknown>"


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


def observed_generation(obj: Mapping[str, Any]) -> int | None:
    """The generation the status describes: the older of status.observedGeneration and the Ready
    condition's (each is written with the other, but a status from an older operator may lack one)."""
    status = obj.get("status") or {}
    stamps = [status.get("observedGeneration"), conditions(obj).get("Ready", {}).get("observedGeneration")]
    known = [int(stamp) for stamp in stamps if isinstance(stamp, int)]
    return min(known) if known else None


def status_behind(obj: Mapping[str, Any]) -> bool:
    """Whether the status describes an older spec than the object's (the operator has not caught up)."""
    if not obj.get("status"):
        return False
    generation = (obj.get("metadata") or {}).get("generation")
    observed = observed_generation(obj)
    return isinstance(generation, int) and (observed is None or observed < generation)


def status_mode(obj: Mapping[str, Any]) -> str | None:
    """The mode of the model the status names, or None when the status cannot tell.

    The status records no mode, but model names are hashes of the CreateModel request (naming.py): the
    status's model is recognised by building the request from the current spec under each mode. That
    finds it whenever the mode is the only change since; after other changes too, it is unknown.
    """
    status, meta = obj.get("status") or {}, obj.get("metadata") or {}
    model_name = str(status.get("modelName") or "").lower()
    try:
        spec = api.parse_spec(dict(obj.get("spec") or {}))
    except (api.SpecError, TypeError, ValueError):
        return None
    identity = core.identity_of(meta)
    for mode in api.Mode:
        candidate = spec.model_copy(update={"mode": mode, "endpoint_name": status.get("endpointName")})
        if core.desired_state(candidate, identity).model_name.lower() == model_name:
            return mode.value
    return None


def get_row(obj: Mapping[str, Any], now: datetime | None = None) -> list[str]:
    """NAME, MODE, CONTAINERS, STATUS, READY, ENDPOINT, AGE (the CRD's printer columns), MESSAGE.

    Every column but NAME and AGE is the status's view. While the status describes an older spec than the
    object's, READY is Unknown (as ``kubectl wait`` treats a condition of an older generation), MODE is
    the mode the status's model runs (``<unknown>`` when the status cannot tell), and MESSAGE says so.
    """
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    count = status.get("containerCount")
    if count is None and isinstance(spec.get("containers"), list):
        count = len(spec["containers"])
    ready = conditions(obj).get("Ready", {}).get("status")
    mode = spec.get("mode") or ("Serial" if spec else None)
    message = degraded_message(obj)
    if status_behind(obj):
        ready = "Unknown"
        observed = observed_generation(obj)
        behind = (
            f"status is for generation {observed if observed is not None else '<none>'}, "
            f"the spec is at {meta.get('generation')}: the operator has not reconciled it yet"
        )
        seen_mode = status_mode(obj)
        if seen_mode != mode:
            behind += f" (spec mode {mode})"
        mode = seen_mode or UNKNOWN
        message = f"{behind}; {message}" if message else behind
    return [
        str(meta.get("name", "")),
        _text(mode),
        _text(count),
        _text(status.get("endpointStatus")),
        _text(ready),
        _text(status.get("endpointName")),
        age(meta.get("creationTimestamp"), now),
        message,
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


def _deployment_words(deployment: Mapping[str, Any]) -> str:
    """spec.deployment in words: the policy, its traffic steps and the rollback alarms."""
    words = "blue/green AllAtOnce (SageMaker's default)"
    blue_green, rolling = deployment.get("blueGreen"), deployment.get("rolling")
    if isinstance(blue_green, Mapping):
        routing = blue_green.get("trafficRouting") or {}
        size = routing.get("canarySize") or routing.get("linearStepSize")
        words = f"blue/green {routing.get('type')}"
        if isinstance(size, Mapping):
            words += f" of {size.get('value')} ({size.get('type')})"
        words += f", baking {routing.get('waitIntervalInSeconds')} s"
    elif isinstance(rolling, Mapping):
        size = rolling.get("maximumBatchSize") or {}
        words = f"rolling, batches of {size.get('value')} ({size.get('type')})"
        words += f", baking {rolling.get('waitIntervalInSeconds')} s"
    alarms = deployment.get("autoRollbackAlarms") or []
    if alarms:
        words += "; rolled back by " + ", ".join(str(alarm) for alarm in alarms)
    return words


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
    scaling = spec.get("autoscaling")
    if isinstance(scaling, Mapping):
        target = (scaling.get("targetTracking") or {}).get("invocationsPerInstance")
        field(
            "Autoscaling",
            f"{scaling.get('minCapacity')} to {scaling.get('maxCapacity')} instances, "
            f"{target} invocations per instance per minute",
            2,
        )
    deployment = spec.get("deployment")
    if isinstance(deployment, Mapping):
        field("Deployment", _deployment_words(deployment), 2)
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
    desired, current = status.get("desiredInstanceCount"), status.get("currentInstanceCount")
    if desired is not None or current is not None:
        field("Live instances", f"{_text(desired)} desired, {_text(current)} current", 2)
    target = status.get("autoscaling")
    if isinstance(target, Mapping):
        policies = ", ".join(str(p) for p in target.get("policies") or []) or NONE
        field(
            "Scalable target",
            f"{target.get('minCapacity')} to {target.get('maxCapacity')} instances (policies: {policies})",
            2,
        )

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

    def find(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if there is none of that name."""
        try:
            response = self._custom.get_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name, _preload_content=False
            )
        except self._client.ApiException as error:
            if error.status == 404:
                return None
            raise PluginError(_api_error(error)) from error
        found: dict[str, Any] = json.loads(response.data)
        return found

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


# --- validate, render, diff: manifests in a GitOps repository ------------------------------------------


# The tools import boto3, jsonschema and cel: only the commands that need them pay for that (get stays
# quick).


def _require_cli_extra(args: argparse.Namespace) -> None:
    """validate, render and diff evaluate the CRD offline; the operator's image does not carry that."""
    try:
        import cel  # noqa: F401
        import jsonschema  # noqa: F401
    except ImportError as error:
        raise PluginError(
            f"kubectl mce {args.command} needs the package {error.name}, which the cli extra installs "
            "(pip install -c constraints.txt '.[cli]' in a checkout of mce-operator)"
        ) from error


def _read(args: argparse.Namespace, namespace: str) -> tuple[Report, list[Checked]]:
    _require_cli_extra(args)
    from mce_operator.cli_tools import manifests, validate

    paths = [*(args.filename or []), *(args.paths or [])]
    if not paths:
        raise PluginError("give the manifests to read with -f PATH (a file, a folder, or - for stdin)")
    documents, errors = manifests.read(paths, args.stdin)
    report = validate.Validator(_crd(args), default_namespace=namespace).report(documents, errors)
    return report, report.objects


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    report, _ = _read(args, args.namespace or "default")
    if args.output == "json":
        out.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        for line in report.lines():
            out.write(line + "\n")
    print(report.summary(), file=sys.stderr)
    return 0 if report.valid else 1


def _refuse_invalid(report: Report, objects: Sequence[Checked]) -> None:
    if not report.valid:
        for line in report.lines():
            print(line, file=sys.stderr)
        raise PluginError(f"the manifests are not valid ({report.summary()}): see kubectl mce validate")
    if not objects:
        raise PluginError(f"no {api.KIND} found ({report.summary()})")


def cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    from mce_operator.cli_tools import render

    report, objects = _read(args, args.namespace or "default")
    _refuse_invalid(report, objects)
    rendered = [
        render.render(checked.document.obj, args.namespace or "default", args.uid)
        for checked in objects
        if checked.document is not None
    ]
    if args.output == "json":
        out.write(json.dumps(rendered if len(rendered) > 1 else rendered[0], indent=2) + "\n")
    else:
        out.write(yaml.safe_dump_all(rendered, sort_keys=False, allow_unicode=True, width=110))
    return 0


def cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    _require_cli_extra(args)
    from mce_operator.cli_tools import diff
    from mce_operator.sagemaker import SageMaker, SageMakerError, SageMakerSettings

    cluster = Cluster(args.kubeconfig, args.context)
    namespace = _namespace(args, cluster)
    report, objects = _read(args, namespace)
    _refuse_invalid(report, objects)
    differ = diff.Differ(SageMaker(SageMakerSettings(region=args.region)), _crd(args))
    results = []
    for checked in objects:
        assert checked.document is not None
        obj = checked.document.obj
        live = cluster.find(str(checked.namespace), str(checked.name))
        try:
            result = differ.diff(
                obj, live, default_namespace=namespace, source=checked.source, line=checked.line
            )
        except SageMakerError as error:
            raise PluginError(f"{checked.label}: cannot read SageMaker: {error}") from error
        results.append(result)
    outcome = diff.worst(results)
    if args.output == "json":
        answer = {
            "outcome": outcome.name,
            "exitCode": outcome.exit_code,
            "objects": [r.to_dict() for r in results],
        }
        out.write(json.dumps(answer, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        out.write("\n\n".join(r.text() for r in results) + "\n")
        print(f"outcome: {outcome.name} (exit code {outcome.exit_code})", file=sys.stderr)
    return outcome.exit_code


def _crd(args: argparse.Namespace) -> CrdEvaluator | None:
    """--crd FILE, else None: the CRD generated from this version's models."""
    from mce_operator.cli_tools.crd_eval import CrdEvaluator

    if not args.crd:
        return None
    try:
        return CrdEvaluator.from_file(Path(args.crd))
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as error:
        raise PluginError(f"cannot read the CRD {args.crd}: {error}") from error


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

    def manifests_options(command: argparse.ArgumentParser, formats: Sequence[str]) -> None:
        command.add_argument(
            "-f",
            "--filename",
            action="append",
            metavar="PATH",
            help="A manifest file, a folder (read recursively: .yaml, .yml, .json) or - for stdin; "
            "repeatable. Paths may also be given without -f.",
        )
        command.add_argument("paths", nargs="*", metavar="PATH", help=argparse.SUPPRESS)
        command.add_argument("-o", "--output", choices=formats, default=formats[0], help="Output format.")
        command.add_argument(
            "--crd",
            metavar="FILE",
            help="Check against this CRD (e.g. the one installed: kubectl get crd "
            f"{api.PLURAL}.{api.GROUP} -o yaml) instead of the one this version generates.",
        )

    validate_ = commands.add_parser(
        "validate",
        help="Check manifests offline with the CRD's and the operator's rules.",
        description=VALIDATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    manifests_options(validate_, ["text", "json"])
    validate_.add_argument(
        "-n", "--namespace", default=argparse.SUPPRESS, help="For objects without one (default: default)."
    )
    validate_.set_defaults(run=cmd_validate)

    render_ = commands.add_parser(
        "render",
        help="Print the SageMaker requests the operator makes for each object.",
        description=RENDER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    manifests_options(render_, ["yaml", "json"])
    render_.add_argument(
        "-n", "--namespace", default=argparse.SUPPRESS, help="For objects without one (default: default)."
    )
    render_.add_argument("--uid", help="The object's uid, for the ownership tags (default: metadata.uid).")
    render_.set_defaults(run=cmd_render)

    diff_ = commands.add_parser(
        "diff",
        help="Say what applying manifests would cause in SageMaker; the exit code tells CI.",
        description=DIFF_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    manifests_options(diff_, ["text", "json"])
    connection(diff_, argparse.SUPPRESS)
    diff_.add_argument("--region", help="The region of objects without spec.region (default: boto3's).")
    diff_.set_defaults(run=cmd_diff)
    return parser


VALIDATE_HELP = f"""Check {api.KIND} manifests offline: no cluster, no AWS.

The rules are the CRD's (its OpenAPI schema, defaults and CEL rules, evaluated as the apiserver does;
unknown fields are refused as kubectl apply's strict field validation does) and the operator's own
(the pydantic models it checks every object with), plus Kubernetes' rules for metadata.name and
metadata.namespace. Documents of other kinds are skipped and counted; a document of group
{api.GROUP} with another kind or version is an error.

Each problem is printed as  FILE:LINE: NAMESPACE/NAME: FIELD: MESSAGE  (LINE is the field's line);
a summary goes to stderr. -o json prints every object's problems and both verdicts in full.

exit codes: 0 all valid; 1 a problem (invalid object, YAML error, unreadable file); 2 bad usage."""

RENDER_HELP = f"""Print, for each {api.KIND}, the SageMaker requests the operator makes, with their
deterministic names: CreateModel, CreateEndpointConfig and CreateEndpoint when the endpoint does not
exist, UpdateEndpoint when it serves another config, and the tags of all three. Computed by the
operator's own code (core.desired_state and core.reconcile); each request is exactly the boto3 call's
parameters, i.e. the JSON body SageMaker receives. Offline. The uid in the ownership tags is
metadata.uid, --uid, or the placeholder <uid> (names do not depend on it). region null means the
operator's region.

exit codes: 0 rendered; 1 invalid manifests (the problems go to stderr); 2 bad usage."""

DIFF_HELP = f"""Compare {api.KIND} manifests with what is live: the object in the cluster (kubeconfig,
--context, -n) and SageMaker (boto3's credentials and region; AWS_ENDPOINT_URL_SAGEMAKER is honoured,
e.g. for the emulator). Prints, per object, the spec fields that change, the endpoint's state and every
SageMaker call the operator will make, in order (clean-up included), and the outcome:

  outcome               exit code
  nothing                0   no call (or only repairs of drift the operator makes anyway)
  tags only             10   AddTags/DeleteTags in place; the endpoint is not updated
  new endpoint config   11   UpdateEndpoint to a new config with the same model: a new fleet (blue/green)
  new model and config  12   a new model and config, UpdateEndpoint: a new fleet with the new model
  new endpoint          13   CreateEndpoint: a new endpoint, or a Failed one deleted and created again
  refused               14   the apiserver refuses the change (immutable field), or the operator would
                             (a SageMaker name owned by someone else); nothing is applied

With several objects the exit code is the most disruptive outcome's (in the order above). Other exit
codes: 1 an error (invalid manifests, the cluster or SageMaker cannot be read); 2 bad usage."""


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, stdin: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    args.stdin = stdin or sys.stdin
    try:
        code: int = args.run(args, out or sys.stdout)
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
