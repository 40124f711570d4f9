"""deploy/iam-policy.json allows every SageMaker and Application Auto Scaling operation the operator calls,
on the right ARNs, and what Application Auto Scaling needs of its caller for a SageMaker variant.

The operations are found in the operator's source (every string literal that is an API operation name, per
botocore's service models): adding a call without a policy change fails here."""

from __future__ import annotations

import ast
import fnmatch
import json
from pathlib import Path
from typing import Any

import botocore.session

from mce_operator import naming

ROOT = Path(__file__).resolve().parents[2]
POLICY = json.loads((ROOT / "deploy" / "iam-policy.json").read_text())
# The modules on the operator's path to the services: decisions, the boto3 adapters, the kopf handlers.
SOURCES = ["core.py", "sagemaker.py", "autoscaling.py", "handlers.py"]
AUTOSCALING = "application-autoscaling"
# What registering a SageMaker variant with Application Auto Scaling needs of the caller besides
# Application Auto Scaling's own actions (SageMaker's autoscaling prerequisites, Application Auto Scaling's
# identity-based policy examples): it checks and scales the variant through SageMaker, keeps its
# target-tracking alarms in CloudWatch, and creates its service-linked role the first time.
FOR_AUTOSCALING = {
    "sagemaker:UpdateEndpointWeightsAndCapacities",
    "cloudwatch:DescribeAlarms",
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:DeleteAlarms",
    "iam:CreateServiceLinkedRole",
}
SERVICE_LINKED_ROLE = (
    "arn:aws:iam::123456789012:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)
ARNS = {
    "model": "arn:aws:sagemaker:eu-west-1:123456789012:model/ns-name-3f9c2a1b07",
    "endpoint-config": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint-config/ns-name-3f9c2a1b07",
    "endpoint": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/ns-name",
}
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"  # docs/api.md's example


def operations(service: str = "sagemaker") -> set[str]:
    known = set(botocore.session.get_session().get_service_model(service).operation_names)
    found = set()
    for name in SOURCES:
        tree = ast.parse((ROOT / "operator" / "mce_operator" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
                found.add(node.value)
    return found


def resource_types(operation: str) -> list[str]:
    """The ARNs SageMaker authorizes an operation against (List* support no resource-level permissions)."""
    if operation.startswith("List") and operation != "ListTags":
        return ["*"]
    if operation in {"AddTags", "DeleteTags", "ListTags"}:
        return list(ARNS)
    if operation == "UpdateEndpoint":  # also authorized against the new endpoint config (ACK #1889)
        return ["endpoint", "endpoint-config"]
    for kind, suffix in (("endpoint-config", "EndpointConfig"), ("endpoint", "Endpoint"), ("model", "Model")):
        if operation.endswith(suffix):
            return [kind]
    raise AssertionError(f"{operation}: which ARN does it act on? Teach this test, and the policy.")


def _listify(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allowing(action: str, resource: str) -> list[dict[str, Any]]:
    return [
        statement
        for statement in POLICY["Statement"]
        if statement["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(action, pattern) for pattern in _listify(statement["Action"]))
        and any(fnmatch.fnmatchcase(resource, pattern) for pattern in _listify(statement["Resource"]))
    ]


def test_the_operations_are_found_in_the_source() -> None:
    assert {
        "DescribeEndpoint",
        "ListModels",
        "ListEndpointConfigs",
        "ListTags",
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "UpdateEndpoint",
        "DeleteEndpoint",
        "DeleteEndpointConfig",
        "DeleteModel",
        "AddTags",
        "DeleteTags",
    } <= operations()


def test_the_autoscaling_operations_are_found_in_the_source() -> None:
    assert operations(AUTOSCALING) == {
        "DescribeScalableTargets",
        "DescribeScalingPolicies",
        "RegisterScalableTarget",
        "DeregisterScalableTarget",
        "PutScalingPolicy",
    }


def test_every_operation_the_operator_calls_is_allowed() -> None:
    missing = []
    for operation in sorted(operations()):
        for kind in resource_types(operation):
            resource = ARNS.get(kind, "*")
            if not allowing(f"sagemaker:{operation}", resource):
                missing.append(f"sagemaker:{operation} on {resource}")
    # Application Auto Scaling's actions on SageMaker variants: its scalable targets' ARNs are made by
    # the registration, so they are granted on "*" as its documentation does.
    for operation in sorted(operations(AUTOSCALING)):
        if not allowing(f"{AUTOSCALING}:{operation}", "*"):
            missing.append(f"{AUTOSCALING}:{operation}")
    assert not missing, "deploy/iam-policy.json lacks: " + ", ".join(missing)


def test_what_autoscaling_needs_of_the_caller_is_allowed_narrowly() -> None:
    assert allowing("sagemaker:UpdateEndpointWeightsAndCapacities", ARNS["endpoint"])
    assert not allowing("sagemaker:UpdateEndpointWeightsAndCapacities", ARNS["model"])
    alarm = (
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:TargetTracking-endpoint/ns-name/variant/v-AlarmHigh"
    )
    for action in ("cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"):
        assert allowing(action, alarm)
        assert not allowing(action, "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:someone-elses")
    (statement,) = allowing("iam:CreateServiceLinkedRole", SERVICE_LINKED_ROLE)
    assert statement["Condition"] == {
        "StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }
    assert not allowing("iam:CreateServiceLinkedRole", "arn:aws:iam::123456789012:role/anything")


def test_update_endpoint_is_allowed_on_the_endpoint_config_arn() -> None:
    assert allowing("sagemaker:UpdateEndpoint", ARNS["endpoint-config"])
    assert allowing("sagemaker:UpdateEndpoint", ARNS["endpoint"])


def test_nothing_beyond_the_operations_is_granted() -> None:
    granted = {a for s in POLICY["Statement"] for a in _listify(s["Action"])}
    assert granted == (
        {f"sagemaker:{op}" for op in operations()}
        | {f"{AUTOSCALING}:{op}" for op in operations(AUTOSCALING)}
        | FOR_AUTOSCALING
        | {"iam:PassRole"}
    )
    for statement in POLICY["Statement"]:
        assert "NotAction" not in statement and "NotResource" not in statement
        actions = _listify(statement["Action"])
        # SageMaker's List* have no resource-level permissions; a scalable target's ARN is made by its
        # registration: those two are granted on "*", and only they.
        listing = any(a.startswith("sagemaker:List") and a != "sagemaker:ListTags" for a in actions)
        if listing or all(a.startswith(f"{AUTOSCALING}:") for a in actions):
            assert statement["Resource"] == "*"
        else:
            assert "*" not in _listify(statement["Resource"])


def test_deletes_are_limited_to_resources_tagged_by_the_operator() -> None:
    for operation in ("DeleteModel", "DeleteEndpointConfig", "DeleteEndpoint"):
        for statement in allowing(f"sagemaker:{operation}", ARNS["model"]) + allowing(
            f"sagemaker:{operation}", ARNS["endpoint"]
        ):
            assert statement["Condition"] == {"Null": {f"aws:ResourceTag/{naming.TAG_UID}": "false"}}


def test_pass_role_only_to_sagemaker() -> None:
    statements = allowing("iam:PassRole", EXECUTION_ROLE)
    assert statements
    for statement in statements:
        assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com"
        assert all(r.startswith("arn:aws:iam::") and ":role/" in r for r in _listify(statement["Resource"]))
