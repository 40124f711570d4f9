"""Every rule is enforced twice, with messages that name the field: by the CRD (evaluated here the way the
apiserver would, see crd_eval.py) and by the pydantic models (``parse_spec``), which the operator uses
on every object in case the schema was bypassed.

Each case is a valid base spec with a few changes. ``crd`` and ``model`` list words that must all occur
in one single error message of that side: the field's path first, then the rule.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_eval import CrdEvaluator

from mce_operator import api

EXAMPLES = Path(__file__).parents[2] / "examples"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
DELETE = object()


def image(name: str) -> str:
    return f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:1.0"


def base_spec() -> dict[str, Any]:
    return {
        "executionRoleArn": ROLE,
        "instanceType": "ml.m5.large",
        "containers": [{"image": image("preprocess")}, {"image": image("xgboost")}],
    }


def resource(spec: dict[str, Any], name: str = "fraud") -> dict[str, Any]:
    return {
        "apiVersion": f"{api.GROUP}/{api.VERSION}",
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": "ml"},
        "spec": spec,
    }


def _apply(spec: dict[str, Any], path: str, value: Any) -> None:
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    node: Any = spec
    for part in parts[:-1]:
        node = node[part]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = copy.deepcopy(value)


def spec_with(changes: dict[str, Any]) -> dict[str, Any]:
    spec = base_spec()
    for path, value in changes.items():
        _apply(spec, path, value)
    return spec


@dataclass(frozen=True)
class Invalid:
    id: str
    changes: dict[str, Any]
    crd: tuple[str, ...]
    model: tuple[str, ...]
    notes: str = field(default="")


def containers(count: int, hostnames: bool = False) -> list[dict[str, Any]]:
    return [
        {"image": image(f"c{i}"), **({"containerHostname": f"c{i}"} if hostnames else {})}
        for i in range(count)
    ]


def env(count: int, value_size: int = 1) -> dict[str, str]:
    return {f"VAR_{i}": "v" * value_size for i in range(count)}


NAME_64 = "a" * 64
NAME_63 = "a" * 63
DIRECT_TWO = {
    "mode": "Direct",
    "containers[0].containerHostname": "features",
    "containers[1].containerHostname": "scorer",
}

SCALING = {"minCapacity": 1, "maxCapacity": 4, "targetTracking": {"invocationsPerInstance": 70}}
CANARY = {
    "blueGreen": {
        "trafficRouting": {
            "type": "Canary",
            "waitIntervalInSeconds": 300,
            "canarySize": {"type": "CapacityPercent", "value": 10},
        }
    },
    "autoRollbackAlarms": ["fraud-prod-5xx"],
}
ROLLING = {
    "rolling": {"maximumBatchSize": {"type": "CapacityPercent", "value": 25}, "waitIntervalInSeconds": 60}
}

INVALID = [
    # --- SageMaker names: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62} ---------------------------------------------
    Invalid(
        "endpointName-underscore",
        {"endpointName": "fraud_prod"},
        ("spec.endpointName", "should match"),
        ("spec.endpointName", "letters, digits or hyphens"),
    ),
    Invalid(
        "endpointName-64-chars",
        {"endpointName": NAME_64},
        ("spec.endpointName", "Too long", "63"),
        ("spec.endpointName", "at most 63"),
    ),
    Invalid(
        "endpointName-trailing-hyphen",
        {"endpointName": "fraud-"},
        ("spec.endpointName", "should match"),
        ("spec.endpointName", "start and end with a letter or digit"),
    ),
    Invalid(
        "endpointName-empty",
        {"endpointName": ""},
        ("spec.endpointName", "at least 1"),
        ("spec.endpointName", "must not be empty"),
    ),
    Invalid(
        "endpointName-trailing-newline",
        {"endpointName": "fraud\n"},
        ("spec.endpointName", "should match"),
        ("spec.endpointName", "letters, digits or hyphens"),
    ),
    Invalid(
        "variantName-space",
        {"variantName": "All Traffic"},
        ("spec.variantName", "should match"),
        ("spec.variantName", "letters, digits or hyphens"),
    ),
    Invalid(
        "variantName-64-chars",
        {"variantName": NAME_64},
        ("spec.variantName", "Too long"),
        ("spec.variantName", "at most 63"),
    ),
    Invalid(
        "containerHostname-leading-hyphen",
        {"containers[0].containerHostname": "-features", "containers[1].containerHostname": "scorer"},
        ("spec.containers[0].containerHostname", "should match"),
        ("spec.containers[0].containerHostname", "start and end with a letter or digit"),
    ),
    Invalid(
        "containerHostname-64-chars",
        {**DIRECT_TWO, "containers[1].containerHostname": NAME_64},
        ("spec.containers[1].containerHostname", "Too long"),
        ("spec.containers[1].containerHostname", "at most 63"),
    ),
    Invalid(
        "containerHostname-dot",
        {**DIRECT_TWO, "containers[1].containerHostname": "scorer.v2"},
        ("spec.containers[1].containerHostname", "should match"),
        ("spec.containers[1].containerHostname", "letters, digits or hyphens"),
    ),
    # --- containers: 2..15 --------------------------------------------------------------------------------
    Invalid(
        "one-container",
        {"containers": containers(1)},
        ("spec.containers", "at least 2"),
        ("spec.containers", "at least 2"),
    ),
    Invalid(
        "no-containers",
        {"containers": []},
        ("spec.containers", "at least 2"),
        ("spec.containers", "at least 2"),
    ),
    Invalid(
        "16-containers",
        {"containers": containers(16)},
        ("spec.containers", "at most 15"),
        ("spec.containers", "at most 15"),
    ),
    Invalid(
        "containers-missing",
        {"containers": DELETE},
        ("spec.containers", "Required value"),
        ("spec.containers", "is required"),
    ),
    Invalid(
        "containers-not-a-list",
        {"containers": {"image": image("a")}},
        # kubectl's strict field validation: the apiserver's decoder reports the object's keys as unknown.
        ('unknown field "spec.containers.image"',),
        ("spec.containers", "valid list"),
    ),
    # --- image, modelDataUrl, imageConfig ----------------------------------------------------------------
    Invalid(
        "image-missing",
        {"containers[1].image": DELETE},
        ("spec.containers[1].image", "Required value"),
        ("spec.containers[1].image", "is required"),
    ),
    Invalid(
        "image-with-space",
        {"containers[0].image": "my image:1"},
        ("spec.containers[0].image", "should match"),
        ("spec.containers[0].image", "white space"),
    ),
    Invalid(
        "image-256-chars",
        {"containers[0].image": "i" * 256},
        ("spec.containers[0].image", "Too long", "255"),
        ("spec.containers[0].image", "at most 255"),
    ),
    Invalid(
        "modelDataUrl-gs",
        {"containers[0].modelDataUrl": "gs://bucket/model.tar.gz"},
        ("spec.containers[0].modelDataUrl", "should match"),
        ("spec.containers[0].modelDataUrl", "s3:// or https://"),
    ),
    Invalid(
        "modelDataUrl-no-bucket",
        {"containers[0].modelDataUrl": "s3://"},
        ("spec.containers[0].modelDataUrl", "should match"),
        ("spec.containers[0].modelDataUrl", "s3:// or https://"),
    ),
    Invalid(
        "modelDataUrl-1025-chars",
        {"containers[0].modelDataUrl": "s3://bucket/" + "k" * 1013},
        ("spec.containers[0].modelDataUrl", "Too long"),
        ("spec.containers[0].modelDataUrl", "at most 1024"),
    ),
    Invalid(
        "imageConfig-bad-enum",
        {"containers[0].imageConfig": {"repositoryAccessMode": "Private"}},
        ("spec.containers[0].imageConfig.repositoryAccessMode", "Unsupported value", '"Vpc"'),
        ("spec.containers[0].imageConfig.repositoryAccessMode", "'Platform' or 'Vpc'"),
    ),
    Invalid(
        "imageConfig-empty",
        {"containers[0].imageConfig": {}},
        ("spec.containers[0].imageConfig.repositoryAccessMode", "Required value"),
        ("spec.containers[0].imageConfig.repositoryAccessMode", "is required"),
    ),
    # --- environment ----------------------------------------------------------------------------------
    Invalid(
        "env-key-starts-with-digit",
        {"containers[0].environment": {"1ST": "x"}},
        ("spec.containers[0].environment", "environment variable names"),
        ("spec.containers[0]", "environment variable name '1ST'"),
    ),
    Invalid(
        "env-key-hyphen",
        {"containers[1].environment": {"LOG-LEVEL": "info"}},
        ("spec.containers[1].environment", "letters, digits and underscores"),
        ("spec.containers[1]", "'LOG-LEVEL'", "letters, digits and underscores"),
    ),
    Invalid(
        "env-key-1025-chars",
        {"containers[0].environment": {"K" * 1025: "x"}},
        ("spec.containers[0].environment", "at most 1024 characters"),
        ("spec.containers[0]", "environment variable name", "at most 1024 characters"),
    ),
    Invalid(
        "env-value-1025-chars",
        {"containers[0].environment": {"BIG": "v" * 1025}},
        ("spec.containers[0].environment.BIG", "Too long", "1024"),
        ("spec.containers[0].environment.BIG", "at most 1024"),
    ),
    Invalid(
        "env-101-entries",
        {"containers[0].environment": env(101)},
        ("spec.containers[0].environment", "at most 100"),
        ("spec.containers[0]", "environment has 101 variables", "at most 100"),
    ),
    Invalid(
        "env-over-32KB-in-total",
        {"containers[0].environment": env(17, 1000), "containers[1].environment": env(17, 1000)},
        ("spec.containers", "environment", "32768"),
        ("spec", "environment", "32768"),
    ),
    Invalid(
        "env-value-not-a-string",
        {"containers[0].environment": {"WORKERS": 4}},
        ("spec.containers[0].environment.WORKERS", "must be of type string"),
        ("spec.containers[0].environment.WORKERS", "valid string"),
    ),
    # --- executionRoleArn: 20..2048, arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+ ---------
    Invalid(
        "role-arn-11-digit-account",
        {"executionRoleArn": "arn:aws:iam::12345678901:role/x"},
        ("spec.executionRoleArn", "should match"),
        ("spec.executionRoleArn", "IAM role ARN"),
    ),
    Invalid(
        "role-arn-is-a-user",
        {"executionRoleArn": "arn:aws:iam::123456789012:user/bob"},
        ("spec.executionRoleArn", "should match"),
        ("spec.executionRoleArn", "IAM role ARN"),
    ),
    Invalid(
        "role-arn-too-short",
        {"executionRoleArn": "arn:aws:iam::1:role"},
        ("spec.executionRoleArn", "at least 20"),
        ("spec.executionRoleArn", "at least 20"),
    ),
    Invalid(
        "role-arn-too-long",
        {"executionRoleArn": "arn:aws:iam::123456789012:role/" + "r" * 2018},
        ("spec.executionRoleArn", "Too long", "2048"),
        ("spec.executionRoleArn", "at most 2048"),
    ),
    Invalid(
        "role-arn-unicode-digits",
        {"executionRoleArn": "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/x"},
        ("spec.executionRoleArn", "should match"),
        ("spec.executionRoleArn", "IAM role ARN"),
        notes="RE2's \\d is ASCII-only; Python's re is not unless told",
    ),
    Invalid(
        "role-arn-missing",
        {"executionRoleArn": DELETE},
        ("spec.executionRoleArn", "Required value"),
        ("spec.executionRoleArn", "is required"),
    ),
    # --- enums ------------------------------------------------------------------------------------------
    Invalid(
        "mode-bogus",
        {"mode": "Bogus"},
        ("spec.mode", "Unsupported value", '"Serial"', '"Direct"'),
        ("spec.mode", "'Serial' or 'Direct'"),
    ),
    Invalid(
        "mode-lowercase",
        {"mode": "direct"},
        ("spec.mode", "Unsupported value"),
        ("spec.mode", "'Serial' or 'Direct'"),
    ),
    Invalid(
        "deletionPolicy-orphan",
        {"deletionPolicy": "Orphan"},
        ("spec.deletionPolicy", "Unsupported value", '"Retain"'),
        ("spec.deletionPolicy", "'Delete' or 'Retain'"),
    ),
    # --- the production variant ---------------------------------------------------------------------
    Invalid(
        "instanceType-without-ml-prefix",
        {"instanceType": "m5.large"},
        ("spec.instanceType", "should match"),
        ("spec.instanceType", "instance type"),
    ),
    Invalid(
        "instanceType-missing",
        {"instanceType": DELETE},
        ("spec.instanceType", "Required value"),
        ("spec.instanceType", "is required"),
    ),
    Invalid(
        "region-uppercase",
        {"region": "US-EAST-1"},
        ("spec.region", "should match"),
        ("spec.region", "region name"),
    ),
    Invalid(
        "initialInstanceCount-0",
        {"initialInstanceCount": 0},
        ("spec.initialInstanceCount", "greater than or equal to 1"),
        ("spec.initialInstanceCount", "1"),
    ),
    Invalid(
        "initialInstanceCount-string",
        {"initialInstanceCount": "2"},
        ("spec.initialInstanceCount", "must be of type integer"),
        ("spec.initialInstanceCount", "valid integer"),
    ),
    Invalid(
        "volumeSizeInGB-0",
        {"volumeSizeInGB": 0},
        ("spec.volumeSizeInGB", "greater than or equal to 1"),
        ("spec.volumeSizeInGB", "greater than or equal to 1"),
    ),
    Invalid(
        "volumeSizeInGB-513",
        {"volumeSizeInGB": 513},
        ("spec.volumeSizeInGB", "less than or equal to 512"),
        ("spec.volumeSizeInGB", "less than or equal to 512"),
    ),
    Invalid(
        "download-timeout-59",
        {"modelDataDownloadTimeoutInSeconds": 59},
        ("spec.modelDataDownloadTimeoutInSeconds", "greater than or equal to 60"),
        ("spec.modelDataDownloadTimeoutInSeconds", "greater than or equal to 60"),
    ),
    Invalid(
        "download-timeout-3601",
        {"modelDataDownloadTimeoutInSeconds": 3601},
        ("spec.modelDataDownloadTimeoutInSeconds", "less than or equal to 3600"),
        ("spec.modelDataDownloadTimeoutInSeconds", "less than or equal to 3600"),
    ),
    Invalid(
        "startup-timeout-59",
        {"containerStartupHealthCheckTimeoutInSeconds": 59},
        ("spec.containerStartupHealthCheckTimeoutInSeconds", "greater than or equal to 60"),
        ("spec.containerStartupHealthCheckTimeoutInSeconds", "greater than or equal to 60"),
    ),
    Invalid(
        "startup-timeout-3601",
        {"containerStartupHealthCheckTimeoutInSeconds": 3601},
        ("spec.containerStartupHealthCheckTimeoutInSeconds", "less than or equal to 3600"),
        ("spec.containerStartupHealthCheckTimeoutInSeconds", "less than or equal to 3600"),
    ),
    Invalid(
        "enableNetworkIsolation-string",
        {"enableNetworkIsolation": "yes"},
        ("spec.enableNetworkIsolation", "must be of type boolean"),
        ("spec.enableNetworkIsolation", "valid boolean"),
    ),
    # --- vpcConfig: 1..5 security groups, 1..16 subnets --------------------------------------------------
    Invalid(
        "vpc-no-security-groups",
        {"vpcConfig": {"securityGroupIds": [], "subnets": ["subnet-1"]}},
        ("spec.vpcConfig.securityGroupIds", "at least 1"),
        ("spec.vpcConfig.securityGroupIds", "at least 1"),
    ),
    Invalid(
        "vpc-6-security-groups",
        {"vpcConfig": {"securityGroupIds": [f"sg-{i}" for i in range(6)], "subnets": ["subnet-1"]}},
        ("spec.vpcConfig.securityGroupIds", "at most 5"),
        ("spec.vpcConfig.securityGroupIds", "at most 5"),
    ),
    Invalid(
        "vpc-no-subnets",
        {"vpcConfig": {"securityGroupIds": ["sg-1"], "subnets": []}},
        ("spec.vpcConfig.subnets", "at least 1"),
        ("spec.vpcConfig.subnets", "at least 1"),
    ),
    Invalid(
        "vpc-17-subnets",
        {"vpcConfig": {"securityGroupIds": ["sg-1"], "subnets": [f"subnet-{i}" for i in range(17)]}},
        ("spec.vpcConfig.subnets", "at most 16"),
        ("spec.vpcConfig.subnets", "at most 16"),
    ),
    Invalid(
        "vpc-subnet-underscore",
        {"vpcConfig": {"securityGroupIds": ["sg-1"], "subnets": ["subnet_1"]}},
        ("spec.vpcConfig.subnets[0]", "should match"),
        ("spec.vpcConfig.subnets[0]", "letters, digits and hyphens"),
    ),
    Invalid(
        "vpc-subnets-missing",
        {"vpcConfig": {"securityGroupIds": ["sg-1"]}},
        ("spec.vpcConfig.subnets", "Required value"),
        ("spec.vpcConfig.subnets", "is required"),
    ),
    # --- tags: 47 user tags (50 minus the operator's 3), key 1..128, value 0..256, reserved prefixes --------
    Invalid(
        "48-tags",
        {"tags": {f"k{i}": "v" for i in range(48)}},
        ("spec.tags", "at most 47"),
        ("tags", "48 tags", "at most 47"),
    ),
    Invalid(
        "tag-key-129-chars",
        {"tags": {"k" * 129: "v"}},
        ("spec.tags", "tag keys must be 1-128 characters"),
        ("tags", "must be 1-128 characters"),
    ),
    Invalid(
        "tag-key-empty",
        {"tags": {"": "v"}},
        ("spec.tags", "tag keys must be 1-128 characters"),
        ("tags", "must be 1-128 characters"),
    ),
    Invalid(
        "tag-key-hash",
        {"tags": {"team#1": "risk"}},
        ("spec.tags", "tag keys", "may contain only"),
        ("tags", "'team#1'", "may contain only"),
    ),
    Invalid(
        "tag-value-257-chars",
        {"tags": {"team": "v" * 257}},
        ("spec.tags.team", "Too long", "256"),
        ("tags", "value of 'team'", "at most 256"),
    ),
    Invalid(
        "tag-value-hash",
        {"tags": {"team": "risk#1"}},
        ("spec.tags", "tag values may contain only"),
        ("tags", "value of 'team'", "may contain only"),
    ),
    Invalid(
        "tag-value-not-a-string",
        {"tags": {"replicas": 3}},
        ("spec.tags.replicas", "must be of type string"),
        ("spec.tags.replicas", "valid string"),
    ),
    Invalid(
        "tag-reserved-aws-prefix",
        {"tags": {"aws:cloudformation:stack-name": "x"}},
        ("spec.tags", "reserved"),
        ("tags", "'aws:cloudformation:stack-name'", "reserved"),
    ),
    Invalid(
        "tag-reserved-aws-prefix-any-case",
        {"tags": {"AWS:team": "x"}},
        ("spec.tags", "reserved"),
        ("tags", "'AWS:team'", "reserved"),
        notes="AWS reserves aws: in any letter case",
    ),
    Invalid(
        "tag-reserved-operator-prefix",
        {"tags": {"sagemaker.mce.dev/uid": "x"}},
        ("spec.tags", "reserved"),
        ("tags", "'sagemaker.mce.dev/uid'", "reserved"),
    ),
    # --- cross-field hostname rules (CEL) ---------------------------------------------------------------
    Invalid(
        "direct-without-hostnames",
        {"mode": "Direct"},
        ("spec.containers", "required on every container when mode is Direct"),
        ("containers[0].containerHostname is required", "Direct"),
    ),
    Invalid(
        "direct-with-one-hostname-missing",
        {"mode": "Direct", "containers[0].containerHostname": "features"},
        ("spec.containers", "required on every container when mode is Direct"),
        ("containers[1].containerHostname is required", "Direct"),
    ),
    Invalid(
        "serial-with-some-hostnames",
        {"containers[0].containerHostname": "features"},
        ("spec.containers", "all containers or on none"),
        ("containerHostname", "all containers or on none"),
    ),
    Invalid(
        "duplicate-hostnames",
        {**DIRECT_TWO, "containers[1].containerHostname": "features"},
        ("spec.containers", "must be unique"),
        ("containerHostname", "must be unique", "'features'"),
    ),
    Invalid(
        "duplicate-hostnames-serial",
        {"containers": [{"image": image("a"), "containerHostname": "x"}] * 3},
        ("spec.containers", "must be unique"),
        ("containerHostname", "must be unique", "'x'"),
    ),
    # --- autoscaling ------------------------------------------------------------------------------------
    Invalid(
        "autoscaling-min-above-max",
        {"autoscaling": {**SCALING, "minCapacity": 3, "maxCapacity": 2}, "initialInstanceCount": 2},
        ("spec.autoscaling.minCapacity", "minCapacity must be at most maxCapacity"),
        ("spec.autoscaling", "minCapacity must be at most maxCapacity", "minCapacity 3"),
    ),
    Invalid(
        "autoscaling-initial-count-below-min",
        {"autoscaling": {**SCALING, "minCapacity": 2}},
        ("spec.initialInstanceCount", "must be within autoscaling.minCapacity and autoscaling.maxCapacity"),
        ("initialInstanceCount (1) must be within", "minCapacity (2)"),
    ),
    Invalid(
        "autoscaling-initial-count-above-max",
        {"autoscaling": SCALING, "initialInstanceCount": 5},
        ("spec.initialInstanceCount", "must be within autoscaling.minCapacity and autoscaling.maxCapacity"),
        ("initialInstanceCount (5) must be within", "maxCapacity (4)"),
    ),
    Invalid(
        "autoscaling-min-0",
        {"autoscaling": {**SCALING, "minCapacity": 0}},
        ("spec.autoscaling.minCapacity", "greater than or equal to 1"),
        ("spec.autoscaling.minCapacity", "greater than or equal to 1"),
    ),
    Invalid(
        "autoscaling-max-1001",
        {"autoscaling": {**SCALING, "maxCapacity": 1001}},
        ("spec.autoscaling.maxCapacity", "less than or equal to 1000"),
        ("spec.autoscaling.maxCapacity", "less than or equal to 1000"),
    ),
    Invalid(
        "autoscaling-without-policy",
        {"autoscaling": {"minCapacity": 1, "maxCapacity": 2}},
        ("spec.autoscaling.targetTracking", "Required value"),
        ("spec.autoscaling.targetTracking", "is required"),
    ),
    Invalid(
        "autoscaling-target-below-1",
        {"autoscaling": {**SCALING, "targetTracking": {"invocationsPerInstance": 0.5}}},
        ("spec.autoscaling.targetTracking.invocationsPerInstance", "greater than or equal to 1"),
        ("spec.autoscaling.targetTracking.invocationsPerInstance", "greater than or equal to 1"),
    ),
    Invalid(
        "autoscaling-target-string",
        {"autoscaling": {**SCALING, "targetTracking": {"invocationsPerInstance": "70"}}},
        ("spec.autoscaling.targetTracking.invocationsPerInstance", "must be of type number"),
        ("spec.autoscaling.targetTracking.invocationsPerInstance", "valid number"),
    ),
    Invalid(
        "autoscaling-cooldown-over-a-day",
        {
            "autoscaling": {
                **SCALING,
                "targetTracking": {"invocationsPerInstance": 70, "scaleInCooldownInSeconds": 86401},
            }
        },
        ("spec.autoscaling.targetTracking.scaleInCooldownInSeconds", "less than or equal to 86400"),
        ("spec.autoscaling.targetTracking.scaleInCooldownInSeconds", "less than or equal to 86400"),
    ),
    # --- deployment guardrails -----------------------------------------------------------------------------
    Invalid(
        "deployment-blue-green-and-rolling",
        {"deployment": {**CANARY, **ROLLING}},
        ("spec.deployment.rolling", "blueGreen and rolling are alternatives"),
        ("spec.deployment", "blueGreen and rolling are alternatives"),
    ),
    Invalid(
        "deployment-canary-without-size",
        {"deployment": {"blueGreen": {"trafficRouting": {"type": "Canary", "waitIntervalInSeconds": 60}}}},
        ("spec.deployment.blueGreen.trafficRouting.canarySize", "required when type is Canary"),
        ("spec.deployment.blueGreen.trafficRouting", "canarySize is required when type is Canary"),
    ),
    Invalid(
        "deployment-canary-size-on-all-at-once",
        {
            "deployment": {
                "blueGreen": {
                    "trafficRouting": {
                        "type": "AllAtOnce",
                        "waitIntervalInSeconds": 60,
                        "canarySize": {"type": "InstanceCount", "value": 1},
                    }
                }
            }
        },
        ("spec.deployment.blueGreen.trafficRouting.canarySize", "and only then"),
        ("spec.deployment.blueGreen.trafficRouting", "canarySize is required when type is Canary, and only"),
    ),
    Invalid(
        "deployment-linear-without-step",
        {"deployment": {"blueGreen": {"trafficRouting": {"type": "Linear", "waitIntervalInSeconds": 60}}}},
        ("spec.deployment.blueGreen.trafficRouting.linearStepSize", "required when type is Linear"),
        ("spec.deployment.blueGreen.trafficRouting", "linearStepSize is required when type is Linear"),
    ),
    Invalid(
        "deployment-canary-over-half",
        {
            "deployment": {
                "blueGreen": {
                    "trafficRouting": {
                        **CANARY["blueGreen"]["trafficRouting"],
                        "canarySize": {"type": "CapacityPercent", "value": 60},
                    }
                }
            }
        },
        ("spec.deployment.blueGreen.trafficRouting.canarySize", "the canary must be 1-50% of the fleet"),
        ("spec.deployment.blueGreen.trafficRouting", "the canary must be 1-50% of the fleet", "60%"),
    ),
    Invalid(
        "deployment-linear-step-5-percent",
        {
            "deployment": {
                "blueGreen": {
                    "trafficRouting": {
                        "type": "Linear",
                        "waitIntervalInSeconds": 60,
                        "linearStepSize": {"type": "CapacityPercent", "value": 5},
                    }
                }
            }
        },
        ("spec.deployment.blueGreen.trafficRouting.linearStepSize", "each step must be 10-50% of the fleet"),
        ("spec.deployment.blueGreen.trafficRouting", "each step must be 10-50% of the fleet"),
    ),
    Invalid(
        "deployment-rolling-batch-60-percent",
        {
            "deployment": {
                "rolling": {
                    **ROLLING["rolling"],
                    "maximumBatchSize": {"type": "CapacityPercent", "value": 60},
                }
            }
        },
        ("spec.deployment.rolling.maximumBatchSize", "each batch must be 5-50% of the fleet"),
        ("spec.deployment.rolling", "each batch must be 5-50% of the fleet"),
    ),
    Invalid(
        "deployment-percent-over-100",
        {
            "deployment": {
                "rolling": {
                    **ROLLING["rolling"],
                    "rollbackMaximumBatchSize": {"type": "CapacityPercent", "value": 150},
                }
            }
        },
        (
            "spec.deployment.rolling.rollbackMaximumBatchSize.value",
            "a CapacityPercent value must be at most 100",
        ),
        ("spec.deployment.rolling.rollbackMaximumBatchSize", "a CapacityPercent value must be at most 100"),
    ),
    Invalid(
        "deployment-unknown-routing-type",
        {"deployment": {"blueGreen": {"trafficRouting": {"type": "BlueGreen", "waitIntervalInSeconds": 60}}}},
        ("spec.deployment.blueGreen.trafficRouting.type", "Unsupported value", "AllAtOnce"),
        ("spec.deployment.blueGreen.trafficRouting.type", "AllAtOnce", "Canary", "Linear"),
    ),
    Invalid(
        "deployment-wait-over-an-hour",
        {"deployment": {"rolling": {**ROLLING["rolling"], "waitIntervalInSeconds": 3601}}},
        ("spec.deployment.rolling.waitIntervalInSeconds", "less than or equal to 3600"),
        ("spec.deployment.rolling.waitIntervalInSeconds", "less than or equal to 3600"),
    ),
    Invalid(
        "deployment-timeout-under-600",
        {"deployment": {"blueGreen": {**CANARY["blueGreen"], "maximumExecutionTimeoutInSeconds": 599}}},
        ("spec.deployment.blueGreen.maximumExecutionTimeoutInSeconds", "greater than or equal to 600"),
        ("spec.deployment.blueGreen.maximumExecutionTimeoutInSeconds", "greater than or equal to 600"),
    ),
    Invalid(
        "deployment-11-alarms",
        {"deployment": {**CANARY, "autoRollbackAlarms": [f"alarm-{i}" for i in range(11)]}},
        ("spec.deployment.autoRollbackAlarms", "must have at most 10 items"),
        ("spec.deployment.autoRollbackAlarms", "at most 10"),
    ),
    Invalid(
        "deployment-blank-alarm",
        {"deployment": {**CANARY, "autoRollbackAlarms": ["   "]}},
        ("spec.deployment.autoRollbackAlarms[0]", "should match"),
        ("spec.deployment.autoRollbackAlarms[0]", "must not be blank"),
    ),
    Invalid(
        "deployment-alarm-256-chars",
        {"deployment": {**CANARY, "autoRollbackAlarms": ["a" * 256]}},
        ("spec.deployment.autoRollbackAlarms[0]", "Too long"),
        ("spec.deployment.autoRollbackAlarms[0]", "at most 255"),
    ),
    # --- unknown fields (kubectl's strict field validation; the apiserver would prune them) ----------------
    Invalid(
        "unknown-field-typo",
        {"contaniers": containers(2), "containers": DELETE},
        ('unknown field "spec.contaniers"',),
        ("spec.contaniers", "not a known field"),
    ),
    Invalid(
        "unknown-container-field",
        {"containers[0].imageUri": image("x")},
        ('unknown field "spec.containers[0].imageUri"',),
        ("spec.containers[0].imageUri", "not a known field"),
    ),
    Invalid(
        "unknown-vpc-field",
        {"vpcConfig": {"securityGroupIds": ["sg-1"], "subnets": ["s-1"], "vpcId": "v"}},
        ('unknown field "spec.vpcConfig.vpcId"',),
        ("spec.vpcConfig.vpcId", "not a known field"),
    ),
]


@pytest.fixture(scope="module")
def crd() -> CrdEvaluator:
    return CrdEvaluator.from_file()


def _one_message_has(messages: list[str], words: tuple[str, ...]) -> bool:
    return any(all(word in message for word in words) for message in messages)


def test_the_cases_are_distinct() -> None:
    assert len({case.id for case in INVALID}) == len(INVALID)
    assert len(INVALID) >= 30


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case.id)
def test_the_crd_rejects(crd: CrdEvaluator, case: Invalid) -> None:
    errors = crd.create(resource(spec_with(case.changes)))
    assert _one_message_has(errors, case.crd), f"expected one error with {case.crd}, got {errors}"


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case.id)
def test_the_models_reject(case: Invalid) -> None:
    with pytest.raises(api.SpecError) as raised:
        api.parse_spec(spec_with(case.changes))
    messages = raised.value.messages
    assert _one_message_has(messages, case.model), f"expected one message with {case.model}, got {messages}"


# --- updates: transition rules -----------------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    id: str
    old: dict[str, Any]
    new: dict[str, Any]
    crd: tuple[str, ...] = ()  # empty: the update is allowed

    @property
    def allowed(self) -> bool:
        return not self.crd


UPDATES = [
    Update(
        "endpointName-changed",
        {"endpointName": "fraud-a"},
        {"endpointName": "fraud-b"},
        ("spec.endpointName", "endpointName is immutable"),
    ),
    Update(
        "endpointName-added",
        {},
        {"endpointName": "fraud-b"},
        ("spec.endpointName", "endpointName is immutable"),
    ),
    Update(
        "endpointName-removed",
        {"endpointName": "fraud-a"},
        {"endpointName": DELETE},
        ("spec.endpointName", "endpointName is immutable"),
    ),
    Update(
        "region-changed",
        {"region": "us-east-1"},
        {"region": "eu-west-1"},
        ("spec.region", "region is immutable"),
    ),
    Update("region-added", {}, {"region": "eu-west-1"}, ("spec.region", "region is immutable")),
    Update(
        "region-removed", {"region": "us-east-1"}, {"region": DELETE}, ("spec.region", "region is immutable")
    ),
    Update(
        "endpointName-unchanged", {"endpointName": "fraud-a"}, {"endpointName": "fraud-a", "mode": "Serial"}
    ),
    Update(
        "containers-tags-and-count-changed",
        {"endpointName": "fraud-a", "region": "us-east-1"},
        {"containers": containers(5), "tags": {"team": "risk"}, "initialInstanceCount": 3},
    ),
    Update("direct-to-serial-keeping-hostnames", DIRECT_TWO, {"mode": "Serial"}),
]


@pytest.mark.parametrize("case", UPDATES, ids=lambda case: case.id)
def test_updates(crd: CrdEvaluator, case: Update) -> None:
    old = spec_with(case.old)
    new = copy.deepcopy(old)
    for path, value in case.new.items():
        _apply(new, path, value)
    assert crd.create(resource(old)) == []
    errors = crd.update(resource(old), resource(new))
    if case.allowed:
        assert errors == []
        assert api.immutable_field_changes(api.parse_spec(old), api.parse_spec(new)) == []
    else:
        assert _one_message_has(errors, case.crd), f"expected one error with {case.crd}, got {errors}"
        # The operator's own check, for objects that got past an old or missing CRD.
        changes = api.immutable_field_changes(api.parse_spec(old), api.parse_spec(new))
        assert _one_message_has(changes, case.crd[1:]), changes


def test_direct_example_can_switch_to_serial(crd: CrdEvaluator) -> None:
    """The demo applies examples/direct.yaml, then switches it to Serial: all containers keep hostnames."""
    old = yaml.safe_load((EXAMPLES / "direct.yaml").read_text())
    new = copy.deepcopy(old)
    new["spec"]["mode"] = "Serial"
    assert crd.update(old, new) == []
    assert api.parse_spec(new["spec"]).mode is api.Mode.SERIAL


# --- valid resources -----------------------------------------------------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "minimal-serial-without-hostnames": {},
    "serial-with-all-hostnames": {
        "containers[0].containerHostname": "a",
        "containers[1].containerHostname": "b",
    },
    "direct-with-hostnames": DIRECT_TWO,
    "exactly-15-containers": {"containers": containers(15)},
    "exactly-15-containers-direct": {"mode": "Direct", "containers": containers(15, hostnames=True)},
    "63-character-names": {
        "endpointName": NAME_63,
        "variantName": "V" * 63,
        "containers[0].containerHostname": "h" * 62 + "0",
        "containers[1].containerHostname": "9" * 63,
    },
    "names-with-runs-of-hyphens": {"endpointName": "a--b---c", "variantName": "blue-green-1"},
    "unicode-tags": {
        "tags": {"équipe": "données", "チーム": "リスク 1", "cost_center:id": "a=b+c/d@e", "empty": ""}
    },
    "47-tags": {"tags": {f"k{i}": "v" for i in range(47)}},
    "tag-key-128-value-256": {"tags": {"k" * 128: "v" * 256}},
    "tag-key-mentioning-aws-not-as-prefix": {"tags": {"team-aws:x": "y"}},
    "env-100-entries": {"containers[0].environment": env(100)},
    "env-exactly-32768-in-total": {
        "containers[0].environment": {f"K{i:03d}": "v" * 1020 for i in range(16)},
        "containers[1].environment": {f"K{i:03d}": "v" * 1020 for i in range(16)},
    },
    "env-key-and-value-1024": {"containers[0].environment": {"_" + "K" * 1023: "v" * 1024}},
    "gov-cloud-role-with-path": {
        "executionRoleArn": "arn:aws-us-gov:iam::123456789012:role/service-role/AmazonSageMaker-Exec_1",
        "region": "us-gov-west-1",
    },
    "role-arn-2048-chars": {"executionRoleArn": "arn:aws:iam::123456789012:role/" + "r" * 2017},
    "https-model-data": {"containers[0].modelDataUrl": "https://models.example.com/xgb/model.tar.gz"},
    "bounds-of-the-variant": {
        "initialInstanceCount": 1,
        "volumeSizeInGB": 512,
        "modelDataDownloadTimeoutInSeconds": 60,
        "containerStartupHealthCheckTimeoutInSeconds": 3600,
        "instanceType": "ml.g5.12xlarge",
    },
    "vpc-5-groups-16-subnets": {
        "vpcConfig": {
            "securityGroupIds": [f"sg-{i:017x}" for i in range(5)],
            "subnets": [f"subnet-{i:017x}" for i in range(16)],
        },
        "enableNetworkIsolation": True,
        "containers[0].imageConfig": {"repositoryAccessMode": "Vpc"},
    },
    "retain": {"deletionPolicy": "Retain"},
    "autoscaling-full": {
        "initialInstanceCount": 2,
        "autoscaling": {
            "minCapacity": 2,
            "maxCapacity": 1000,
            "targetTracking": {
                "invocationsPerInstance": 12.5,
                "scaleInCooldownInSeconds": 600,
                "scaleOutCooldownInSeconds": 0,
                "disableScaleIn": True,
            },
        },
    },
    "autoscaling-one-instance": {"autoscaling": {**SCALING, "maxCapacity": 1}},
    "deployment-canary-with-alarms": {
        "deployment": {
            **CANARY,
            "blueGreen": {
                **CANARY["blueGreen"],
                "terminationWaitInSeconds": 3600,
                "maximumExecutionTimeoutInSeconds": 28800,
            },
            "autoRollbackAlarms": [f"alarm {i}" for i in range(10)],
        }
    },
    "deployment-linear-instance-count": {
        "initialInstanceCount": 10,
        "deployment": {
            "blueGreen": {
                "trafficRouting": {
                    "type": "Linear",
                    "waitIntervalInSeconds": 0,
                    "linearStepSize": {"type": "InstanceCount", "value": 2},
                }
            }
        },
    },
    "deployment-all-at-once-alarm-255": {
        "deployment": {
            "blueGreen": {"trafficRouting": {"type": "AllAtOnce", "waitIntervalInSeconds": 600}},
            "autoRollbackAlarms": ["a" * 255],
        }
    },
    "deployment-rolling-with-rollback-batch": {
        "deployment": {
            "rolling": {
                **ROLLING["rolling"],
                "maximumBatchSize": {"type": "CapacityPercent", "value": 5},
                "rollbackMaximumBatchSize": {"type": "CapacityPercent", "value": 100},
                "maximumExecutionTimeoutInSeconds": 600,
            }
        }
    },
    "deployment-alarms-only": {"deployment": {"autoRollbackAlarms": ["errors"]}},
    "autoscaling-and-canary": {"autoscaling": SCALING, "deployment": CANARY},
    "null-optional-field": {"endpointName": None},
}


def _example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return loaded


VALID_RESOURCES = [pytest.param(resource(spec_with(changes)), id=name) for name, changes in VALID.items()] + [
    pytest.param(_example(name), id=f"examples/{name}") for name in ("direct.yaml", "serial.yaml")
]


@pytest.mark.parametrize("obj", VALID_RESOURCES)
def test_valid_resources_are_accepted_by_both(crd: CrdEvaluator, obj: dict[str, Any]) -> None:
    assert crd.create(obj) == []
    spec = api.parse_spec(obj["spec"])
    # What the operator sees (the apiserver's defaulted object) means the same as what the user wrote.
    assert api.parse_spec(crd.prune_and_default(obj)["spec"]) == spec


def test_the_examples_are_what_they_say() -> None:
    direct = api.parse_spec(_example("direct.yaml")["spec"])
    assert direct.mode is api.Mode.DIRECT
    assert len(direct.containers) >= 2
    assert all(c.container_hostname for c in direct.containers)
    serial = api.parse_spec(_example("serial.yaml")["spec"])
    assert serial.mode is api.Mode.SERIAL
    assert len(serial.containers) >= 2


# --- defaults ------------------------------------------------------------------------------------------


def test_crd_defaults_are_the_models_defaults(crd: CrdEvaluator) -> None:
    defaulted = crd.prune_and_default(resource(base_spec()))["spec"]
    assert defaulted["mode"] == "Serial"
    assert defaulted["initialInstanceCount"] == 1
    assert defaulted["variantName"] == "AllTraffic"
    assert defaulted["deletionPolicy"] == "Delete"
    model = api.parse_spec(base_spec()).model_dump(by_alias=True, mode="json")
    added = {key: value for key, value in defaulted.items() if key not in base_spec()}
    assert added == {key: model[key] for key in added}
    # Every scalar default of the models is in the CRD, so kubectl get -o yaml shows what the operator uses.
    model_defaults = {
        info.alias or name: info.default
        for name, info in api.MultiContainerEndpointSpec.model_fields.items()
        if not info.is_required() and info.default is not None and info.default_factory is None
    }
    assert {key: getattr(value, "value", value) for key, value in model_defaults.items()} == added


# --- kubectl explain ---------------------------------------------------------------------------------


def _undocumented(schema: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, prop in schema.get("properties", {}).items():
        if path == "mce" and name == "metadata":
            continue  # ObjectMeta: the apiserver documents it, and refuses a CRD that describes it
        if not str(prop.get("description", "")).strip():
            missing.append(f"{path}.{name}")
        missing += _undocumented(prop, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            missing += _undocumented(schema[key], f"{path}[]")
    return missing


def test_every_field_has_a_description(crd: CrdEvaluator) -> None:
    assert str(crd.schema.get("description", "")).strip()
    assert _undocumented(crd.schema, "mce") == []


def _all_rules(schema: dict[str, Any]) -> list[dict[str, Any]]:
    rules = list(schema.get("x-kubernetes-validations", []))
    for sub in schema.get("properties", {}).values():
        rules += _all_rules(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            rules += _all_rules(schema[key])
    return rules


def test_every_cel_rule_is_broken_by_some_case(crd: CrdEvaluator) -> None:
    """So each rule compiles and runs, and a rule added without a test case fails here."""
    errors = [error for case in INVALID for error in crd.create(resource(spec_with(case.changes)))]
    for case in UPDATES:
        new = spec_with(case.old)
        for path, value in case.new.items():
            _apply(new, path, value)
        errors += crd.update(resource(spec_with(case.old)), resource(new))
    rules = _all_rules(crd.schema)
    assert len(rules) >= 9
    untested = [rule["rule"] for rule in rules if not any(rule["message"] in error for error in errors)]
    assert untested == []
