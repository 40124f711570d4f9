"""The pure core: ``(desired spec, observed SageMaker state, memory) -> actions, status, when to look again``.

No kopf, no boto3, no I/O. The same functions serve creation, change, resumption after a restart and
periodic re-checks: they never ask what happened before, only what is there now (level-triggered).
The one thing the world cannot tell us is whether an update to the desired config was already tried and
rolled back — SageMaker returns the endpoint to InService on the old config, with a FailureReason that
may later be empty — so that single fact is remembered in the object's status (``lastDeployment``).

Autoscaling is Application Auto Scaling's: the variant registered as a scalable target with one
target-tracking policy. Its live instance count is never drift; every UpdateEndpoint of an autoscaled
endpoint keeps it (RetainAllVariantProperties). An update SageMaker refuses while the variant is registered
(a new instance type, a renamed variant) deregisters it first, in the same look; it is registered again by
whichever later look finds the endpoint InService with the variant live and no target: the one after the
update, after a crash, after a rollback or a refused update alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mce_operator import naming
from mce_operator.api import (
    SAGEMAKER_NAMES,
    AutoscalingStatus,
    CapacitySize,
    DeletionPolicy,
    Deployment,
    LastDeployment,
    MultiContainerEndpointSpec,
)

# SageMaker is changing the endpoint: any update or delete would be refused ("Cannot update in-progress").
BUSY = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})

# The services an Action goes to (boto3's client names).
SAGEMAKER = "sagemaker"
AUTOSCALING = "application-autoscaling"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# The one scaling policy the operator manages on its scalable target.
POLICY_NAME = "mce-invocations-per-instance"
INVOCATIONS_METRIC = "SageMakerVariantInvocationsPerInstance"

# Condition reasons that mean "retrying cannot help until the spec changes".
REASON_INVALID_SPEC = "InvalidSpec"
REASON_REJECTED = "SageMakerRejected"
# AccessDenied and quota errors are Degraded too, but retried at the steady pace: they are fixed outside
# the spec (IAM, a quota increase), so waiting for a spec change would strand the object.
TERMINAL_REASONS = frozenset({REASON_INVALID_SPEC, REASON_REJECTED})


@dataclass(frozen=True)
class Identity:
    namespace: str
    name: str
    uid: str
    generation: int
    # Take over resources left by an earlier object of the same namespace/name (see naming.names_owner).
    adopt: bool = False


@dataclass(frozen=True)
class Timing:
    """How soon to look again: often while SageMaker works, rarely when all is steady."""

    busy: float = 10.0
    steady: float = 300.0
    # At most this long between full looks (every model, config and tag read again): what bounds the
    # time to find drift that DescribeEndpoint alone cannot show. 36 steady intervals by default.
    drift: float = 10800.0


@dataclass(frozen=True)
class Scaling:
    """The scalable target and policy the spec asks for (Application Auto Scaling's requests)."""

    min_capacity: int
    max_capacity: int
    # PutScalingPolicy's TargetTrackingScalingPolicyConfiguration.
    policy: Mapping[str, Any]


@dataclass(frozen=True)
class Desired:
    """Everything the spec means in SageMaker terms, derived once per reconcile."""

    identity: Identity
    endpoint_name: str
    region: str | None
    model_name: str
    config_name: str
    model_request: Mapping[str, Any]
    config_request: Mapping[str, Any]
    tags: Mapping[str, str]
    deletion_policy: DeletionPolicy
    container_count: int
    variant_name: str = ""
    instance_type: str = ""
    autoscaling: Scaling | None = None
    # UpdateEndpoint's DeploymentConfig (None: SageMaker's default, all traffic at once).
    deployment: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Tagged:
    """A SageMaker model or endpoint config, as listed, with its tags."""

    name: str
    arn: str
    tags: Mapping[str, str]


@dataclass(frozen=True)
class ObservedVariant:
    """A production variant as DescribeEndpoint shows it: its live instance counts."""

    name: str
    desired_instance_count: int | None = None
    current_instance_count: int | None = None


@dataclass(frozen=True)
class ObservedEndpoint:
    name: str
    arn: str
    status: str
    config_name: str
    failure_reason: str
    tags: Mapping[str, str]
    variants: tuple[ObservedVariant, ...] = ()
    # The phase of a guarded deployment in progress (the new fleet's VariantStatus and its message).
    deployment_phase: str = ""


@dataclass(frozen=True)
class ScalableTarget:
    """A scalable target registered for one of the endpoint's variants, with its policies' configurations
    (TargetTrackingScalingPolicyConfiguration, or whichever configuration a policy has) by name."""

    variant: str
    resource_id: str
    min_capacity: int
    max_capacity: int
    policies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    """The SageMaker side: the endpoint (None if absent) and every model/config with this endpoint's
    name prefix, whoever owns them."""

    endpoint: ObservedEndpoint | None
    models: Sequence[Tagged] = ()
    configs: Sequence[Tagged] = ()
    # Lowercase names of the configs and models the endpoint serves or is moving to, whoever owns it:
    # never deleted, even when their tags say this object owns them (what-users-hit #4).
    served: frozenset[str] = frozenset()
    # The scalable targets of the endpoint's variants; None when not looked at (the endpoint is busy, or
    # neither the spec nor the status has autoscaling): no decision is then made about them.
    scaling: tuple[ScalableTarget, ...] | None = None
    # The instance type of each variant of the config the endpoint serves, read only when a registered
    # variant is about to be updated; None: unknown (treated as changing).
    serving_instance_types: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Memory:
    """What the previous status remembers that SageMaker cannot tell."""

    last_deployment: LastDeployment | None = None
    # The message of a terminal failure recorded for the current generation: do not try again.
    terminal_failure: str | None = None
    terminal_reason: str | None = None
    # The scalable target last observed (status.autoscaling): kept while it cannot be looked at, and the
    # reason to look at it after autoscaling left the spec.
    autoscaling: AutoscalingStatus | None = None


@dataclass(frozen=True)
class Action:
    """One call: ``operation`` is the API name, ``params`` its boto3 keyword arguments, ``service`` the
    boto3 client (SageMaker, or Application Auto Scaling)."""

    operation: str
    name: str
    params: Mapping[str, Any]
    message: str
    service: str = SAGEMAKER


@dataclass(frozen=True)
class Cond:
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Report:
    """The status to publish."""

    endpoint_name: str
    endpoint_arn: str | None
    endpoint_status: str | None
    model_name: str
    endpoint_config_name: str
    failure_reason: str
    ready: Cond
    progressing: Cond
    degraded: Cond
    # The variant's live instance counts, and its scalable target as observed (or remembered).
    desired_instance_count: int | None = None
    current_instance_count: int | None = None
    autoscaling: AutoscalingStatus | None = None


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    report: Report
    # Seconds until the next look; the timer's steady interval applies when the world is at rest.
    requeue_after: float
    # What to remember once the actions have succeeded (None: keep what is remembered).
    last_deployment: LastDeployment | None = None
    # Deletion only: nothing is left to do, the finalizer may go.
    finished: bool = False
    # Human-readable notes for events that are not SageMaker actions (e.g. a retained endpoint).
    notes: tuple[str, ...] = field(default_factory=tuple)


# --- Building the desired state --------------------------------------------------------------------


def _model_request(spec: MultiContainerEndpointSpec) -> dict[str, Any]:
    containers = []
    for container in spec.containers:
        item: dict[str, Any] = {"Image": container.image}
        if container.container_hostname is not None:
            item["ContainerHostname"] = container.container_hostname
        if container.model_data_url is not None:
            item["ModelDataUrl"] = container.model_data_url
        if container.environment:
            item["Environment"] = dict(container.environment)
        if container.image_config is not None:
            item["ImageConfig"] = {
                "RepositoryAccessMode": container.image_config.repository_access_mode.value
            }
        containers.append(item)
    request: dict[str, Any] = {
        "ExecutionRoleArn": spec.execution_role_arn,
        "Containers": containers,
        "InferenceExecutionConfig": {"Mode": spec.mode.value},
        "EnableNetworkIsolation": spec.enable_network_isolation,
    }
    if spec.vpc_config is not None:
        request["VpcConfig"] = {
            "SecurityGroupIds": list(spec.vpc_config.security_group_ids),
            "Subnets": list(spec.vpc_config.subnets),
        }
    return request


def _variant(spec: MultiContainerEndpointSpec, model_name: str) -> dict[str, Any]:
    variant: dict[str, Any] = {
        "VariantName": spec.variant_name,
        "ModelName": model_name,
        "InstanceType": spec.instance_type,
        "InitialInstanceCount": spec.initial_instance_count,
        "InitialVariantWeight": 1.0,
    }
    optional = {
        "VolumeSizeInGB": spec.volume_size_in_gb,
        "ModelDataDownloadTimeoutInSeconds": spec.model_data_download_timeout_in_seconds,
        "ContainerStartupHealthCheckTimeoutInSeconds": spec.container_startup_health_check_timeout_in_seconds,
    }
    variant.update({key: value for key, value in optional.items() if value is not None})
    return variant


def _capacity(size: CapacitySize) -> dict[str, Any]:
    return {"Type": SAGEMAKER_NAMES[size.type], "Value": size.value}


def deployment_config(deployment: Deployment | None) -> dict[str, Any] | None:
    """UpdateEndpoint's DeploymentConfig for the spec's deployment (None: SageMaker's default)."""
    if deployment is None:
        return None
    config: dict[str, Any] = {}
    blue_green = deployment.blue_green
    if blue_green is not None:
        routing = blue_green.traffic_routing
        traffic: dict[str, Any] = {
            "Type": SAGEMAKER_NAMES[routing.type],
            "WaitIntervalInSeconds": routing.wait_interval_in_seconds,
        }
        if routing.canary_size is not None:
            traffic["CanarySize"] = _capacity(routing.canary_size)
        if routing.linear_step_size is not None:
            traffic["LinearStepSize"] = _capacity(routing.linear_step_size)
        policy: dict[str, Any] = {"TrafficRoutingConfiguration": traffic}
        if blue_green.termination_wait_in_seconds is not None:
            policy["TerminationWaitInSeconds"] = blue_green.termination_wait_in_seconds
        if blue_green.maximum_execution_timeout_in_seconds is not None:
            policy["MaximumExecutionTimeoutInSeconds"] = blue_green.maximum_execution_timeout_in_seconds
        config["BlueGreenUpdatePolicy"] = policy
    rolling = deployment.rolling
    if rolling is not None:
        batches: dict[str, Any] = {
            "MaximumBatchSize": _capacity(rolling.maximum_batch_size),
            "WaitIntervalInSeconds": rolling.wait_interval_in_seconds,
        }
        if rolling.maximum_execution_timeout_in_seconds is not None:
            batches["MaximumExecutionTimeoutInSeconds"] = rolling.maximum_execution_timeout_in_seconds
        if rolling.rollback_maximum_batch_size is not None:
            batches["RollbackMaximumBatchSize"] = _capacity(rolling.rollback_maximum_batch_size)
        config["RollingUpdatePolicy"] = batches
    if deployment.auto_rollback_alarms:
        alarms = [{"AlarmName": name} for name in deployment.auto_rollback_alarms]
        config["AutoRollbackConfiguration"] = {"Alarms": alarms}
    return config or None


def _scaling(spec: MultiContainerEndpointSpec) -> Scaling | None:
    if spec.autoscaling is None:
        return None
    tracking = spec.autoscaling.target_tracking
    policy: dict[str, Any] = {
        "TargetValue": float(tracking.invocations_per_instance),
        "PredefinedMetricSpecification": {"PredefinedMetricType": INVOCATIONS_METRIC},
        "DisableScaleIn": tracking.disable_scale_in,
    }
    if tracking.scale_in_cooldown_in_seconds is not None:
        policy["ScaleInCooldown"] = tracking.scale_in_cooldown_in_seconds
    if tracking.scale_out_cooldown_in_seconds is not None:
        policy["ScaleOutCooldown"] = tracking.scale_out_cooldown_in_seconds
    return Scaling(spec.autoscaling.min_capacity, spec.autoscaling.max_capacity, policy)


def desired_state(spec: MultiContainerEndpointSpec, identity: Identity) -> Desired:
    endpoint_name = spec.endpoint_name or naming.default_endpoint_name(identity.namespace, identity.name)
    model_body = _model_request(spec)
    model_name = naming.child_name(endpoint_name, model_body)
    config_body = {"ProductionVariants": [_variant(spec, model_name)]}
    config_name = naming.child_name(endpoint_name, config_body)
    tags = {**spec.tags, **naming.ownership_tags(identity.namespace, identity.name, identity.uid)}
    return Desired(
        identity=identity,
        endpoint_name=endpoint_name,
        region=spec.region,
        model_name=model_name,
        config_name=config_name,
        model_request={"ModelName": model_name, **model_body},
        config_request={"EndpointConfigName": config_name, **config_body},
        tags=tags,
        deletion_policy=spec.deletion_policy,
        container_count=len(spec.containers),
        variant_name=spec.variant_name,
        instance_type=spec.instance_type,
        autoscaling=_scaling(spec),
        deployment=deployment_config(spec.deployment),
    )


def identity_of(meta: Mapping[str, Any]) -> Identity:
    """The Identity of an object from its metadata (the adopt annotation is "true" in any letter case)."""
    annotations = meta.get("annotations") or {}
    return Identity(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 1),
        adopt=str(annotations.get(naming.ADOPT_ANNOTATION, "")).lower() == "true",
    )


def memory_of(status: Mapping[str, Any], generation: int) -> Memory:
    """What an object's status remembers for ``generation``: its last deployment, and a terminal failure
    recorded for that same generation (a newer spec is tried afresh)."""
    last = status.get("lastDeployment")
    deployment = LastDeployment.model_validate(last) if isinstance(last, dict) else None
    scaled = status.get("autoscaling")
    autoscaling = AutoscalingStatus.model_validate(scaled) if isinstance(scaled, dict) else None
    for item in status.get("conditions") or []:
        terminal = (
            item.get("type") == "Degraded"
            and item.get("status") == "True"
            and item.get("reason") in TERMINAL_REASONS
            and item.get("observedGeneration") == generation
        )
        if terminal:
            return Memory(
                deployment,
                terminal_failure=item.get("message"),
                terminal_reason=item.get("reason"),
                autoscaling=autoscaling,
            )
    return Memory(deployment, autoscaling=autoscaling)


# --- Small helpers ---------------------------------------------------------------------------------


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def _owned(desired: Desired, tags: Mapping[str, str]) -> bool:
    identity = desired.identity
    return naming.names_owner(tags, identity.namespace, identity.name, identity.uid, adopt=identity.adopt)


def _find(items: Sequence[Tagged], name: str) -> Tagged | None:
    # SageMaker names are case-insensitive.
    return next((item for item in items if item.name.lower() == name.lower()), None)


def _create_model(desired: Desired) -> Action:
    params = {**desired.model_request, "Tags": _tag_list(desired.tags)}
    return Action("CreateModel", desired.model_name, params, f"Created model {desired.model_name}")


def _create_config(desired: Desired) -> Action:
    params = {**desired.config_request, "Tags": _tag_list(desired.tags)}
    return Action(
        "CreateEndpointConfig", desired.config_name, params, f"Created endpoint config {desired.config_name}"
    )


def _ensure_model_and_config(desired: Desired, observed: Observed) -> list[Action]:
    actions = []
    if _find(observed.models, desired.model_name) is None:
        actions.append(_create_model(desired))
    if _find(observed.configs, desired.config_name) is None:
        actions.append(_create_config(desired))
    return actions


def _sync_tags(desired: Desired, arn: str, name: str, current: Mapping[str, str]) -> list[Action]:
    """AddTags/DeleteTags so the resource carries exactly the desired tags (AWS's own ``aws:`` ones stay)."""
    actions = []
    wrong = {key: value for key, value in desired.tags.items() if current.get(key) != value}
    if wrong:
        keys = ", ".join(sorted(wrong))
        actions.append(
            Action("AddTags", name, {"ResourceArn": arn, "Tags": _tag_list(wrong)}, f"Tagged {name} ({keys})")
        )
    extra = sorted(key for key in current if key not in desired.tags and not key.startswith("aws:"))
    if extra:
        actions.append(
            Action(
                "DeleteTags",
                name,
                {"ResourceArn": arn, "TagKeys": extra},
                f"Removed tags {', '.join(extra)} from {name}",
            )
        )
    return actions


def _delete_endpoint(endpoint: ObservedEndpoint, message: str) -> Action:
    return Action("DeleteEndpoint", endpoint.name, {"EndpointName": endpoint.name}, message)


def _delete_owned(
    desired: Desired, observed: Observed, *, keep: Desired | None = None, adjective: str = ""
) -> list[Action]:
    """DeleteEndpointConfig, then DeleteModel, for each config and model this object owns (configs
    first: a config refers to its model), except those ``keep`` names."""
    kept = {keep.config_name.lower(), keep.model_name.lower()} if keep else set()
    deletions = [("DeleteEndpointConfig", "EndpointConfigName", "endpoint config", observed.configs)]
    deletions.append(("DeleteModel", "ModelName", "model", observed.models))
    return [
        Action(operation, item.name, {key: item.name}, f"Deleted {adjective}{what} {item.name}")
        for operation, key, what, items in deletions
        for item in items
        if item.name.lower() not in kept
        and item.name.lower() not in observed.served
        and _owned(desired, item.tags)
    ]


def _not_owned(desired: Desired, what: str, name: str, tags: Mapping[str, str]) -> str | None:
    if _owned(desired, tags):
        return None
    owner = tags.get(naming.TAG_NAMESPACE), tags.get(naming.TAG_NAME)
    held_by = f"{owner[0]}/{owner[1]}" if all(owner) else "a resource not managed by this operator"
    return (
        f"SageMaker {what} {name!r} already exists and is owned by someone else ({held_by}); "
        "it will not be changed or deleted. Choose another spec.endpointName, or delete it in SageMaker."
    )


def _cond(status: bool, reason: str, message: str = "") -> Cond:
    return Cond(status, reason, message)


def _report(
    desired: Desired,
    observed: Observed,
    *,
    ready: Cond,
    progressing: Cond,
    degraded: Cond,
    endpoint_status: str | None = None,
    failure_reason: str = "",
) -> Report:
    endpoint = observed.endpoint
    return Report(
        endpoint_name=desired.endpoint_name,
        endpoint_arn=endpoint.arn if endpoint else None,
        endpoint_status=endpoint_status
        if endpoint_status is not None
        else (endpoint.status if endpoint else None),
        model_name=desired.model_name,
        endpoint_config_name=desired.config_name,
        failure_reason=failure_reason,
        ready=ready,
        progressing=progressing,
        degraded=degraded,
    )


NOT_DEGRADED = _cond(False, "AsExpected")
NOT_PROGRESSING = _cond(False, "Idle")


def _progressing(
    desired: Desired, observed: Observed, reason: str, message: str, endpoint_status: str | None = None
) -> Report:
    """SageMaker is (or is about to be) working: not Ready, Progressing, not Degraded."""
    return _report(
        desired,
        observed,
        ready=_cond(False, reason, message),
        progressing=_cond(True, reason, message),
        degraded=NOT_DEGRADED,
        endpoint_status=endpoint_status,
    )


def _degraded(
    desired: Desired, observed: Observed, reason: str, message: str, failure_reason: str = ""
) -> Report:
    """The operator cannot proceed until something changes: not Ready, not Progressing, Degraded."""
    return _report(
        desired,
        observed,
        ready=_cond(False, reason, message),
        progressing=NOT_PROGRESSING,
        degraded=_cond(True, reason, message),
        failure_reason=failure_reason,
    )


# --- Autoscaling -----------------------------------------------------------------------------------


def resource_id(endpoint: str, variant: str) -> str:
    """Application Auto Scaling's ResourceId of a SageMaker variant."""
    return f"endpoint/{endpoint}/variant/{variant}"


def _target(resource: str) -> dict[str, str]:
    return {"ServiceNamespace": "sagemaker", "ResourceId": resource, "ScalableDimension": SCALABLE_DIMENSION}


def _deregister(target: ScalableTarget) -> list[Action]:
    """Deregister the target, before an update SageMaker refuses while it is registered and before
    deleting the endpoint. Its scaling policies go with it (Application Auto Scaling deletes a target's
    policies when it is deregistered), so the guide's DeleteScalingPolicy calls would be redundant."""
    resource = target.resource_id
    return [
        Action(
            "DeregisterScalableTarget",
            resource,
            _target(resource),
            f"Deregistered {resource} from Application Auto Scaling, with its scaling policies",
            AUTOSCALING,
        )
    ]


def _policy_matches(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    """Every setting the operator sends is what the policy has (DisableScaleIn may be left out when false;
    a cooldown the spec leaves to Application Auto Scaling is whatever it chose)."""
    if "CustomizedMetricSpecification" in have:
        return False
    defaults = {"DisableScaleIn": False}
    return all(have.get(key, defaults.get(key)) == value for key, value in want.items())


def _live_variants(desired: Desired, endpoint: ObservedEndpoint) -> set[str]:
    if endpoint.variants:
        return {variant.name for variant in endpoint.variants}
    # DescribeEndpoint lists no variant only before the first deployment; on the desired config the
    # desired variant is the one deployed.
    return {desired.variant_name} if endpoint.config_name == desired.config_name else set()


def _sync_scaling(desired: Desired, observed: Observed) -> list[Action]:
    """The calls that make the endpoint's scalable targets what the spec says, on an endpoint in service:
    any other target deregistered; the desired variant registered with the spec's bounds and policy, if
    it is live (an endpoint back on an old config after a refused or rolled-back update included: a
    target deregistered for that update is never left off)."""
    endpoint = observed.endpoint
    if observed.scaling is None or endpoint is None or endpoint.status != "InService":
        return []
    want = desired.autoscaling
    actions: list[Action] = []
    current: ScalableTarget | None = None
    for target in observed.scaling:
        if want is not None and target.variant == desired.variant_name:
            current = target
        else:
            actions += _deregister(target)
    if want is None or desired.variant_name not in _live_variants(desired, endpoint):
        return actions
    resource = resource_id(endpoint.name, desired.variant_name)
    if current is None or (current.min_capacity, current.max_capacity) != (
        want.min_capacity,
        want.max_capacity,
    ):
        actions.append(
            Action(
                "RegisterScalableTarget",
                resource,
                {**_target(resource), "MinCapacity": want.min_capacity, "MaxCapacity": want.max_capacity},
                f"Registered {resource} with Application Auto Scaling "
                f"({want.min_capacity} to {want.max_capacity} instances)",
                AUTOSCALING,
            )
        )
    have = current.policies.get(POLICY_NAME) if current is not None else None
    if have is None or not _policy_matches(want.policy, have):
        actions.append(
            Action(
                "PutScalingPolicy",
                resource,
                {
                    **_target(resource),
                    "PolicyName": POLICY_NAME,
                    "PolicyType": "TargetTrackingScaling",
                    "TargetTrackingScalingPolicyConfiguration": dict(want.policy),
                },
                f"Put scaling policy {POLICY_NAME} on {resource} "
                f"(target: {want.policy['TargetValue']:g} invocations per instance per minute)",
                AUTOSCALING,
            )
        )
    return actions


def _deregister_for_update(desired: Desired, observed: Observed) -> list[Action]:
    """Before an UpdateEndpoint: deregister every target SageMaker would refuse the update for (a new
    instance type, a variant renamed away) or the spec no longer wants. An unknown instance type counts
    as new: deregistering is always allowed, and the target is registered again afterwards."""
    types = observed.serving_instance_types
    actions: list[Action] = []
    for target in observed.scaling or ():
        kept = (
            desired.autoscaling is not None
            and target.variant == desired.variant_name
            and types is not None
            and types.get(target.variant) == desired.instance_type
        )
        if not kept:
            actions += _deregister(target)
    return actions


def scaling_status(desired: Desired, observed: Observed) -> AutoscalingStatus | None:
    """status.autoscaling: the desired variant's target as observed (another variant's if it has none)."""
    targets = sorted(observed.scaling or (), key=lambda t: (t.variant != desired.variant_name, t.variant))
    if not targets:
        return None
    target = targets[0]
    return AutoscalingStatus(
        min_capacity=target.min_capacity, max_capacity=target.max_capacity, policies=sorted(target.policies)
    )


def _with_live_state(decision: Decision, desired: Desired, observed: Observed, memory: Memory) -> Decision:
    """The report completed with what is live: the variant's instance counts and its scalable target
    (as remembered when it could not be looked at)."""
    endpoint = observed.endpoint
    variants = {v.name: v for v in endpoint.variants} if endpoint is not None else {}
    variant = variants.get(desired.variant_name) or next(iter(variants.values()), None)
    autoscaling = scaling_status(desired, observed) if observed.scaling is not None else memory.autoscaling
    if endpoint is None:
        autoscaling = None
    report = replace(
        decision.report,
        desired_instance_count=variant.desired_instance_count if variant else None,
        current_instance_count=variant.current_instance_count if variant else None,
        autoscaling=autoscaling,
    )
    return replace(decision, report=report)


# --- Reconcile -------------------------------------------------------------------------------------


def reconcile(desired: Desired, observed: Observed, memory: Memory, timing: Timing = Timing()) -> Decision:
    """The next step towards the desired endpoint."""
    return _with_live_state(_reconcile(desired, observed, memory, timing), desired, observed, memory)


def _reconcile(desired: Desired, observed: Observed, memory: Memory, timing: Timing) -> Decision:
    endpoint = observed.endpoint

    conflicts = [
        _not_owned(desired, "endpoint", endpoint.name, endpoint.tags) if endpoint else None,
        *(
            _not_owned(desired, what, item.name, item.tags)
            for what, item in (
                ("model", _find(observed.models, desired.model_name)),
                ("endpoint config", _find(observed.configs, desired.config_name)),
            )
            if item is not None
        ),
    ]
    conflict = next((message for message in conflicts if message), None)
    if conflict:
        report = _degraded(desired, observed, "NotOwned", conflict, failure_reason=conflict)
        return Decision((), report, timing.steady)

    if memory.terminal_failure:
        # SageMaker refused this spec (or access) for a reason retrying cannot fix: wait for a new spec.
        # A target deregistered for the refused update is registered again on the endpoint as it is.
        reason = memory.terminal_reason or REASON_REJECTED
        report = _degraded(
            desired, observed, reason, memory.terminal_failure, failure_reason=memory.terminal_failure
        )
        scaling = _sync_scaling(desired, observed)
        return Decision(tuple(scaling), report, timing.busy if scaling else timing.steady)

    if endpoint is None:
        actions = [
            *_ensure_model_and_config(desired, observed),
            Action(
                "CreateEndpoint",
                desired.endpoint_name,
                {
                    "EndpointName": desired.endpoint_name,
                    "EndpointConfigName": desired.config_name,
                    "Tags": _tag_list(desired.tags),
                },
                f"Creating endpoint {desired.endpoint_name} with config {desired.config_name}",
            ),
        ]
        message = f"Creating endpoint {desired.endpoint_name}"
        report = _progressing(desired, observed, "Creating", message, endpoint_status="Creating")
        return Decision(
            tuple(actions),
            report,
            timing.busy,
            last_deployment=LastDeployment(endpoint_config_name=desired.config_name),
        )

    if endpoint.status in BUSY:
        message = f"SageMaker endpoint is {endpoint.status}; waiting"
        if endpoint.deployment_phase:
            message += f" (deployment: {endpoint.deployment_phase})"
        report = _progressing(desired, observed, endpoint.status, message)
        return Decision((), report, timing.busy)

    if endpoint.status == "Failed":
        return _failed_endpoint(desired, observed, endpoint, timing)

    if endpoint.config_name == desired.config_name:
        return _on_desired_config(desired, observed, endpoint, timing)

    return _on_other_config(desired, observed, endpoint, memory, timing)


def _failed_endpoint(
    desired: Desired, observed: Observed, endpoint: ObservedEndpoint, timing: Timing
) -> Decision:
    reason = endpoint.failure_reason or "no reason given"
    if endpoint.config_name == desired.config_name:
        # The spec SageMaker failed on is still the desired one: retrying it would fail the same way.
        message = (
            f"SageMaker endpoint {endpoint.name} failed: {reason}. Fix the cause and change the spec; "
            "the operator will then delete and recreate the endpoint."
        )
        report = _degraded(desired, observed, "EndpointFailed", message, failure_reason=reason)
        return Decision((), report, timing.steady)
    # A Failed endpoint accepts only DeleteEndpoint: delete it, then create it again with the new spec.
    actions = [
        *(action for target in observed.scaling or () for action in _deregister(target)),
        _delete_endpoint(
            endpoint,
            f"Deleting failed endpoint {endpoint.name} to recreate it with config {desired.config_name}",
        ),
    ]
    message = f"Recreating failed endpoint {endpoint.name} with the new spec"
    report = _progressing(desired, observed, "Recreating", message, endpoint_status="Deleting")
    return Decision(tuple(actions), report, timing.busy)


def _tag_actions(desired: Desired, observed: Observed, endpoint: ObservedEndpoint) -> list[Action]:
    actions = _sync_tags(desired, endpoint.arn, endpoint.name, endpoint.tags)
    for item in (_find(observed.models, desired.model_name), _find(observed.configs, desired.config_name)):
        if item is not None:
            actions += _sync_tags(desired, item.arn, item.name, item.tags)
    return actions


def _on_desired_config(
    desired: Desired, observed: Observed, endpoint: ObservedEndpoint, timing: Timing
) -> Decision:
    # A model or config deleted out of band while the endpoint serves it is made again (same name, same
    # content): SageMaker's own patching and any later update of the endpoint need them.
    actions = [*_ensure_model_and_config(desired, observed), *_tag_actions(desired, observed, endpoint)]
    if endpoint.status != "InService":
        message = f"SageMaker endpoint is {endpoint.status} on the desired config"
        report = _degraded(
            desired, observed, endpoint.status, message, failure_reason=endpoint.failure_reason
        )
        # Nothing here ends by itself soon: look again at the steady pace unless something was done.
        return Decision(tuple(actions), report, timing.busy if actions else timing.steady)

    # The endpoint serves the desired config: only now is it safe to remove what it used before
    # (deleting a config or model still in use breaks SageMaker's own patching of the endpoint).
    actions += _delete_owned(desired, observed, keep=desired, adjective="superseded ")
    scaling = _sync_scaling(desired, observed)
    actions += scaling
    message = f"Endpoint {endpoint.name} is InService on {desired.config_name}"
    if scaling:
        # Not Ready until autoscaling is as the spec says: an endpoint left without it is not done.
        message += "; configuring autoscaling: " + "; ".join(action.message for action in scaling)
        report = _progressing(desired, observed, "ConfiguringAutoscaling", message)
    else:
        report = _report(
            desired,
            observed,
            ready=_cond(True, "InService", message),
            progressing=NOT_PROGRESSING,
            degraded=NOT_DEGRADED,
        )
    # Remember that the endpoint now serves the desired config, so that a rolled-back update to some
    # other config in the past is not mistaken for one when that config is desired again later.
    served = LastDeployment(endpoint_config_name=desired.config_name)
    return Decision(tuple(actions), report, timing.busy if actions else timing.steady, last_deployment=served)


def _on_other_config(
    desired: Desired, observed: Observed, endpoint: ObservedEndpoint, memory: Memory, timing: Timing
) -> Decision:
    last = memory.last_deployment
    # An update of this generation went back to the config it started from. A later generation (even a
    # tags-only change) tries once more: the user may have fixed the cause outside the spec.
    rolled_back = (
        last is not None
        and last.endpoint_config_name == desired.config_name
        and last.from_endpoint_config_name is not None
        and last.from_endpoint_config_name.lower() == endpoint.config_name.lower()
        and last.generation in (None, desired.identity.generation)
    )
    if rolled_back and endpoint.status != "InService":
        # The update and its rollback both failed (UpdateRollbackFailed: a mixed fleet), or the endpoint
        # is out of service: say what SageMaker says, and do not pile another update on top.
        reason = endpoint.failure_reason or "SageMaker gave no reason"
        message = (
            f"Updating endpoint {endpoint.name} to {desired.config_name} failed and the endpoint is "
            f"{endpoint.status} on {endpoint.config_name}: {reason}. "
            "Change the spec (any field) to try once more."
        )
        report = _degraded(desired, observed, endpoint.status, message, failure_reason=reason)
        return Decision(tuple(_tag_actions(desired, observed, endpoint)), report, timing.steady)
    if rolled_back:
        # SageMaker tried the desired config and went back to the old one: report, do not loop.
        reason = endpoint.failure_reason or "SageMaker gave no reason"
        message = (
            f"Updating endpoint {endpoint.name} to {desired.config_name} failed and SageMaker rolled back to "
            f"{endpoint.config_name}: {reason}. Change the spec (any field) to try once more."
        )
        report = _degraded(desired, observed, "UpdateRolledBack", message, failure_reason=reason)
        # The old fleet runs on: a target deregistered before the update goes back on it.
        scaling = _sync_scaling(desired, observed)
        actions = [*_tag_actions(desired, observed, endpoint), *scaling]
        return Decision(tuple(actions), report, timing.busy if scaling else timing.steady)

    params: dict[str, Any] = {"EndpointName": endpoint.name, "EndpointConfigName": desired.config_name}
    how = ""
    if desired.autoscaling is not None:
        # Keep the instance count autoscaling chose instead of resetting it to InitialInstanceCount.
        params["RetainAllVariantProperties"] = True
        how = ", keeping the live instance count"
    if desired.deployment:
        params["DeploymentConfig"] = dict(desired.deployment)
        how += f" ({_describe_deployment(desired.deployment)})"
    actions = [
        *_deregister_for_update(desired, observed),
        *_ensure_model_and_config(desired, observed),
        Action(
            "UpdateEndpoint",
            endpoint.name,
            params,
            f"Updating endpoint {endpoint.name} from {endpoint.config_name} to {desired.config_name}{how}",
        ),
    ]
    message = f"Updating endpoint {endpoint.name} to {desired.config_name}{how}"
    report = _progressing(desired, observed, "Updating", message, endpoint_status="Updating")
    deployment = LastDeployment(
        endpoint_config_name=desired.config_name,
        from_endpoint_config_name=endpoint.config_name,
        generation=desired.identity.generation,
    )
    return Decision(tuple(actions), report, timing.busy, last_deployment=deployment)


def _describe_deployment(config: Mapping[str, Any]) -> str:
    """A DeploymentConfig in words, for messages and events."""
    if "RollingUpdatePolicy" in config:
        size = config["RollingUpdatePolicy"]["MaximumBatchSize"]
        words = f"rolling, batches of {_size_words(size)}"
    elif "BlueGreenUpdatePolicy" in config:
        routing = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
        words = {
            "ALL_AT_ONCE": "blue/green, all at once",
            "CANARY": "blue/green canary",
            "LINEAR": "blue/green linear",
        }[routing["Type"]]
        size = routing.get("CanarySize") or routing.get("LinearStepSize")
        if size:
            words += f" of {_size_words(size)}"
    else:
        words = "blue/green, all at once"
    alarms = (config.get("AutoRollbackConfiguration") or {}).get("Alarms") or []
    if alarms:
        words += ", rolled back by " + ", ".join(alarm["AlarmName"] for alarm in alarms)
    return words


def _size_words(size: Mapping[str, Any]) -> str:
    if size["Type"] == "CAPACITY_PERCENT":
        return f"{size['Value']}%"
    return f"{size['Value']} instance{'s' if size['Value'] != 1 else ''}"


# --- Deletion --------------------------------------------------------------------------------------


def finalize(
    desired: Desired, observed: Observed, timing: Timing = Timing(), memory: Memory = Memory()
) -> Decision:
    """The next step of deleting the object's SageMaker resources (or of leaving them, with Retain).
    ``memory`` only keeps the status' record of the scalable target while it cannot be looked at."""
    return _with_live_state(_finalize(desired, observed, timing), desired, observed, memory)


def _finalize(desired: Desired, observed: Observed, timing: Timing) -> Decision:
    endpoint = observed.endpoint
    idle = NOT_PROGRESSING
    if desired.deletion_policy is DeletionPolicy.RETAIN:
        note = (
            f"Retained SageMaker endpoint {desired.endpoint_name} with its model and endpoint config "
            "(deletionPolicy: Retain)"
        )
        report = _report(
            desired, observed, ready=_cond(False, "Retained", note), progressing=idle, degraded=NOT_DEGRADED
        )
        return Decision((), report, timing.busy, finished=True, notes=(note,))

    if endpoint is not None and _owned(desired, endpoint.tags):
        if endpoint.status in BUSY:
            message = f"Waiting for SageMaker endpoint to leave {endpoint.status} before deleting it"
            report = _progressing(desired, observed, "Deleting", message)
            return Decision((), report, timing.busy)
        # Deregister first: SageMaker deregisters the endpoint's targets itself only when the caller may.
        actions = [
            *(action for target in observed.scaling or () for action in _deregister(target)),
            _delete_endpoint(endpoint, f"Deleting endpoint {endpoint.name}"),
        ]
        message = f"Deleting endpoint {endpoint.name}"
        report = _progressing(desired, observed, "Deleting", message, endpoint_status="Deleting")
        return Decision(tuple(actions), report, timing.busy)

    # The endpoint is gone (or was never ours): remove the configs and models this object owns, except
    # what an endpoint still serves.
    actions = _delete_owned(desired, observed)
    message = "Deleted the SageMaker endpoint, its endpoint configs and models"
    notes: tuple[str, ...] = ()
    if endpoint is not None:
        message = (
            f"Kept SageMaker endpoint {endpoint.name} and the config and model it serves: its tags do not "
            "name this object; deleted the other endpoint configs and models it owned"
        )
        notes = (message,)
    report = _report(
        desired, observed, ready=_cond(False, "Deleted", message), progressing=idle, degraded=NOT_DEGRADED
    )
    return Decision(tuple(actions), report, timing.busy, finished=True, notes=notes)
