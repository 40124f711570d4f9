"""deploy/iam-policy.json allows every SageMaker operation the operator calls, on the right ARNs.

The operations are found in the operator's source (every string literal that is a SageMaker API operation
name, per botocore's service model): adding a call without a policy change fails here."""

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
# The modules on the operator's path to SageMaker: decisions, the boto3 adapter, the kopf handlers.
SOURCES = ["core.py", "sagemaker.py", "handlers.py"]
ARNS = {
    "model": "arn:aws:sagemaker:eu-west-1:123456789012:model/ns-name-3f9c2a1b07",
    "endpoint-config": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint-config/ns-name-3f9c2a1b07",
    "endpoint": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/ns-name",
}
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"  # docs/api.md's example


def operations() -> set[str]:
    known = set(botocore.session.get_session().get_service_model("sagemaker").operation_names)
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


def test_every_operation_the_operator_calls_is_allowed() -> None:
    missing = []
    for operation in sorted(operations()):
        for kind in resource_types(operation):
            resource = ARNS.get(kind, "*")
            if not allowing(f"sagemaker:{operation}", resource):
                missing.append(f"sagemaker:{operation} on {resource}")
    assert not missing, "deploy/iam-policy.json lacks: " + ", ".join(missing)


def test_update_endpoint_is_allowed_on_the_endpoint_config_arn() -> None:
    assert allowing("sagemaker:UpdateEndpoint", ARNS["endpoint-config"])
    assert allowing("sagemaker:UpdateEndpoint", ARNS["endpoint"])


def test_nothing_beyond_the_operations_is_granted() -> None:
    granted = {a for s in POLICY["Statement"] for a in _listify(s["Action"])}
    assert granted == {f"sagemaker:{op}" for op in operations()} | {"iam:PassRole"}
    for statement in POLICY["Statement"]:
        assert "NotAction" not in statement and "NotResource" not in statement
        if any(
            a.startswith("sagemaker:List") and a != "sagemaker:ListTags"
            for a in _listify(statement["Action"])
        ):
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
