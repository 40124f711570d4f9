"""SageMaker's resources and their lifecycle: models, endpoint configs, endpoints, tags.

Not thread-safe by itself: the service holds one lock around every call. Endpoint transitions are
computed lazily from timestamps (``tick``) at the start of every call, so no background thread is needed
and a delay of 0 makes an endpoint InService at the very next call, as a fast SageMaker would.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .errors import validation
from .faults import FaultSet
from .validation import check_model_rules, model_containers

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
class Pending:
    """Work SageMaker is doing on an endpoint, due to end at ``due``."""

    kind: Literal["create", "update", "delete", "weights", "system"]
    started: float
    due: float
    config_name: str | None = None
    failure: str | None = None
    weights: list[Json] | None = None
    then: str = "InService"


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
        """Complete every endpoint transition whose time has come, in the order they were due."""
        now = self.clock()
        due = [e for e in self.endpoints.values() if e.pending is not None and e.pending.due <= now]
        due.sort(key=lambda e: e.pending.due if e.pending else 0.0)
        for endpoint in due:
            self._complete(endpoint)

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
                    spec["VariantName"], model.name, containers, mode, weight, count, weight, count, images
                )
            )
        return variants

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
            failure = (
                pending.failure
                or self._provision_problem(pending.config_name)
                # The running deployment is described by its config: once that is gone, SageMaker cannot
                # move the endpoint off it either.
                or self._provision_problem(endpoint.config_name)
            )
            endpoint.status = "InService"
            if failure:
                endpoint.failure_reason = failure
            else:
                endpoint.config_name = self.configs[pending.config_name.lower()].name
                endpoint.variants = self._deploy(pending.config_name, pending.due)
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
        return out

    def update_endpoint(self, body: Json) -> Json:
        endpoint = self._endpoint(body["EndpointName"])
        self._ensure_idle(endpoint)
        if endpoint.status == "Failed":
            raise validation(
                f'Cannot update failed endpoint "{endpoint.arn}". Delete the endpoint and create it again.'
            )
        config = self._config(body["EndpointConfigName"])
        now = self.clock()
        failure = self.faults.endpoint_failure("fail_update", endpoint.name, config.name)
        endpoint.pending = Pending("update", now, now + self.delays.update, config.name, failure)
        endpoint.status, endpoint.modified = "Updating", now
        if body.get("DeploymentConfig"):
            endpoint.last_deployment_config = body["DeploymentConfig"]
        return {"EndpointArn": endpoint.arn}

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
                }
                for e in sorted(self.endpoints.values(), key=lambda e: e.name)
            },
        }


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
