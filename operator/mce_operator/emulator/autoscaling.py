"""Application Auto Scaling, as far as SageMaker endpoints use it: scalable targets (a variant's
DesiredInstanceCount) and their scaling policies.

Served on the emulator's port under the target prefix ``AnyScaleFrontendService`` (AWS JSON 1.1), so boto3's
``application-autoscaling`` client works with ``AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING``. No metric
exists here, so nothing scales by itself: ``scale`` (the admin API's ``/_emulator/scale``) moves a registered
variant's DesiredInstanceCount as a scaling policy would, through UpdateEndpointWeightsAndCapacities as
Application Auto Scaling does.

Shares the service's lock and clock with the SageMaker state it refers to. SageMaker consults it: an
UpdateEndpoint that changes a registered variant's instance type (or removes it) is refused, and a
DeleteEndpoint deregisters the endpoint's targets.
"""

from __future__ import annotations

import copy
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .errors import ServiceError, validation
from .state import DEFAULT_PAGE_SIZE, Json, SageMakerState, partition

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_RESOURCE = re.compile(r"endpoint/([^/]+)/variant/([^/]+)")
# The predefined metrics of a SageMaker variant (botocore's MetricType enum, SageMakerVariant*).
VARIANT_METRICS = (
    "SageMakerVariantInvocationsPerInstance",
    "SageMakerVariantConcurrentRequestsPerModelHighResolution",
)
MAX_PAGE = 50


def object_not_found(message: str) -> ServiceError:
    return ServiceError("ObjectNotFoundException", message)


@dataclass
class ScalableTarget:
    resource_id: str
    endpoint: str
    variant: str
    min_capacity: int
    max_capacity: int
    role_arn: str
    arn: str
    created: float
    suspended: Json = field(default_factory=dict)

    def describe(self) -> Json:
        return {
            "ServiceNamespace": NAMESPACE,
            "ResourceId": self.resource_id,
            "ScalableDimension": DIMENSION,
            "MinCapacity": self.min_capacity,
            "MaxCapacity": self.max_capacity,
            "RoleARN": self.role_arn,
            "CreationTime": self.created,
            "SuspendedState": {
                "DynamicScalingInSuspended": False,
                "DynamicScalingOutSuspended": False,
                "ScheduledScalingSuspended": False,
                **self.suspended,
            },
            "ScalableTargetARN": self.arn,
        }


@dataclass
class ScalingPolicy:
    name: str
    arn: str
    resource_id: str
    policy_type: str
    configuration: Json
    created: float
    alarms: list[Json]

    def describe(self) -> Json:
        out: Json = {
            "PolicyARN": self.arn,
            "PolicyName": self.name,
            "ServiceNamespace": NAMESPACE,
            "ResourceId": self.resource_id,
            "ScalableDimension": DIMENSION,
            "PolicyType": self.policy_type,
            "Alarms": copy.deepcopy(self.alarms),
            "CreationTime": self.created,
        }
        out.update(copy.deepcopy(self.configuration))
        return out


def _page(items: list[Json], body: Json) -> tuple[list[Json], str | None]:
    """A page and the next token (the offset, opaque to callers); a bad token is AAS's own error."""
    offset = 0
    token = body.get("NextToken")
    if token:
        if not str(token).isdigit():
            raise ServiceError("InvalidNextTokenException", "Invalid token")
        offset = int(token)
    size = min(int(body.get("MaxResults") or MAX_PAGE), MAX_PAGE) or DEFAULT_PAGE_SIZE
    after = offset + size
    return items[offset:after], (str(after) if after < len(items) else None)


class AutoScalingState:
    """The scalable targets and scaling policies of one emulated account and region."""

    def __init__(self, sagemaker: SageMakerState) -> None:
        self.sagemaker = sagemaker
        self.account = sagemaker.account
        self.region = sagemaker.region
        # By resource id, with the endpoint name in lower case (SageMaker's names are case-insensitive).
        self.targets: dict[str, ScalableTarget] = {}
        # By (target key, policy name).
        self.policies: dict[tuple[str, str], ScalingPolicy] = {}

    # -- names --------------------------------------------------------------------------------------------

    @staticmethod
    def _key(endpoint: str, variant: str) -> str:
        return f"endpoint/{endpoint.lower()}/variant/{variant}"

    def _parse(self, body: Json) -> tuple[str, str, str]:
        """(key, endpoint, variant) of a request's ResourceId; only SageMaker variants are emulated."""
        namespace, dimension = body["ServiceNamespace"], body["ScalableDimension"]
        resource = body["ResourceId"]
        if namespace != NAMESPACE or dimension != DIMENSION:
            raise validation(
                f"Only ServiceNamespace {NAMESPACE} with ScalableDimension {DIMENSION} is supported by the "
                f"mce-emulator (got {namespace}, {dimension})."
            )
        match = _RESOURCE.fullmatch(resource)
        if match is None:
            raise validation(
                f"Unsupported resource ID {resource}: a SageMaker variant's is "
                "endpoint/<endpoint-name>/variant/<variant-name>."
            )
        endpoint, variant = match.groups()
        return self._key(endpoint, variant), endpoint, variant

    def _not_registered(self, resource: str) -> ServiceError:
        return object_not_found(
            f"No scalable target registered for service namespace: {NAMESPACE}, resource ID: {resource}, "
            f"scalable dimension: {DIMENSION}"
        )

    def _arn(self, kind: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        where = f"{partition(self.region)}:application-autoscaling:{self.region}:{self.account}"
        return f"arn:{where}:{kind}/{digest}"

    def _role(self) -> str:
        return (
            f"arn:{partition(self.region)}:iam::{self.account}:role/aws-service-role/"
            "sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
        )

    # -- for SageMaker ------------------------------------------------------------------------------------

    def registered_variants(self, endpoint: str) -> dict[str, ScalableTarget]:
        prefix = f"endpoint/{endpoint.lower()}/variant/"
        return {t.variant: t for key, t in self.targets.items() if key.startswith(prefix)}

    def forget_endpoint(self, endpoint: str) -> None:
        """Deregister every scalable target of the endpoint, with its policies."""
        for target in self.registered_variants(endpoint).values():
            self._deregister(self._key(target.endpoint, target.variant))

    def _deregister(self, key: str) -> None:
        # Deregistering a scalable target deletes its scaling policies.
        self.targets.pop(key, None)
        for policy_key in [k for k in self.policies if k[0] == key]:
            del self.policies[policy_key]

    # -- operations ---------------------------------------------------------------------------------------

    def register_scalable_target(self, body: Json) -> Json:
        key, endpoint_name, variant = self._parse(body)
        endpoint = self.sagemaker.endpoints.get(endpoint_name.lower())
        if endpoint is None or variant not in {v.name for v in endpoint.variants}:
            # AWS checks that the resource exists; the text is the emulator's own.
            raise validation(
                f"The variant {variant} of endpoint {endpoint_name} does not exist: register a variant of an "
                "endpoint that is in service."
            )
        existing = self.targets.get(key)
        minimum = body.get("MinCapacity", existing.min_capacity if existing else None)
        maximum = body.get("MaxCapacity", existing.max_capacity if existing else None)
        if minimum is None or maximum is None:
            raise validation("MinCapacity and MaxCapacity are required to register a new scalable target.")
        if minimum < 1:
            raise validation(f"MinCapacity of a SageMaker variant must be at least 1 (got {minimum}).")
        if minimum > maximum:
            raise validation(
                f"Minimum capacity cannot be greater than maximum capacity (MinCapacity {minimum}, "
                f"MaxCapacity {maximum})."
            )
        if existing is None:
            existing = ScalableTarget(
                resource_id=body["ResourceId"],
                endpoint=endpoint_name,
                variant=variant,
                min_capacity=minimum,
                max_capacity=maximum,
                role_arn=body.get("RoleARN") or self._role(),
                arn=self._arn("scalable-target", key),
                created=self.sagemaker.clock(),
            )
            self.targets[key] = existing
        existing.min_capacity, existing.max_capacity = int(minimum), int(maximum)
        if body.get("SuspendedState"):
            existing.suspended.update(body["SuspendedState"])
        return {"ScalableTargetARN": existing.arn}

    def deregister_scalable_target(self, body: Json) -> Json:
        key, _, _ = self._parse(body)
        if key not in self.targets:
            raise self._not_registered(body["ResourceId"])
        self._deregister(key)
        return {}

    def describe_scalable_targets(self, body: Json) -> Json:
        if body["ServiceNamespace"] != NAMESPACE:
            return {"ScalableTargets": []}
        wanted = None
        if body.get("ResourceIds"):
            wanted = {self._key(*m.groups()) for r in body["ResourceIds"] if (m := _RESOURCE.fullmatch(r))}
        dimension = body.get("ScalableDimension")
        items = [
            target.describe()
            for key, target in sorted(self.targets.items())
            if (wanted is None or key in wanted) and dimension in (None, DIMENSION)
        ]
        page, token = _page(items, body)
        return {"ScalableTargets": page, **({"NextToken": token} if token else {})}

    def put_scaling_policy(self, body: Json) -> Json:
        key, _, _ = self._parse(body)
        if key not in self.targets:
            raise self._not_registered(body["ResourceId"])
        policy_type = body.get("PolicyType") or "StepScaling"
        member = {
            "TargetTrackingScaling": "TargetTrackingScalingPolicyConfiguration",
            "StepScaling": "StepScalingPolicyConfiguration",
            "PredictiveScaling": "PredictiveScalingPolicyConfiguration",
        }[policy_type]
        configuration = body.get(member)
        if not configuration:
            raise validation(f"{member} is required for a policy of type {policy_type}.")
        metric = (configuration.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
        if metric is not None and metric not in VARIANT_METRICS:
            raise validation(
                f"The predefined metric {metric} is not a metric of a SageMaker variant "
                f"({', '.join(VARIANT_METRICS)})."
            )
        name = body["PolicyName"]
        resource = body["ResourceId"]
        existing = self.policies.get((key, name))
        arn = (
            existing.arn
            if existing
            else (
                f"arn:{partition(self.region)}:autoscaling:{self.region}:{self.account}:scalingPolicy:"
                f"{uuid.uuid4()}:resource/{NAMESPACE}/{resource}:policyName/{name}"
            )
        )
        alarms = []
        if policy_type == "TargetTrackingScaling":
            # Target tracking makes its own CloudWatch alarms, named after the resource.
            suffix = hashlib.sha256(f"{key}/{name}".encode()).hexdigest()[:8]
            for level in ("AlarmHigh", "AlarmLow"):
                alarm = f"TargetTracking-{resource}-{level}-{suffix}"
                alarms.append(
                    {
                        "AlarmName": alarm,
                        "AlarmARN": f"arn:{partition(self.region)}:cloudwatch:{self.region}:{self.account}:"
                        f"alarm:{alarm}",
                    }
                )
        self.policies[(key, name)] = ScalingPolicy(
            name=name,
            arn=arn,
            resource_id=resource,
            policy_type=policy_type,
            configuration={member: copy.deepcopy(configuration)},
            created=existing.created if existing else self.sagemaker.clock(),
            alarms=alarms,
        )
        return {"PolicyARN": arn, "Alarms": copy.deepcopy(alarms)}

    def delete_scaling_policy(self, body: Json) -> Json:
        key, _, _ = self._parse(body)
        if (key, body["PolicyName"]) not in self.policies:
            raise object_not_found(
                f"No scaling policy found for service namespace: {NAMESPACE}, resource ID: "
                f"{body['ResourceId']}, scalable dimension: {DIMENSION}, policy name: {body['PolicyName']}"
            )
        del self.policies[(key, body["PolicyName"])]
        return {}

    def describe_scaling_policies(self, body: Json) -> Json:
        if body["ServiceNamespace"] != NAMESPACE:
            return {"ScalingPolicies": []}
        wanted_key = None
        if body.get("ResourceId"):
            match = _RESOURCE.fullmatch(body["ResourceId"])
            wanted_key = self._key(*match.groups()) if match else "-"
        names = set(body.get("PolicyNames") or [])
        dimension = body.get("ScalableDimension")
        items = [
            policy.describe()
            for (key, name), policy in sorted(self.policies.items())
            if (wanted_key is None or key == wanted_key)
            and (not names or name in names)
            and dimension in (None, DIMENSION)
        ]
        page, token = _page(items, body)
        return {"ScalingPolicies": page, **({"NextToken": token} if token else {})}

    # -- out of band --------------------------------------------------------------------------------------

    def scale(self, endpoint: str, variant: str, count: int) -> None:
        """Move a registered variant's DesiredInstanceCount within its bounds, as a scaling policy would."""
        target = self.registered_variants(endpoint).get(variant)
        if target is None:
            raise ValueError(
                f"variant {variant} of endpoint {endpoint} is not registered with Application Auto Scaling"
            )
        if not target.min_capacity <= count <= target.max_capacity:
            raise ValueError(
                f"{count} is outside the scalable target's bounds "
                f"[{target.min_capacity}, {target.max_capacity}]"
            )
        self.sagemaker.update_endpoint_weights_and_capacities(
            {
                "EndpointName": endpoint,
                "DesiredWeightsAndCapacities": [{"VariantName": variant, "DesiredInstanceCount": count}],
            }
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            target.resource_id: {
                "minCapacity": target.min_capacity,
                "maxCapacity": target.max_capacity,
                "policies": sorted(name for (key, name) in self.policies if key == k),
            }
            for k, target in sorted(self.targets.items())
        }


OPERATIONS = (
    "RegisterScalableTarget",
    "DeregisterScalableTarget",
    "DescribeScalableTargets",
    "PutScalingPolicy",
    "DeleteScalingPolicy",
    "DescribeScalingPolicies",
)
