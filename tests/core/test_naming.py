"""Deterministic SageMaker names and ownership tags."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mce_operator import core, naming
from mce_operator.api import parse_spec

SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
IDENTITY = core.Identity(namespace="ml", name="fraud", uid="uid-1", generation=1)


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "executionRoleArn": "arn:aws:iam::123456789012:role/sagemaker-exec",
        "mode": "Direct",
        "containers": [
            {"containerHostname": "features", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/f:1"},
            {"containerHostname": "scorer", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/s:2"},
        ],
        "instanceType": "ml.m5.large",
        "tags": {"team": "risk"},
    }
    spec.update(overrides)
    return spec


def _desired(identity: core.Identity = IDENTITY, **overrides: Any) -> core.Desired:
    return core.desired_state(parse_spec(_spec(**overrides)), identity)


def test_same_spec_same_names() -> None:
    first, second = _desired(), _desired()
    assert (first.model_name, first.config_name) == (second.model_name, second.config_name)
    # Not even the object's identity is in the hash: a re-created object finds its predecessor's names.
    other = _desired(core.Identity("ml", "fraud", "uid-2", 7))
    assert (other.model_name, other.config_name) == (first.model_name, first.config_name)


def test_names_are_endpoint_name_plus_ten_hex() -> None:
    desired = _desired()
    assert desired.endpoint_name == "ml-fraud"
    assert re.fullmatch(r"ml-fraud-[0-9a-f]{10}", desired.model_name)
    assert re.fullmatch(r"ml-fraud-[0-9a-f]{10}", desired.config_name)
    assert desired.model_name != desired.config_name


@pytest.mark.parametrize(
    ("change", "model_changes"),
    [
        ({"mode": "Serial"}, True),
        (
            {
                "containers": [
                    {"containerHostname": "features", "image": "1.dkr.ecr.us-east-1.amazonaws.com/f:1"},
                    {"containerHostname": "scorer", "image": "1.dkr.ecr.us-east-1.amazonaws.com/s:3"},
                ]
            },
            True,
        ),
        ({"executionRoleArn": "arn:aws:iam::123456789012:role/other"}, True),
        ({"enableNetworkIsolation": True}, True),
        ({"initialInstanceCount": 2}, False),
        ({"instanceType": "ml.c5.xlarge"}, False),
        ({"variantName": "Blue"}, False),
        ({"volumeSizeInGB": 50}, False),
    ],
    ids=["mode", "containers", "role", "isolation", "instances", "instance-type", "variant", "volume"],
)
def test_names_change_with_what_sagemaker_cannot_change_in_place(
    change: dict[str, Any], model_changes: bool
) -> None:
    before, after = _desired(), _desired(**change)
    assert (before.model_name != after.model_name) is model_changes
    # The config holds the model's name, so it changes whenever the model does, and with the variant.
    assert before.config_name != after.config_name


@pytest.mark.parametrize(
    "change",
    [{"tags": {"team": "fraud", "tier": "gold"}}, {"tags": {}}, {"deletionPolicy": "Retain"}],
    ids=["tags", "no-tags", "deletion-policy"],
)
def test_names_do_not_change_with_tags_or_policy(change: dict[str, Any]) -> None:
    before, after = _desired(), _desired(**change)
    assert (before.model_name, before.config_name) == (after.model_name, after.config_name)


def test_container_order_matters() -> None:
    spec = _spec()
    reversed_spec = _spec(containers=list(reversed(spec["containers"])))
    assert (
        core.desired_state(parse_spec(spec), IDENTITY).model_name
        != core.desired_state(parse_spec(reversed_spec), IDENTITY).model_name
    )


@pytest.mark.parametrize(
    "endpoint_name",
    ["a", "fraud-prod", "x" * 52, "x" * 51 + "-y" + "z" * 10, "e" * 63, "a-" * 31 + "b"],
)
def test_child_names_fit_sagemaker(endpoint_name: str) -> None:
    desired = _desired(endpointName=endpoint_name)
    for name in (desired.model_name, desired.config_name):
        assert len(name) <= naming.MAX_NAME
        assert SAGEMAKER_NAME.fullmatch(name), name
        assert naming.is_child_name(endpoint_name, name)
    assert not naming.is_child_name(endpoint_name, desired.model_name + "0")
    assert not naming.is_child_name("z" + endpoint_name, desired.model_name)


def test_two_long_endpoint_names_with_the_same_start_share_a_prefix_but_not_names() -> None:
    # The prefix is cut to 52 characters; the hash then covers the whole endpoint name, so two objects
    # with the same containers do not fight over one model name (each would see the other's as foreign).
    first = _desired(endpointName="p" * 60 + "-a")
    second = _desired(endpointName="p" * 60 + "-b")
    assert naming.name_prefix(first.endpoint_name) == naming.name_prefix(second.endpoint_name)
    assert first.model_name != second.model_name
    assert first.config_name != second.config_name
    # ...and names that fit in the prefix keep the hash of the request alone (no rename on upgrade).
    short = _desired(endpointName="fraud-prod")
    assert short.model_name == naming.child_name(
        "fraud-prod", {k: v for k, v in short.model_request.items() if k != "ModelName"}
    )


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [
        ("ml", "fraud", "ml-fraud"),
        ("team.ml", "fraud.v2", "team-ml-fraud-v2"),
        ("default", "my_model", "default-my-model"),
    ],
)
def test_default_endpoint_name(namespace: str, name: str, expected: str) -> None:
    assert naming.default_endpoint_name(namespace, name) == expected


def test_default_endpoint_name_long_is_shortened_with_a_hash() -> None:
    namespace, name = "n" * 63, "a.very.long.dotted.name." + "x" * 200
    first = naming.default_endpoint_name(namespace, name)
    assert len(first) <= naming.MAX_NAME
    assert SAGEMAKER_NAME.fullmatch(first)
    assert first == naming.default_endpoint_name(namespace, name)
    # Two long names that differ only at the end still get different endpoints.
    assert first != naming.default_endpoint_name(namespace, name + "y")
    desired = core.desired_state(
        parse_spec(_spec()), core.Identity(namespace=namespace, name=name, uid="u", generation=1)
    )
    assert desired.endpoint_name == first
    assert len(desired.model_name) <= naming.MAX_NAME


def test_default_endpoint_name_never_ends_or_starts_with_a_hyphen() -> None:
    for namespace, name in [("ns", "x" * 53 + "." + "y" * 20), ("ns", "." * 3 + "a"), ("-", "-")]:
        result = naming.default_endpoint_name(namespace, name)
        assert SAGEMAKER_NAME.fullmatch(result), result


def test_ownership_tags_and_owner() -> None:
    tags = naming.ownership_tags("ml", "fraud", "uid-1")
    assert tags == {
        "sagemaker.mce.dev/namespace": "ml",
        "sagemaker.mce.dev/name": "fraud",
        "sagemaker.mce.dev/uid": "uid-1",
    }
    assert naming.names_owner(tags, "ml", "fraud", "uid-1")
    # Same namespace/name, new uid: a re-created object adopts what its predecessor retained, only if
    # it opts in (the same namespace/name may exist in another cluster sharing the AWS account).
    assert not naming.names_owner(tags, "ml", "fraud", "uid-2")
    assert naming.names_owner(tags, "ml", "fraud", "uid-2", adopt=True)
    assert not naming.names_owner(tags, "ml", "other", "uid-2", adopt=True)
    assert not naming.names_owner(tags, "prod", "fraud", "uid-2", adopt=True)
    assert not naming.names_owner({}, "ml", "fraud", "uid-1")
    assert not naming.names_owner({"team": "risk"}, "ml", "fraud", "uid-1")


def test_desired_tags_are_user_tags_plus_ownership() -> None:
    desired = _desired()
    assert desired.tags == {"team": "risk", **naming.ownership_tags("ml", "fraud", "uid-1")}
