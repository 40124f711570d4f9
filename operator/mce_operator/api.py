"""The MultiContainerEndpoint API: the pydantic models are the single source of truth.

The CRD in ``crds/`` is generated from these models (``make crds``), and the operator validates every
object with them again, so a bad object is rejected with the same rules even when the apiserver's
schema was bypassed (an old CRD, ``--validate=false``, a direct etcd write).

Each constrained string carries two things: the OpenAPI keywords (``pattern``, ``maxLength``) that go
into the CRD, and a Python check whose error message says the rule in words, naming the field.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

GROUP = "sagemaker.mce.dev"
VERSION = "v1alpha1"
KIND = "MultiContainerEndpoint"
PLURAL = "multicontainerendpoints"
SINGULAR = "multicontainerendpoint"
SHORT_NAMES = ("mce",)
CATEGORIES = ("sagemaker",)

MAX_CONTAINERS = 15
MIN_CONTAINERS = 2
# SageMaker allows 50 tags per resource; the operator adds its three ownership tags to each.
SYSTEM_TAG_PREFIX = f"{GROUP}/"
MAX_USER_TAGS = 50 - 3
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
ENVIRONMENT_TOTAL_LIMIT = 32 * 1024

NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
NAME_RULE = "must be 1-63 letters, digits or hyphens, and start and end with a letter or digit"
ROLE_ARN_PATTERN = r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$"
IMAGE_PATTERN = r"^[\S]+$"
MODEL_DATA_URL_PATTERN = r"^(https|s3)://([^/]+)/?(.*)$"
ENV_KEY_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d$"
INSTANCE_TYPE_PATTERN = r"^ml\.[a-z0-9]+(-[a-z0-9]+)*\.[a-z0-9]+$"
VPC_ID_PATTERN = r"^[-0-9a-zA-Z]+$"
# SageMaker's tag pattern is ``[\p{L}\p{Z}\p{N}_.:/=+\-@]*``; RE2 (CEL) and JSON Schema engines with
# Unicode classes understand it, Python's ``re`` does not, hence the hand-written check below.
TAG_PATTERN = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"
TAG_RULE = "may contain only letters, digits, spaces and _ . : / = + - @"


def _check_tag_chars(value: str) -> bool:
    return all(ch in "_.:/=+-@" or unicodedata.category(ch)[0] in "LZN" for ch in value)


def _rule(
    name: str,
    check: Callable[[str], bool],
    rule: str,
    *,
    pattern: str | None,
    max_length: int,
    min_length: int = 1,
) -> Any:
    """A constrained string: the CRD gets ``pattern``/``maxLength``; Python says the rule in words."""

    def validate(value: str) -> str:
        if not value:
            raise ValueError(f"{name} must not be empty")
        if len(value) < min_length:
            raise ValueError(f"{name} must be at least {min_length} characters (got {len(value)})")
        if len(value) > max_length:
            raise ValueError(f"{name} must be at most {max_length} characters (got {len(value)})")
        if not check(value):
            raise ValueError(f"{name} {rule} (got {value!r})")
        return value

    schema: dict[str, Any] = {"minLength": min_length, "maxLength": max_length}
    if pattern is not None:
        schema["pattern"] = pattern
    return Annotated[str, AfterValidator(validate), Field(json_schema_extra=schema)]


def _matches(pattern: str) -> Callable[[str], bool]:
    # The apiserver evaluates ``pattern`` with RE2, where \d, \s and \w are ASCII-only; so does SageMaker.
    compiled = re.compile(pattern, re.ASCII)
    return lambda value: compiled.fullmatch(value) is not None


SageMakerName = _rule("name", _matches(NAME_PATTERN), NAME_RULE, pattern=NAME_PATTERN, max_length=63)
Hostname = _rule("containerHostname", _matches(NAME_PATTERN), NAME_RULE, pattern=NAME_PATTERN, max_length=63)
VariantNameStr = _rule("variantName", _matches(NAME_PATTERN), NAME_RULE, pattern=NAME_PATTERN, max_length=63)
RoleArn = _rule(
    "executionRoleArn",
    _matches(ROLE_ARN_PATTERN),
    "must be an IAM role ARN such as arn:aws:iam::123456789012:role/sagemaker-exec",
    pattern=ROLE_ARN_PATTERN,
    max_length=2048,
    min_length=20,
)
Image = _rule(
    "image", _matches(IMAGE_PATTERN), "must not contain white space", pattern=IMAGE_PATTERN, max_length=255
)
ModelDataUrl = _rule(
    "modelDataUrl",
    _matches(MODEL_DATA_URL_PATTERN),
    "must be an s3:// or https:// URL",
    pattern=MODEL_DATA_URL_PATTERN,
    max_length=1024,
)
Region = _rule(
    "region",
    _matches(REGION_PATTERN),
    "must be an AWS region name such as us-east-1",
    pattern=REGION_PATTERN,
    max_length=32,
)
InstanceType = _rule(
    "instanceType",
    _matches(INSTANCE_TYPE_PATTERN),
    "must be a SageMaker instance type such as ml.m5.large",
    pattern=INSTANCE_TYPE_PATTERN,
    max_length=64,
)
VpcId = _rule(
    "vpcConfig id",
    _matches(VPC_ID_PATTERN),
    "must contain only letters, digits and hyphens",
    pattern=VPC_ID_PATTERN,
    max_length=32,
)


class Mode(StrEnum):
    SERIAL = "Serial"
    DIRECT = "Direct"


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    RETAIN = "Retain"


class RepositoryAccessMode(StrEnum):
    PLATFORM = "Platform"
    VPC = "Vpc"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )


class ImageConfig(_Model):
    """How SageMaker pulls the container image."""

    repository_access_mode: RepositoryAccessMode = Field(
        description="Platform: pull from ECR over SageMaker's network. Vpc: pull through the model's VPC "
        "(a private registry reachable from vpcConfig's subnets).",
    )


class Container(_Model):
    """One container of the multi-container model (CreateModel.Containers[])."""

    container_hostname: Hostname | None = Field(  # type: ignore[valid-type]
        default=None,
        description="The container's name inside the endpoint. Required on every container in Direct mode, "
        "where callers pick it with TargetContainerHostname; in Serial mode set it on all containers or on "
        "none (then SageMaker names them by position). Unique within the endpoint.",
    )
    image: Image = Field(  # type: ignore[valid-type]
        description="The inference image, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/scorer:2.0.",
    )
    model_data_url: ModelDataUrl | None = Field(  # type: ignore[valid-type]
        default=None,
        description="Where the model artifacts are (s3://bucket/key/model.tar.gz or https://...).",
    )
    environment: dict[str, Annotated[str, Field(max_length=1024)]] | None = Field(
        default=None,
        description="Environment variables for the container: at most 100; names are letters, digits and "
        "underscores, not starting with a digit, up to 1024 characters; values up to 1024 characters. "
        "All names and values of all containers together must stay under 32 KB.",
        json_schema_extra={
            "maxProperties": 100,
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(k, size(k) <= 1024 && k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$'))",
                    "message": "environment variable names must be letters, digits and underscores, "
                    "not start with a digit, and be at most 1024 characters",
                }
            ],
        },
    )
    image_config: ImageConfig | None = Field(
        default=None, description="How SageMaker pulls the image (repositoryAccessMode)."
    )

    @model_validator(mode="after")
    def _environment_names(self) -> Container:
        for key in self.environment or {}:
            if len(key) > 1024 or not re.fullmatch(ENV_KEY_PATTERN, key, re.ASCII):
                raise ValueError(
                    f"environment variable name {key!r} must be letters, digits and underscores, "
                    "not start with a digit, and be at most 1024 characters"
                )
        if self.environment is not None and len(self.environment) > 100:
            raise ValueError(f"environment has {len(self.environment)} variables; at most 100 are allowed")
        return self


class CapacityUnit(StrEnum):
    INSTANCE_COUNT = "InstanceCount"
    CAPACITY_PERCENT = "CapacityPercent"


class TrafficRoutingType(StrEnum):
    ALL_AT_ONCE = "AllAtOnce"
    CANARY = "Canary"
    LINEAR = "Linear"


# SageMaker's names for the enums above (DeploymentConfig's CapacitySize.Type, TrafficRoutingConfig.Type).
SAGEMAKER_NAMES = {
    CapacityUnit.INSTANCE_COUNT: "INSTANCE_COUNT",
    CapacityUnit.CAPACITY_PERCENT: "CAPACITY_PERCENT",
    TrafficRoutingType.ALL_AT_ONCE: "ALL_AT_ONCE",
    TrafficRoutingType.CANARY: "CANARY",
    TrafficRoutingType.LINEAR: "LINEAR",
}

MAX_WAIT_SECONDS = 3600
MIN_EXECUTION_TIMEOUT = 600
MAX_EXECUTION_TIMEOUT = 28800
MAX_ALARMS = 10
MAX_ALARM_NAME = 255
# CloudWatch alarm names (SageMaker's AlarmName: ``(?!\s*$).+``, not blank, no line break). RE2, which the
# apiserver uses, has no lookahead: the same language, spelled without it.
ALARM_NAME_PATTERN = r"^[^\r\n]*\S[^\r\n]*$"
ALARM_NAME_RULE = "must not be blank or contain line breaks"
MAX_CAPACITY = 1000
MAX_COOLDOWN_SECONDS = 86400

AlarmName = _rule(
    "autoRollbackAlarms[]",
    _matches(ALARM_NAME_PATTERN),
    ALARM_NAME_RULE,
    pattern=ALARM_NAME_PATTERN,
    max_length=MAX_ALARM_NAME,
)


def _percent_rule(path: str, low: int, high: int, what: str) -> Any:
    """The documented share of the fleet a batch may be, for a CapacityPercent size (an InstanceCount
    size is checked by SageMaker against the live fleet)."""
    return {
        "rule": f"!has(self.{path}) || self.{path}.type != 'CapacityPercent' || "
        f"(self.{path}.value >= {low} && self.{path}.value <= {high})",
        "message": f"{path}: {what} must be {low}-{high}% of the fleet (SageMaker's limit)",
        "fieldPath": f".{path}",
    }


class CapacitySize(_Model):
    """A batch of the fleet: a number of instances, or a percentage of the variant's instances
    (SageMaker's CapacitySize)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'CapacityPercent' || self.value <= 100",
                    "message": "a CapacityPercent value must be at most 100",
                    "fieldPath": ".value",
                }
            ]
        }
    )

    type: CapacityUnit = Field(description="InstanceCount or CapacityPercent.")
    value: int = Field(
        ge=1,
        le=MAX_CAPACITY,
        strict=True,
        description="How many instances, or which percentage of the fleet (1-100).",
    )

    @model_validator(mode="after")
    def _percent(self) -> CapacitySize:
        if self.type is CapacityUnit.CAPACITY_PERCENT and self.value > 100:
            raise ValueError(f"a CapacityPercent value must be at most 100 (got {self.value})")
        return self


def _check_percent(size: CapacitySize | None, path: str, low: int, high: int, what: str) -> None:
    if size is not None and size.type is CapacityUnit.CAPACITY_PERCENT and not low <= size.value <= high:
        raise ValueError(f"{path}: {what} must be {low}-{high}% of the fleet (got {size.value}%)")


class TrafficRouting(_Model):
    """How traffic moves from the old fleet to the new one (SageMaker's TrafficRoutingConfig)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(self.type == 'Canary') == has(self.canarySize)",
                    "message": "canarySize is required when type is Canary, and only then",
                    "fieldPath": ".canarySize",
                },
                {
                    "rule": "(self.type == 'Linear') == has(self.linearStepSize)",
                    "message": "linearStepSize is required when type is Linear, and only then",
                    "fieldPath": ".linearStepSize",
                },
                _percent_rule("canarySize", 1, 50, "the canary"),
                _percent_rule("linearStepSize", 10, 50, "each step"),
            ]
        }
    )

    type: TrafficRoutingType = Field(
        description="AllAtOnce: all traffic moves in one step. Canary: canarySize first, then the rest. "
        "Linear: linearStepSize at each step. Each step is followed by a baking period of "
        "waitIntervalInSeconds, during which an alarm of autoRollbackAlarms rolls the update back.",
    )
    wait_interval_in_seconds: int = Field(
        ge=0,
        le=MAX_WAIT_SECONDS,
        strict=True,
        description=f"The baking period after each traffic step, 0 to {MAX_WAIT_SECONDS} s.",
    )
    canary_size: CapacitySize | None = Field(
        default=None, description="Canary only: the first step, at most 50% of the fleet."
    )
    linear_step_size: CapacitySize | None = Field(
        default=None, description="Linear only: each step, 10-50% of the fleet."
    )

    @model_validator(mode="after")
    def _sizes(self) -> TrafficRouting:
        for kind, size, name in (
            (TrafficRoutingType.CANARY, self.canary_size, "canarySize"),
            (TrafficRoutingType.LINEAR, self.linear_step_size, "linearStepSize"),
        ):
            if (self.type is kind) != (size is not None):
                raise ValueError(f"{name} is required when type is {kind.value}, and only then")
        _check_percent(self.canary_size, "canarySize", 1, 50, "the canary")
        _check_percent(self.linear_step_size, "linearStepSize", 10, 50, "each step")
        return self


class BlueGreen(_Model):
    """A blue/green deployment: a new fleet, traffic shifted to it, the old fleet removed at the end
    (SageMaker's BlueGreenUpdatePolicy)."""

    traffic_routing: TrafficRouting = Field(description="How traffic moves to the new fleet.")
    termination_wait_in_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_WAIT_SECONDS,
        strict=True,
        description=f"How long the old fleet is kept after all traffic moved, 0 to {MAX_WAIT_SECONDS} s.",
    )
    maximum_execution_timeout_in_seconds: int | None = Field(
        default=None,
        ge=MIN_EXECUTION_TIMEOUT,
        le=MAX_EXECUTION_TIMEOUT,
        strict=True,
        description=f"The whole deployment's time limit, {MIN_EXECUTION_TIMEOUT} to {MAX_EXECUTION_TIMEOUT} "
        "s; longer than all its waits together.",
    )


class Rolling(_Model):
    """A rolling deployment: the fleet replaced batch by batch (SageMaker's RollingUpdatePolicy)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _percent_rule("maximumBatchSize", 5, 50, "each batch"),
            ]
        }
    )

    maximum_batch_size: CapacitySize = Field(description="Each batch, 5-50% of the fleet.")
    wait_interval_in_seconds: int = Field(
        ge=0,
        le=MAX_WAIT_SECONDS,
        strict=True,
        description=f"The baking period after each batch, 0 to {MAX_WAIT_SECONDS} s.",
    )
    maximum_execution_timeout_in_seconds: int | None = Field(
        default=None,
        ge=MIN_EXECUTION_TIMEOUT,
        le=MAX_EXECUTION_TIMEOUT,
        strict=True,
        description=f"The whole deployment's time limit, {MIN_EXECUTION_TIMEOUT} to "
        f"{MAX_EXECUTION_TIMEOUT} s.",
    )
    rollback_maximum_batch_size: CapacitySize | None = Field(
        default=None, description="Each batch of a rollback (default: the whole fleet at once)."
    )

    @model_validator(mode="after")
    def _batch(self) -> Rolling:
        _check_percent(self.maximum_batch_size, "maximumBatchSize", 5, 50, "each batch")
        return self


class Deployment(_Model):
    """How SageMaker moves the endpoint to a new endpoint config (deployment guardrails). Sent with every
    UpdateEndpoint; without it SageMaker shifts all traffic at once with no baking period."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.blueGreen) && has(self.rolling))",
                    "message": "blueGreen and rolling are alternatives: give one of them",
                    "fieldPath": ".rolling",
                }
            ]
        }
    )

    blue_green: BlueGreen | None = Field(default=None, description="A blue/green deployment.")
    rolling: Rolling | None = Field(default=None, description="A rolling deployment.")
    auto_rollback_alarms: list[AlarmName] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=MAX_ALARMS,
        description=f"Up to {MAX_ALARMS} CloudWatch alarm names: if one is in ALARM during a baking period, "
        "SageMaker sends all traffic back to the old fleet. The object then shows Degraded "
        "(UpdateRolledBack) until its spec changes.",
    )

    @model_validator(mode="after")
    def _one_policy(self) -> Deployment:
        if self.blue_green is not None and self.rolling is not None:
            raise ValueError("blueGreen and rolling are alternatives: give one of them")
        return self


class TargetTracking(_Model):
    """A target-tracking scaling policy on SageMaker's predefined metric
    SageMakerVariantInvocationsPerInstance."""

    invocations_per_instance: float = Field(
        ge=1,
        strict=True,
        allow_inf_nan=False,
        description="The average number of invocations per instance per minute to keep the variant at "
        "(at least 1).",
    )
    scale_in_cooldown_in_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COOLDOWN_SECONDS,
        strict=True,
        description=f"Seconds after a scale-in before the next one, 0 to {MAX_COOLDOWN_SECONDS} "
        "(Application Auto Scaling's default: 300).",
    )
    scale_out_cooldown_in_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COOLDOWN_SECONDS,
        strict=True,
        description=f"Seconds after a scale-out before the next one, 0 to {MAX_COOLDOWN_SECONDS} "
        "(Application Auto Scaling's default: 300).",
    )
    disable_scale_in: bool = Field(
        default=False, strict=True, description="Never remove instances (scale out only)."
    )


class Autoscaling(_Model):
    """Application Auto Scaling of the variant's instance count. The operator registers the variant as a
    scalable target with this policy, keeps the live instance count through every update, and takes it
    off before a change SageMaker does not allow while registered (a new instance type), then puts it
    back."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minCapacity <= self.maxCapacity",
                    "message": "minCapacity must be at most maxCapacity",
                    "fieldPath": ".minCapacity",
                }
            ]
        }
    )

    min_capacity: int = Field(
        ge=1, le=MAX_CAPACITY, strict=True, description="The fewest instances autoscaling keeps (at least 1)."
    )
    max_capacity: int = Field(
        ge=1, le=MAX_CAPACITY, strict=True, description="The most instances autoscaling adds."
    )
    target_tracking: TargetTracking = Field(description="The scaling policy.")

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_capacity > self.max_capacity:
            raise ValueError(
                f"minCapacity must be at most maxCapacity (minCapacity {self.min_capacity}, "
                f"maxCapacity {self.max_capacity})"
            )
        return self


class VpcConfig(_Model):
    """The VPC the containers run in (CreateModel.VpcConfig)."""

    security_group_ids: list[VpcId] = Field(  # type: ignore[valid-type]
        min_length=1, max_length=5, description="1 to 5 security group ids (sg-...)."
    )
    subnets: list[VpcId] = Field(  # type: ignore[valid-type]
        min_length=1, max_length=16, description="1 to 16 subnet ids (subnet-...)."
    )


# The CEL transition rules' messages, also used by immutable_field_changes().
IMMUTABLE_MESSAGES = {
    "endpoint_name": "endpointName is immutable: create a new object to get a new endpoint",
    "region": "region is immutable: create a new object to get an endpoint in another region",
}

_SPEC_RULES: Any = [
    {
        "rule": "self.mode != 'Direct' || self.containers.all(c, has(c.containerHostname))",
        "message": "containers[].containerHostname is required on every container when mode is Direct",
        "fieldPath": ".containers",
    },
    {
        "rule": "self.mode == 'Direct' || self.containers.all(c, has(c.containerHostname)) || "
        "self.containers.all(c, !has(c.containerHostname))",
        "message": "containers[].containerHostname must be set on all containers or on none in Serial mode",
        "fieldPath": ".containers",
    },
    {
        "rule": "self.containers.all(c, !has(c.containerHostname) || "
        "self.containers.filter(d, has(d.containerHostname) && "
        "d.containerHostname == c.containerHostname).size() == 1)",
        "message": "containers[].containerHostname values must be unique",
        "fieldPath": ".containers",
    },
    {
        # sum() is Kubernetes' CEL lists library (in every apiserver with CRD validation rules).
        "rule": "self.containers.map(c, has(c.environment) ? "
        "c.environment.map(k, size(k) + size(c.environment[k])).sum() : 0).sum() <= "
        f"{ENVIRONMENT_TOTAL_LIMIT}",
        "message": "containers[].environment: the names and values of all containers' environment "
        f"variables together must be at most {ENVIRONMENT_TOTAL_LIMIT} characters (SageMaker's 32 KB limit)",
        "fieldPath": ".containers",
    },
    {
        "rule": "!has(self.autoscaling) || (self.initialInstanceCount >= self.autoscaling.minCapacity && "
        "self.initialInstanceCount <= self.autoscaling.maxCapacity)",
        "message": "initialInstanceCount must be within autoscaling.minCapacity and autoscaling.maxCapacity",
        "fieldPath": ".initialInstanceCount",
    },
    {
        "rule": "has(self.endpointName) == has(oldSelf.endpointName) && "
        "(!has(self.endpointName) || self.endpointName == oldSelf.endpointName)",
        "message": IMMUTABLE_MESSAGES["endpoint_name"],
        "fieldPath": ".endpointName",
    },
    {
        "rule": "has(self.region) == has(oldSelf.region) && "
        "(!has(self.region) || self.region == oldSelf.region)",
        "message": IMMUTABLE_MESSAGES["region"],
        "fieldPath": ".region",
    },
]

# Inside a CEL string literal every backslash of the regex is doubled.
_CEL_TAG_PATTERN = TAG_PATTERN.replace("\\", "\\\\")
_TAG_RULES: Any = [
    {
        "rule": f"self.all(k, size(k) >= 1 && size(k) <= {MAX_TAG_KEY} && k.matches('{_CEL_TAG_PATTERN}'))",
        "message": f"tag keys must be 1-{MAX_TAG_KEY} characters and {TAG_RULE}",
    },
    {
        # The length is the schema's maxLength (which also keeps this rule within its cost budget).
        "rule": f"self.all(k, self[k].matches('{_CEL_TAG_PATTERN}'))",
        "message": f"tag values {TAG_RULE}",
    },
    {
        # AWS reserves the aws: prefix in any letter case.
        "rule": "self.all(k, !k.matches('^[aA][wW][sS]:') && !k.startsWith('sagemaker.mce.dev/'))",
        "message": "tag keys must not start with 'aws:' (in any case) or 'sagemaker.mce.dev/' (reserved)",
    },
]


class MultiContainerEndpointSpec(_Model):
    """The desired SageMaker multi-container endpoint."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _SPEC_RULES})

    endpoint_name: SageMakerName | None = Field(  # type: ignore[valid-type]
        default=None,
        description="The SageMaker endpoint's name. Default: '<namespace>-<name>', made SageMaker-safe "
        "(1-63 letters, digits, hyphens). Immutable.",
    )
    region: Region | None = Field(  # type: ignore[valid-type]
        default=None, description="The AWS region of the endpoint. Default: the operator's region. Immutable."
    )
    execution_role_arn: RoleArn = Field(  # type: ignore[valid-type]
        description="The IAM role SageMaker assumes to pull images and model data "
        "(arn:aws:iam::<account>:role/<name>).",
    )
    mode: Mode = Field(
        default=Mode.SERIAL,
        description="Serial: an inference pipeline, each container's output is the next one's input. "
        "Direct: callers invoke one container by its containerHostname. Maps to "
        "InferenceExecutionConfig.Mode.",
    )
    containers: list[Container] = Field(
        min_length=MIN_CONTAINERS,
        max_length=MAX_CONTAINERS,
        description=f"The containers of the model, {MIN_CONTAINERS} to {MAX_CONTAINERS}, in pipeline order.",
    )
    instance_type: InstanceType = Field(  # type: ignore[valid-type]
        description="The ML instance type that hosts the endpoint, e.g. ml.m5.large."
    )
    initial_instance_count: int = Field(
        default=1,
        ge=1,
        le=1000,
        strict=True,
        description="How many instances serve the endpoint (at least 1).",
    )
    variant_name: VariantNameStr = Field(  # type: ignore[valid-type]
        default="AllTraffic", description="The production variant's name."
    )
    volume_size_in_gb: int | None = Field(
        default=None,
        ge=1,
        le=512,
        strict=True,
        alias="volumeSizeInGB",
        description="The size of the ML storage volume attached to each instance, 1 to 512 GB.",
    )
    model_data_download_timeout_in_seconds: int | None = Field(
        default=None,
        ge=60,
        le=3600,
        strict=True,
        description="How long to wait for model data download, 60 to 3600 s.",
    )
    container_startup_health_check_timeout_in_seconds: int | None = Field(
        default=None,
        ge=60,
        le=3600,
        strict=True,
        description="How long to wait for the containers' /ping to pass at startup, 60 to 3600 s.",
    )
    vpc_config: VpcConfig | None = Field(default=None, description="The VPC the containers run in.")
    enable_network_isolation: bool = Field(
        default=False, strict=True, description="Run the containers without outbound network access."
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description=f"Tags for the model, endpoint config and endpoint, updated in place. At most "
        f"{MAX_USER_TAGS}; keys 1-128 and values 0-256 characters; keys starting with 'aws:' or "
        f"'{SYSTEM_TAG_PREFIX}' are reserved.",
        json_schema_extra={
            "maxProperties": MAX_USER_TAGS,
            # The apiserver sizes a string without maxLength at the whole request's limit (3 MB) when it
            # estimates a CEL rule's cost: without this bound the tag-value rule is refused as about 12x
            # over the per-rule budget and the CRD is not accepted. The models check the length in words.
            "additionalProperties": {"type": "string", "maxLength": MAX_TAG_VALUE},
            "x-kubernetes-validations": _TAG_RULES,
        },
    )
    autoscaling: Autoscaling | None = Field(
        default=None,
        description="Autoscale the instance count with Application Auto Scaling (minCapacity, maxCapacity, "
        "a target-tracking policy). initialInstanceCount is then the count at creation only: every update "
        "keeps the count autoscaling chose.",
    )
    deployment: Deployment | None = Field(
        default=None,
        description="Deployment guardrails for every update of the endpoint: blue/green (all at once, "
        "canary, linear) or rolling, with alarms that roll it back.",
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        description="Delete: deleting this object deletes the endpoint, its model and config. "
        "Retain: they are kept in SageMaker.",
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> MultiContainerEndpointSpec:
        hostnames: list[str | None] = [c.container_hostname for c in self.containers]
        named: list[str] = [h for h in hostnames if h is not None]
        if self.mode is Mode.DIRECT and len(named) != len(hostnames):
            missing = [i for i, h in enumerate(hostnames) if h is None]
            raise ValueError(
                f"containers[{missing[0]}].containerHostname is required: every container needs one "
                "when mode is Direct"
            )
        if self.mode is Mode.SERIAL and named and len(named) != len(hostnames):
            raise ValueError(
                "containers[].containerHostname must be set on all containers or on none in Serial mode"
            )
        duplicates = sorted({h for h in named if named.count(h) > 1})
        if duplicates:
            raise ValueError(
                f"containers[].containerHostname values must be unique ({duplicates[0]!r} repeats)"
            )
        total = sum(len(k) + len(v) for c in self.containers for k, v in (c.environment or {}).items())
        if total > ENVIRONMENT_TOTAL_LIMIT:
            raise ValueError(
                f"containers[].environment: the names and values of all containers' environment variables "
                f"together are {total} characters; at most {ENVIRONMENT_TOTAL_LIMIT} are allowed "
                "(SageMaker's 32 KB limit)"
            )
        scaling = self.autoscaling
        if (
            scaling is not None
            and not scaling.min_capacity <= self.initial_instance_count <= scaling.max_capacity
        ):
            raise ValueError(
                f"initialInstanceCount ({self.initial_instance_count}) must be within "
                f"autoscaling.minCapacity ({scaling.min_capacity}) and autoscaling.maxCapacity "
                f"({scaling.max_capacity})"
            )
        if len(self.tags) > MAX_USER_TAGS:
            raise ValueError(f"tags: {len(self.tags)} tags given; at most {MAX_USER_TAGS} are allowed")
        for key, value in self.tags.items():
            if not 1 <= len(key) <= MAX_TAG_KEY or not _check_tag_chars(key):
                raise ValueError(f"tags: key {key!r} must be 1-{MAX_TAG_KEY} characters and {TAG_RULE}")
            if key.lower().startswith("aws:") or key.startswith(SYSTEM_TAG_PREFIX):
                raise ValueError(f"tags: key {key!r} is reserved ('aws:' and '{SYSTEM_TAG_PREFIX}' prefixes)")
            if len(value) > MAX_TAG_VALUE or not _check_tag_chars(value):
                raise ValueError(
                    f"tags: value of {key!r} must be at most {MAX_TAG_VALUE} characters and {TAG_RULE}"
                )
        return self


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Model):
    """A Kubernetes-style condition."""

    type: str = Field(description="Ready, Progressing or Degraded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="A CamelCase reason.")
    message: str = Field(default="", description="What happened, and what to do about it.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed for."
    )


class LastDeployment(_Model):
    """The operator's memory of its last CreateEndpoint/UpdateEndpoint, so a rolled-back update is
    reported and not retried in a loop."""

    endpoint_config_name: str = Field(
        description="The endpoint config the operator asked SageMaker to deploy."
    )
    from_endpoint_config_name: str | None = Field(
        default=None, description="The endpoint config the endpoint served when the update was sent."
    )
    generation: int | None = Field(
        default=None,
        description="The object's generation when the update was sent: a rolled-back update is tried "
        "again once for each later generation.",
    )


class AutoscalingStatus(_Model):
    """The scalable target registered for the variant, as last observed."""

    min_capacity: int = Field(description="MinCapacity of the scalable target.")
    max_capacity: int = Field(description="MaxCapacity of the scalable target.")
    policies: list[str] = Field(default_factory=list, description="The names of its scaling policies.")


class MultiContainerEndpointStatus(_Model):
    """What the operator observed and did."""

    observed_generation: int | None = Field(default=None, description="The generation last reconciled.")
    endpoint_name: str | None = Field(default=None, description="The SageMaker endpoint's name.")
    endpoint_arn: str | None = Field(default=None, description="The SageMaker endpoint's ARN.")
    endpoint_status: str | None = Field(
        default=None, description="DescribeEndpoint's EndpointStatus, verbatim (InService, Creating, ...)."
    )
    model_name: str | None = Field(default=None, description="The model the endpoint should serve.")
    endpoint_config_name: str | None = Field(
        default=None, description="The endpoint config the endpoint should serve."
    )
    failure_reason: str | None = Field(
        default=None, description="SageMaker's FailureReason, or the operator's own reason."
    )
    container_count: int | None = Field(
        default=None, description="How many containers the desired model has (for kubectl get)."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing, Degraded.")
    last_deployment: LastDeployment | None = Field(
        default=None, description="The last endpoint deployment the operator started."
    )
    desired_instance_count: int | None = Field(
        default=None,
        description="The variant's DesiredInstanceCount, live (what autoscaling chose, if autoscaled).",
    )
    current_instance_count: int | None = Field(
        default=None, description="The variant's CurrentInstanceCount, live."
    )
    autoscaling: AutoscalingStatus | None = Field(
        default=None,
        description="The variant's scalable target in Application Auto Scaling, as last observed "
        "(absent: not registered).",
    )


class MultiContainerEndpoint(_Model):
    """A SageMaker multi-container endpoint (Serial inference pipeline or Direct invocation), with its
    model and endpoint config, managed from Kubernetes."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = Field(default=f"{GROUP}/{VERSION}")
    kind: str = Field(default=KIND)
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: MultiContainerEndpointSpec
    status: MultiContainerEndpointStatus | None = None


class SpecError(ValueError):
    """A spec that breaks a rule; ``messages`` name each field and rule. ``problems`` are the same as
    (field path from the object's root, rule) pairs, for tools that point at the field in a file."""

    def __init__(
        self, messages: list[str], problems: list[tuple[tuple[str | int, ...], str]] | None = None
    ) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages
        self.problems = problems if problems is not None else [(("spec",), text) for text in messages]


def _path(loc: tuple[int | str, ...]) -> tuple[str | int, ...]:
    skipped = {"function-after[validate(), str]", "[key]"}
    return ("spec", *(part for part in loc if part not in skipped))


def _location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in _path(loc):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def parse_spec(raw: dict[str, Any]) -> MultiContainerEndpointSpec:
    """Validate a raw ``spec`` and return the model; raise SpecError with one message per broken rule."""
    try:
        return MultiContainerEndpointSpec.model_validate(raw)
    except ValidationError as error:
        messages = []
        problems = []
        for item in error.errors(include_url=False):
            where = _location(tuple(item["loc"]))
            text = str(item["msg"]).removeprefix("Value error, ")
            if item["type"] == "missing":
                text = "is required"
            elif item["type"] == "extra_forbidden":
                text = "is not a known field"
            messages.append(f"{where}: {text}")
            problems.append((_path(tuple(item["loc"])), text))
        raise SpecError(messages, problems) from None


def immutable_field_changes(old: MultiContainerEndpointSpec, new: MultiContainerEndpointSpec) -> list[str]:
    """The CRD's transition rules, for the operator: a message per immutable field that changed.

    The apiserver enforces them on update; this catches objects that got past an old or missing CRD.
    """
    return [
        f"spec.{to_camel(name)}: {message}"
        for name, message in IMMUTABLE_MESSAGES.items()
        if getattr(old, name) != getattr(new, name)
    ]
