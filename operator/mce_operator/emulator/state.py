"""SageMaker's resources and their lifecycle: models, endpoint configs, endpoints, tags, and deployments.

Not thread-safe by itself: the service holds one lock around every call. Endpoint transitions are
computed lazily from timestamps (``tick``) at the start of every call, so no background thread is needed
and a delay of 0 makes an endpoint InService at the very next call, as a fast SageMaker would.

An UpdateEndpoint with a DeploymentConfig (deployment guardrails) is a schedule of phases computed when the
call is accepted: the new fleet is provisioned, then traffic shifts to it step by step (all at once, canary,
linear, or rolling batches), each step followed by a baking period during which the auto-rollback alarms
are watched; an alarm in ALARM during a baking period sends all traffic back to the old fleet.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from .errors import validation
from .faults import FaultSet
from .validation import check_model_rules, model_containers

if TYPE_CHECKING:
    from .autoscaling import AutoScalingState

# States in which SageMaker is still working on the endpoint: no update, delete or scaling until they end.
BUSY = frozenset({"Creating", "Updating", "Deleting", "SystemUpdating", "RollingBack"})
STATUSES = (
    "OutOfService",
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "InService",
    "Deleting",
    "Failed",
    "UpdateRollbackFailed",
)
DEFAULT_PAGE = {"ListTags": 50}
DEFAULT_PAGE_SIZE = 10
MAX_TAGS = 50

Json = dict[str, Any]


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def resolve_image(image: str) -> str:
    """A deterministic ``repo@sha256:...`` digest for an image, as DescribeEndpoint's ResolvedImage."""
    if "@sha256:" in image:
        return image
    head, _, last = image.rpartition("/")
    repo = (f"{head}/" if head else "") + last.split(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


@dataclass
class Model:
    name: str
    arn: str
    created: float
    spec: Json
    tags: list[Json]


@dataclass
class EndpointConfig:
    name: str
    arn: str
    created: float
    spec: Json
    tags: list[Json]


@dataclass
class Variant:
    """A production variant as deployed on an endpoint: a snapshot of its model at deployment time."""

    name: str
    model_name: str
    containers: list[Json]
    mode: str
    current_weight: float
    current_count: int
    desired_weight: float
    desired_count: int
    images: list[Json]
    instance_type: str | None = None

    def summary(self) -> Json:
        out: Json = {
            "VariantName": self.name,
            "CurrentWeight": self.current_weight,
            "DesiredWeight": self.desired_weight,
            "CurrentInstanceCount": self.current_count,
            "DesiredInstanceCount": self.desired_count,
        }
        if self.images:
            out["DeployedImages"] = copy.deepcopy(self.images)
        return out


@dataclass
class Phase:
    """One step of a guarded deployment: what the new fleet's VariantStatus says from ``start`` to
    ``end``, the share of traffic the new fleet serves meanwhile, and whether it is a baking period (the
    auto-rollback alarms are watched)."""

    status: str
    message: str
    start: float
    end: float
    share: float
    baking: bool


@dataclass
class Pending:
    """Work SageMaker is doing on an endpoint, due to end at ``due``."""

    kind: Literal["create", "update", "delete", "weights", "system"]
    started: float
    due: float
    config_name: str | None = None
    failure: str | None = None
    weights: list[Json] | None = None
    then: str = "InService"
    # UpdateEndpoint(RetainAllVariantProperties): the variant properties kept from the live endpoint
    # (DesiredInstanceCount, DesiredWeight) instead of taken from the new config; empty: none kept.
    retained: frozenset[str] = frozenset()
    # A guarded deployment (DeploymentConfig): its phases, the alarms that roll it back, and the new fleet
    # once provisioned. No phases: SageMaker's default, one switch at ``due``.
    phases: list[Phase] = field(default_factory=list)
    alarms: tuple[str, ...] = ()
    green: list[Variant] | None = None

    def phase(self, now: float) -> Phase | None:
        """The phase at ``now`` (the last one once all have ended), or None without phases."""
        for phase in self.phases:
            if now < phase.end:
                return phase
        return self.phases[-1] if self.phases else None


@dataclass
class Endpoint:
    name: str
    arn: str
    created: float
    modified: float
    status: str
    config_name: str
    tags: list[Json]
    variants: list[Variant] = field(default_factory=list)
    failure_reason: str | None = None
    pending: Pending | None = None
    last_deployment_config: Json | None = None


@dataclass
class Delays:
    create: float = 0.5
    update: float = 0.5
    delete: float = 0.5
    # Multiplies a DeploymentConfig's WaitIntervalInSeconds and TerminationWaitInSeconds (AWS's are whole
    # seconds up to an hour; tests shrink them).
    deployment_time_scale: float = 1.0

    def to_dict(self) -> dict[str, float]:
        """As the admin API shows them (the names POST /_emulator/config takes)."""
        return {
            "create": self.create,
            "update": self.update,
            "delete": self.delete,
            "deploymentTimeScale": self.deployment_time_scale,
        }


def _page(items: list[Json], body: Mapping[str, Any], operation: str) -> tuple[list[Json], str | None]:
    """One page of ``items`` and the token of the next; tokens carry the offset (opaque to callers)."""
    offset = 0
    token = body.get("NextToken")
    if token:
        try:
            offset = int(json.loads(base64.b64decode(token, validate=True))["offset"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise validation("Invalid pagination token.") from None
    size = int(body.get("MaxResults") or DEFAULT_PAGE.get(operation, DEFAULT_PAGE_SIZE))
    page = items[offset : offset + size]
    after = offset + size
    next_token = (
        base64.b64encode(json.dumps({"offset": after}).encode()).decode() if after < len(items) else None
    )
    return page, next_token


def _ts(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _filtered(
    rows: list[tuple[str, float, float, str, Json]], body: Mapping[str, Any], sort_keys: tuple[str, ...]
) -> list[Json]:
    """Filter (NameContains, time windows, StatusEquals) and sort (SortBy, SortOrder) list rows.

    A row is (name, created, modified, status, summary), in creation order (the tie-break). Defaults as
    SageMaker: newest first.
    """
    needle = (body.get("NameContains") or "").lower()
    out = []
    for seq, (name, created, modified, status, summary) in enumerate(rows):
        if needle and needle not in name.lower():
            continue
        if body.get("CreationTimeBefore") is not None and not created < _ts(body["CreationTimeBefore"]):
            continue
        if body.get("CreationTimeAfter") is not None and not created > _ts(body["CreationTimeAfter"]):
            continue
        if body.get("LastModifiedTimeBefore") is not None and not modified < _ts(
            body["LastModifiedTimeBefore"]
        ):
            continue
        if body.get("LastModifiedTimeAfter") is not None and not modified > _ts(
            body["LastModifiedTimeAfter"]
        ):
            continue
        if body.get("StatusEquals") and status != body["StatusEquals"]:
            continue
        out.append((name, created, status, seq, summary))
    sort_by = body.get("SortBy") or "CreationTime"
    if sort_by not in sort_keys:
        sort_by = "CreationTime"
    index = {"Name": 0, "CreationTime": 1, "Status": 2}[sort_by]
    out.sort(
        key=lambda row: (row[index], row[3]), reverse=(body.get("SortOrder") or "Descending") == "Descending"
    )
    return [row[4] for row in out]


def _list_named(items: Iterable[Model | EndpointConfig], body: Json, operation: str, kind: str) -> Json:
    """ListModels and ListEndpointConfigs: name, ARN and creation time, filtered, sorted and paged."""
    rows = [
        (
            i.name,
            i.created,
            i.created,
            "",
            {f"{kind}Name": i.name, f"{kind}Arn": i.arn, "CreationTime": i.created},
        )
        for i in items
    ]
    page, token = _page(_filtered(rows, body, ("Name", "CreationTime")), body, operation)
    return {f"{kind}s": page, **({"NextToken": token} if token else {})}


class SageMakerState:
    """The resources of one emulated account and region, and the operations on them."""

    def __init__(
        self,
        *,
        account: str,
        region: str,
        delays: Delays,
        faults: FaultSet,
        clock: Callable[[], float],
    ) -> None:
        self.account = account
        self.region = region
        self.delays = delays
        self.faults = faults
        self._clock = clock
        self.models: dict[str, Model] = {}
        self.configs: dict[str, EndpointConfig] = {}
        self.endpoints: dict[str, Endpoint] = {}
        # SageMaker lets a model or config be deleted while an endpoint uses it (and the endpoint then
        # breaks at its next patch or scaling): the emulator allows it too, and keeps a record for tests.
        self.deleted_while_served: list[str] = []
        # Application Auto Scaling, which UpdateEndpoint and DeleteEndpoint consult (set by the service).
        self.autoscaling: AutoScalingState | None = None

    def _serving(self, kind: str, name: str) -> list[str]:
        """The endpoints whose current or pending config is (or uses the model) ``name``."""
        users = []
        for endpoint in self.endpoints.values():
            configs = {endpoint.config_name.lower()}
            if endpoint.pending is not None and endpoint.pending.config_name:
                configs.add(endpoint.pending.config_name.lower())
            if kind == "config" and name.lower() in configs:
                users.append(endpoint.name)
            if kind == "model":
                models = {
                    str(variant.get("ModelName", "")).lower()
                    for config in configs
                    if config in self.configs
                    for variant in self.configs[config].spec.get("ProductionVariants", [])
                }
                if name.lower() in models:
                    users.append(endpoint.name)
        return users

    def clock(self) -> float:
        """Now, to the millisecond as SageMaker's timestamps (so that they survive a client round trip)."""
        return round(self._clock(), 3)

    # -- names and errors -------------------------------------------------------------------------------

    def arn(self, kind: str, name: str) -> str:
        return f"arn:{partition(self.region)}:sagemaker:{self.region}:{self.account}:{kind}/{name.lower()}"

    def _model(self, name: str) -> Model:
        try:
            return self.models[name.lower()]
        except KeyError:
            raise validation(f'Could not find model "{self.arn("model", name)}".') from None

    def _config(self, name: str) -> EndpointConfig:
        try:
            return self.configs[name.lower()]
        except KeyError:
            raise validation(
                f'Could not find endpoint configuration "{self.arn("endpoint-config", name)}".'
            ) from None

    def _endpoint(self, name: str) -> Endpoint:
        try:
            return self.endpoints[name.lower()]
        except KeyError:
            raise validation(f'Could not find endpoint "{self.arn("endpoint", name)}".') from None

    def _ensure_idle(self, endpoint: Endpoint, verb: str = "update") -> None:
        if endpoint.status in BUSY:
            raise validation(f'Cannot {verb} in-progress endpoint "{endpoint.arn}".')

    # -- lifecycle ----------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Complete every endpoint transition whose time has come, in the order they were due; roll back
        guarded deployments whose alarms went into ALARM during a baking period."""
        now = self.clock()
        for endpoint in list(self.endpoints.values()):
            if endpoint.pending is not None and endpoint.pending.phases:
                self._advance_deployment(endpoint, now)
        due = [e for e in self.endpoints.values() if e.pending is not None and e.pending.due <= now]
        due.sort(key=lambda e: e.pending.due if e.pending else 0.0)
        for endpoint in due:
            self._complete(endpoint)

    def _advance_deployment(self, endpoint: Endpoint, now: float) -> None:
        """A guarded deployment up to ``now``: the new fleet once provisioned (or the rollback when it
        cannot be), and the rollback when an alarm trips during a baking period."""
        pending = endpoint.pending
        assert pending is not None and pending.config_name is not None
        provisioned = pending.phases[0].end
        if pending.green is None and provisioned <= now:
            problem = self._provision_problem(pending.config_name) or self._provision_problem(
                endpoint.config_name
            )
            if problem:
                self._roll_back(endpoint, provisioned, problem)
                return
            pending.green = self._retain(
                self._deploy(pending.config_name, provisioned), endpoint.variants, pending.retained
            )
        tripped = self.faults.alarms()
        watched = {name: tripped[name] for name in pending.alarms if name in tripped}
        for phase in pending.phases:
            if not phase.baking or phase.start > now:
                continue
            for name, since in sorted(watched.items(), key=lambda item: item[1]):
                at = max(phase.start, since)
                if at < phase.end and at <= now:
                    reason = (
                        f"The deployment was rolled back: CloudWatch alarm {name} went into the ALARM state "
                        f"during a baking period ({phase.message})."
                    )
                    self._roll_back(endpoint, at, reason)
                    return

    def _roll_back(self, endpoint: Endpoint, at: float, reason: str) -> None:
        """All traffic back on the old fleet, which kept running: InService on the old config at once."""
        endpoint.pending = None
        endpoint.status, endpoint.modified, endpoint.failure_reason = "InService", at, reason

    def _provision_problem(self, config_name: str) -> str | None:
        """Why an endpoint cannot be provisioned from this config now (its config or a model is gone)."""
        config = self.configs.get(config_name.lower())
        if config is None:
            return f'Could not find endpoint configuration "{self.arn("endpoint-config", config_name)}".'
        for variant in config.spec["ProductionVariants"]:
            if variant["ModelName"].lower() not in self.models:
                return f'Could not find model "{self.arn("model", variant["ModelName"])}".'
        return None

    def _deploy(self, config_name: str, at: float) -> list[Variant]:
        config = self.configs[config_name.lower()]
        variants = []
        for spec in config.spec["ProductionVariants"]:
            model = self.models[spec["ModelName"].lower()]
            containers = copy.deepcopy(model_containers(model.spec))
            weight = float(spec.get("InitialVariantWeight", 1.0))
            count = int(spec.get("InitialInstanceCount", 1 if "ServerlessConfig" not in spec else 0))
            images = [
                {
                    "SpecifiedImage": c["Image"],
                    "ResolvedImage": resolve_image(c["Image"]),
                    "ResolutionTime": at,
                }
                for c in containers
                if c.get("Image")
            ]
            mode = (model.spec.get("InferenceExecutionConfig") or {}).get("Mode", "Serial")
            variants.append(
                Variant(
                    spec["VariantName"],
                    model.name,
                    containers,
                    mode,
                    weight,
                    count,
                    weight,
                    count,
                    images,
                    spec.get("InstanceType"),
                )
            )
        return variants

    @staticmethod
    def _retain(new: list[Variant], old: list[Variant], retained: frozenset[str]) -> list[Variant]:
        """RetainAllVariantProperties: variants of the same name keep the live instance count and weight
        (what autoscaling or UpdateEndpointWeightsAndCapacities set) instead of the new config's."""
        live = {variant.name: variant for variant in old}
        for variant in new:
            before = live.get(variant.name)
            if before is None:
                continue
            if "DesiredInstanceCount" in retained:
                variant.desired_count = variant.current_count = before.desired_count
            if "DesiredWeight" in retained:
                variant.desired_weight = variant.current_weight = before.desired_weight
        return new

    def _complete(self, endpoint: Endpoint) -> None:
        pending = endpoint.pending
        assert pending is not None
        endpoint.pending = None
        endpoint.modified = pending.due
        if pending.kind == "delete":
            del self.endpoints[endpoint.name.lower()]
        elif pending.kind == "create":
            failure = pending.failure or self._provision_problem(endpoint.config_name)
            if failure:
                endpoint.status, endpoint.failure_reason = "Failed", failure
            else:
                endpoint.variants = self._deploy(endpoint.config_name, pending.due)
                endpoint.status, endpoint.failure_reason = "InService", None
        elif pending.kind == "update":
            assert pending.config_name is not None
            # A guarded deployment checked this when its new fleet was provisioned.
            failure = pending.failure or (
                None
                if pending.green is not None
                else self._provision_problem(pending.config_name)
                # The running deployment is described by its config: once that is gone, SageMaker cannot
                # move the endpoint off it either.
                or self._provision_problem(endpoint.config_name)
            )
            endpoint.status = "InService"
            if failure:
                endpoint.failure_reason = failure
            else:
                endpoint.config_name = self.configs[pending.config_name.lower()].name
                endpoint.variants = pending.green or self._retain(
                    self._deploy(pending.config_name, pending.due), endpoint.variants, pending.retained
                )
                endpoint.failure_reason = None
        elif pending.kind == "weights":
            wanted = {w["VariantName"]: w for w in pending.weights or []}
            for variant in endpoint.variants:
                if variant.name in wanted:
                    variant.current_weight = variant.desired_weight
                    variant.current_count = variant.desired_count
            endpoint.status = "InService"
        else:
            endpoint.status = pending.then

    # -- models -------------------------------------------------------------------------------------------

    def create_model(self, body: Json) -> Json:
        check_model_rules(body)
        name = body["ModelName"]
        if name.lower() in self.models:
            raise validation(f'Cannot create already existing model "{self.arn("model", name)}".')
        spec = {k: copy.deepcopy(v) for k, v in body.items() if k != "Tags"}
        model = Model(name, self.arn("model", name), self.clock(), spec, list(body.get("Tags") or []))
        self.models[name.lower()] = model
        return {"ModelArn": model.arn}

    def describe_model(self, body: Json) -> Json:
        model = self._model(body["ModelName"])
        out = {"EnableNetworkIsolation": False, **copy.deepcopy(model.spec)}
        out.update(ModelName=model.name, ModelArn=model.arn, CreationTime=model.created)
        return out

    def delete_model(self, body: Json) -> Json:
        model = self._model(body["ModelName"])
        for endpoint in self._serving("model", model.name):
            self.deleted_while_served.append(f"model {model.name} (served by endpoint {endpoint})")
        del self.models[model.name.lower()]
        return {}

    def list_models(self, body: Json) -> Json:
        return _list_named(self.models.values(), body, "ListModels", "Model")

    # -- endpoint configs ---------------------------------------------------------------------------------

    def create_endpoint_config(self, body: Json) -> Json:
        name = body["EndpointConfigName"]
        if name.lower() in self.configs:
            raise validation(
                "Cannot create already existing endpoint configuration "
                f'"{self.arn("endpoint-config", name)}".'
            )
        seen: set[str] = set()
        for variant in body["ProductionVariants"]:
            if variant["VariantName"] in seen:
                raise validation(f'The variant name "{variant["VariantName"]}" is used more than once.')
            seen.add(variant["VariantName"])
            model = self._model(variant["ModelName"])
            if "ServerlessConfig" in variant:
                if len(model_containers(model.spec)) > 1:
                    raise validation(
                        "Serverless inference does not support inference pipelines (multi-container models)."
                    )
            else:
                for member in ("InstanceType", "InitialInstanceCount"):
                    if member not in variant:
                        raise validation(
                            f"{member} is required for the instance-based production variant "
                            f'"{variant["VariantName"]}".'
                        )
        spec = {k: copy.deepcopy(v) for k, v in body.items() if k != "Tags"}
        for variant in spec["ProductionVariants"]:
            variant.setdefault("InitialVariantWeight", 1.0)
        config = EndpointConfig(
            name, self.arn("endpoint-config", name), self.clock(), spec, list(body.get("Tags") or [])
        )
        self.configs[name.lower()] = config
        return {"EndpointConfigArn": config.arn}

    def describe_endpoint_config(self, body: Json) -> Json:
        config = self._config(body["EndpointConfigName"])
        out = copy.deepcopy(config.spec)
        out.update(EndpointConfigName=config.name, EndpointConfigArn=config.arn, CreationTime=config.created)
        return out

    def delete_endpoint_config(self, body: Json) -> Json:
        config = self._config(body["EndpointConfigName"])
        for endpoint in self._serving("config", config.name):
            self.deleted_while_served.append(f"endpoint config {config.name} (served by endpoint {endpoint})")
        del self.configs[config.name.lower()]
        return {}

    def list_endpoint_configs(self, body: Json) -> Json:
        return _list_named(self.configs.values(), body, "ListEndpointConfigs", "EndpointConfig")

    # -- endpoints ----------------------------------------------------------------------------------------

    def create_endpoint(self, body: Json) -> Json:
        name = body["EndpointName"]
        if name.lower() in self.endpoints:
            raise validation(f'Cannot create already existing endpoint "{self.arn("endpoint", name)}".')
        config = self._config(body["EndpointConfigName"])
        now = self.clock()
        endpoint = Endpoint(
            name=name,
            arn=self.arn("endpoint", name),
            created=now,
            modified=now,
            status="Creating",
            config_name=config.name,
            tags=list(body.get("Tags") or []),
            last_deployment_config=body.get("DeploymentConfig"),
        )
        failure = self.faults.endpoint_failure("fail_create", name, config.name)
        endpoint.pending = Pending("create", now, now + self.delays.create, config.name, failure)
        self.endpoints[name.lower()] = endpoint
        return {"EndpointArn": endpoint.arn}

    def describe_endpoint(self, body: Json) -> Json:
        endpoint = self._endpoint(body["EndpointName"])
        out: Json = {
            "EndpointName": endpoint.name,
            "EndpointArn": endpoint.arn,
            "EndpointConfigName": endpoint.config_name,
            "EndpointStatus": endpoint.status,
            "CreationTime": endpoint.created,
            "LastModifiedTime": endpoint.modified,
        }
        if endpoint.variants:
            out["ProductionVariants"] = [v.summary() for v in endpoint.variants]
        if endpoint.failure_reason:
            out["FailureReason"] = endpoint.failure_reason
        if endpoint.last_deployment_config:
            out["LastDeploymentConfig"] = endpoint.last_deployment_config
        pending = endpoint.pending
        if pending is not None and pending.kind == "update":
            out["PendingDeploymentSummary"] = {
                "EndpointConfigName": pending.config_name,
                "StartTime": pending.started,
            }
            phase = pending.phase(self.clock())
            if phase is not None:
                out["PendingDeploymentSummary"]["ProductionVariants"] = self._pending_variants(pending, phase)
        return out

    def _pending_variants(self, pending: Pending, phase: Phase) -> list[Json]:
        """The new fleet of a guarded deployment, with its VariantStatus (the phase it is in)."""
        assert pending.config_name is not None
        config = self.configs.get(pending.config_name.lower())
        specs = config.spec["ProductionVariants"] if config else []
        green = {variant.name: variant for variant in pending.green or []}
        out = []
        for spec in specs:
            variant = green.get(spec["VariantName"])
            count = variant.desired_count if variant else int(spec.get("InitialInstanceCount", 1))
            summary: Json = {
                "VariantName": spec["VariantName"],
                "DesiredInstanceCount": count,
                "CurrentInstanceCount": count if variant else 0,
                "DesiredWeight": float(spec.get("InitialVariantWeight", 1.0)),
                "CurrentWeight": float(spec.get("InitialVariantWeight", 1.0)) * phase.share,
                "InstanceType": spec.get("InstanceType"),
                "VariantStatus": [
                    {"Status": phase.status, "StatusMessage": phase.message, "StartTime": phase.start}
                ],
            }
            if variant is not None and variant.images:
                summary["DeployedImages"] = copy.deepcopy(variant.images)
            out.append(summary)
        return out

    def serving(self, endpoint: Endpoint, draw: float) -> list[Variant]:
        """The fleet an invocation goes to: the new one for its share of the traffic while a guarded
        deployment shifts it (``draw`` is uniform in [0, 1)), else the running one."""
        pending = endpoint.pending
        if pending is not None and pending.green:
            phase = pending.phase(self.clock())
            if phase is not None and draw < phase.share:
                return pending.green
        return endpoint.variants

    def update_endpoint(self, body: Json) -> Json:
        endpoint = self._endpoint(body["EndpointName"])
        self._ensure_idle(endpoint)
        if endpoint.status == "Failed":
            raise validation(
                f'Cannot update failed endpoint "{endpoint.arn}". Delete the endpoint and create it again.'
            )
        config = self._config(body["EndpointConfigName"])
        variants = config.spec["ProductionVariants"]
        self._check_autoscaled_variants(endpoint, variants)
        retained = _retained_properties(body)
        deployment = body.get("DeploymentConfig")
        if body.get("RetainDeploymentConfig") and not deployment:
            deployment = endpoint.last_deployment_config
        now = self.clock()
        failure = self.faults.endpoint_failure("fail_update", endpoint.name, config.name)
        pending = Pending("update", now, now + self.delays.update, config.name, failure, retained=retained)
        if deployment and (deployment.get("BlueGreenUpdatePolicy") or deployment.get("RollingUpdatePolicy")):
            # The new fleet's size: the new config's count, or the live one when it is retained.
            live = {variant.name: variant.desired_count for variant in endpoint.variants}
            sizes = [
                live.get(v["VariantName"], int(v.get("InitialInstanceCount", 1)))
                if "DesiredInstanceCount" in retained
                else int(v.get("InitialInstanceCount", 1))
                for v in variants
            ]
            _check_deployment(deployment, endpoint, variants, min(sizes))
            if failure is None:
                # A deployment that fails while provisioning ends then, as SageMaker's default one does.
                pending.phases = self._plan(deployment, now, min(sizes))
                pending.due = pending.phases[-1].end
                alarms = (deployment.get("AutoRollbackConfiguration") or {}).get("Alarms") or []
                pending.alarms = tuple(str(alarm.get("AlarmName", "")) for alarm in alarms)
        endpoint.pending = pending
        endpoint.status, endpoint.modified = "Updating", now
        if deployment:
            endpoint.last_deployment_config = deployment
        return {"EndpointArn": endpoint.arn}

    def _check_autoscaled_variants(self, endpoint: Endpoint, variants: list[Json]) -> None:
        """Application Auto Scaling refuses an update that changes the instance type of a variant registered
        as a scalable target, or removes it; a change of its model alone is allowed."""
        if self.autoscaling is None:
            return
        registered = self.autoscaling.registered_variants(endpoint.name)
        if not registered:
            return
        wanted = {v["VariantName"]: v.get("InstanceType") for v in variants}
        live = {v.name: v.instance_type for v in endpoint.variants}
        blocked = sorted(
            name for name in registered if name not in wanted or wanted[name] != live.get(name, wanted[name])
        )
        if blocked:
            raise validation(
                f'The variant(s) [{", ".join(blocked)}] of endpoint "{endpoint.arn}" are registered as '
                "scalable targets with Application Auto Scaling: an update cannot change their instance "
                "type or remove them. Delete the scaling policies and deregister the scalable targets "
                "(DeregisterScalableTarget) before updating the endpoint, then register them again."
            )

    def _plan(self, deployment: Json, now: float, size: int) -> list[Phase]:
        """The phases of a guarded deployment, from now: provisioning, then each traffic step and its
        baking period, then the wait before the old fleet is terminated."""
        scale = self.delays.deployment_time_scale
        phases = [Phase("Creating", "provisioning the new fleet", now, now + self.delays.update, 0.0, False)]
        blue_green = deployment.get("BlueGreenUpdatePolicy")
        if blue_green:
            routing = blue_green["TrafficRoutingConfiguration"]
            kind = routing["Type"]
            wait = routing["WaitIntervalInSeconds"] * scale
            if kind == "CANARY":
                steps = [_fraction(routing["CanarySize"], size), 1.0]
            elif kind == "LINEAR":
                steps = _steps(_fraction(routing["LinearStepSize"], size))
            else:
                steps = [1.0]
            label = {"ALL_AT_ONCE": "all at once", "CANARY": "canary", "LINEAR": "linear"}[kind]
            termination = float(blue_green.get("TerminationWaitInSeconds") or 0) * scale
        else:
            rolling = deployment["RollingUpdatePolicy"]
            wait = rolling["WaitIntervalInSeconds"] * scale
            steps = _steps(_fraction(rolling["MaximumBatchSize"], size))
            label, termination = "rolling", 0.0
        start = phases[0].end
        for index, share in enumerate(steps, start=1):
            message = (
                f"{label}: step {index} of {len(steps)}, {round(share * 100)}% of traffic on the new fleet, "
                f"baking for {wait:g} s"
            )
            phases.append(Phase("Baking", message, start, start + wait, share, True))
            start += wait
        if termination:
            message = f"{label}: waiting {termination:g} s before terminating the old fleet"
            phases.append(Phase("Deleting", message, start, start + termination, 1.0, False))
        return phases

    def update_endpoint_weights_and_capacities(self, body: Json) -> Json:
        endpoint = self._endpoint(body["EndpointName"])
        self._ensure_idle(endpoint)
        if endpoint.status == "Failed":
            raise validation(
                f'Cannot update failed endpoint "{endpoint.arn}". Delete the endpoint and create it again.'
            )
        variants = {v.name: v for v in endpoint.variants}
        missing = [
            w["VariantName"] for w in body["DesiredWeightsAndCapacities"] if w["VariantName"] not in variants
        ]
        if missing:
            raise validation(
                f'The variant(s) [{", ".join(missing)}] are not present in endpoint "{endpoint.arn}".'
            )
        for wanted in body["DesiredWeightsAndCapacities"]:
            variant = variants[wanted["VariantName"]]
            if "DesiredWeight" in wanted:
                variant.desired_weight = float(wanted["DesiredWeight"])
            if "DesiredInstanceCount" in wanted:
                variant.desired_count = int(wanted["DesiredInstanceCount"])
        now = self.clock()
        endpoint.pending = Pending(
            "weights", now, now + self.delays.update, weights=body["DesiredWeightsAndCapacities"]
        )
        endpoint.status, endpoint.modified = "Updating", now
        return {"EndpointArn": endpoint.arn}

    def delete_endpoint(self, body: Json) -> Json:
        endpoint = self._endpoint(body["EndpointName"])
        self._ensure_idle(endpoint)
        if self.autoscaling is not None:
            # Application Auto Scaling deregisters the endpoint's scalable targets itself (when the caller
            # may deregister them), without notice.
            self.autoscaling.forget_endpoint(endpoint.name)
        now = self.clock()
        endpoint.pending = Pending("delete", now, now + self.delays.delete)
        endpoint.status, endpoint.modified = "Deleting", now
        return {}

    def list_endpoints(self, body: Json) -> Json:
        rows = [
            (
                e.name,
                e.created,
                e.modified,
                e.status,
                {
                    "EndpointName": e.name,
                    "EndpointArn": e.arn,
                    "CreationTime": e.created,
                    "LastModifiedTime": e.modified,
                    "EndpointStatus": e.status,
                },
            )
            for e in self.endpoints.values()
        ]
        page, token = _page(_filtered(rows, body, ("Name", "CreationTime", "Status")), body, "ListEndpoints")
        return {"Endpoints": page, **({"NextToken": token} if token else {})}

    # -- tags ---------------------------------------------------------------------------------------------

    _ARN = re.compile(r"arn:[a-z-]+:sagemaker:[a-z0-9-]*:\d{12}:(model|endpoint-config|endpoint)/(.+)")

    def _tagged(self, arn: str) -> Model | EndpointConfig | Endpoint:
        match = self._ARN.fullmatch(arn)
        if match is None:
            raise validation(
                f'The resource "{arn}" is not a model, endpoint configuration or endpoint of this emulator.'
            )
        kind, name = match.groups()
        if kind == "model":
            return self._model(name)
        if kind == "endpoint-config":
            return self._config(name)
        return self._endpoint(name)

    def add_tags(self, body: Json) -> Json:
        resource = self._tagged(body["ResourceArn"])
        merged = {t["Key"]: t.get("Value", "") for t in resource.tags}
        merged.update({t["Key"]: t.get("Value", "") for t in body["Tags"]})
        if len(merged) > MAX_TAGS:
            raise validation(f"A resource can have at most {MAX_TAGS} tags.")
        resource.tags = [{"Key": k, "Value": v} for k, v in merged.items()]
        return {"Tags": body["Tags"]}

    def delete_tags(self, body: Json) -> Json:
        resource = self._tagged(body["ResourceArn"])
        drop = set(body["TagKeys"])
        resource.tags = [t for t in resource.tags if t["Key"] not in drop]
        return {}

    def list_tags(self, body: Json) -> Json:
        resource = self._tagged(body["ResourceArn"])
        page, token = _page(copy.deepcopy(resource.tags), body, "ListTags")
        return {"Tags": page, **({"NextToken": token} if token else {})}

    # -- out-of-band changes (tests and the admin API) ----------------------------------------------------

    def force_status(
        self, name: str, status: str, failure_reason: str | None, duration: float | None
    ) -> None:
        """Put an endpoint in a status at once, as AWS might (maintenance, an outage); with ``duration``
        it returns to InService after that many seconds."""
        if status not in STATUSES:
            raise validation(f"Unknown endpoint status {status!r}.")
        endpoint = self._endpoint(name)
        now = self.clock()
        endpoint.status, endpoint.modified = status, now
        endpoint.pending = None
        if failure_reason is not None:
            endpoint.failure_reason = failure_reason or None
        if duration is not None:
            endpoint.pending = Pending("system", now, now + duration)

    def remove_endpoint(self, name: str) -> None:
        self.endpoints.pop(self._endpoint(name).name.lower())

    def snapshot(self) -> Json:
        return {
            "models": sorted(m.name for m in self.models.values()),
            "endpointConfigs": sorted(c.name for c in self.configs.values()),
            "endpoints": {
                e.name: {
                    "status": e.status,
                    "endpointConfigName": e.config_name,
                    "failureReason": e.failure_reason,
                    "pending": None if e.pending is None else e.pending.kind,
                    "variants": {
                        v.name: {
                            "desiredInstanceCount": v.desired_count,
                            "currentInstanceCount": v.current_count,
                        }
                        for v in e.variants
                    },
                }
                for e in sorted(self.endpoints.values(), key=lambda e: e.name)
            },
        }


# The variant properties RetainAllVariantProperties keeps (DataCaptureConfig is not emulated).
RETAINABLE = frozenset({"DesiredInstanceCount", "DesiredWeight"})


def _retained_properties(body: Json) -> frozenset[str]:
    if not body.get("RetainAllVariantProperties"):
        return frozenset()
    excluded = {item["VariantPropertyType"] for item in body.get("ExcludeRetainedVariantProperties") or []}
    return RETAINABLE - excluded


def _fraction(size: Json, instances: int) -> float:
    """A CapacitySize as a share of the variant's fleet."""
    if size["Type"] == "CAPACITY_PERCENT":
        return float(size["Value"]) / 100.0
    return float(size["Value"]) / max(instances, 1)


def _steps(fraction: float) -> list[float]:
    """The shares of traffic on the new fleet after each step of ``fraction``."""
    count = math.ceil(round(1.0 / fraction, 9))
    return [min(1.0, round(step * fraction, 9)) for step in range(1, count + 1)]


def _check_size(size: Json | None, member: str, low: float, high: float, instances: int) -> None:
    if size is None:
        return
    if size["Type"] == "CAPACITY_PERCENT" and size["Value"] > 100:
        raise validation(f"{member}: a CAPACITY_PERCENT value is at most 100 (got {size['Value']}).")
    share = _fraction(size, instances)
    if not low <= share <= high:
        raise validation(
            f"{member} must be {round(low * 100)}-{round(high * 100)}% of the variant's total instance count "
            f"({instances}); got {size['Value']} ({size['Type']})."
        )


def _check_deployment(deployment: Json, endpoint: Endpoint, variants: list[Json], instances: int) -> None:
    """Deployment guardrails' documented rules (the texts are the emulator's own)."""
    blue_green = deployment.get("BlueGreenUpdatePolicy")
    rolling = deployment.get("RollingUpdatePolicy")
    if blue_green and rolling:
        raise validation(
            "A DeploymentConfig takes a BlueGreenUpdatePolicy or a RollingUpdatePolicy, not both."
        )
    before = sorted(v.name for v in endpoint.variants)
    after = sorted(v["VariantName"] for v in variants)
    if before and before != after:
        raise validation(
            "A blue/green or rolling deployment needs the new endpoint configuration to keep the variant "
            f"names of the current one ({', '.join(before)}); got {', '.join(after)}."
        )
    if blue_green:
        routing = blue_green["TrafficRoutingConfiguration"]
        kind = routing["Type"]
        for needed, member in (("CANARY", "CanarySize"), ("LINEAR", "LinearStepSize")):
            if kind == needed and not routing.get(member):
                raise validation(f"TrafficRoutingConfiguration.{member} is required when Type is {needed}.")
        if kind == "CANARY":
            _check_size(routing["CanarySize"], "CanarySize", 0.0, 0.5, instances)
        if kind == "LINEAR":
            _check_size(routing["LinearStepSize"], "LinearStepSize", 0.1, 0.5, instances)
    if rolling:
        if len(variants) > 1:
            raise validation("Rolling deployments are not supported for endpoints with several variants.")
        _check_size(rolling["MaximumBatchSize"], "MaximumBatchSize", 0.05, 0.5, instances)
        _check_size(rolling.get("RollbackMaximumBatchSize"), "RollbackMaximumBatchSize", 0.0, 1.0, instances)


def operation_method(operation: str) -> str:
    """SageMaker's operation name as the method of SageMakerState serving it (CreateModel -> create_model)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


OPERATIONS = (
    "CreateModel",
    "DescribeModel",
    "DeleteModel",
    "ListModels",
    "CreateEndpointConfig",
    "DescribeEndpointConfig",
    "DeleteEndpointConfig",
    "ListEndpointConfigs",
    "CreateEndpoint",
    "DescribeEndpoint",
    "UpdateEndpoint",
    "DeleteEndpoint",
    "ListEndpoints",
    "AddTags",
    "DeleteTags",
    "ListTags",
    "UpdateEndpointWeightsAndCapacities",
)
