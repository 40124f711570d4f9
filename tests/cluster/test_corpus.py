"""The corpus of tests/api sent to a real kube-apiserver, as kubectl sends it (fieldValidation=Strict).

Every invalid resource is refused with a message that names its field and rule, every valid one is
accepted and stored with the defaults the models use, and the transition rules hold on update. The offline
evaluator (``mce_operator.cli_tools.crd_eval``: ``kubectl mce validate`` and tests/api) is held to the real
thing: every message the apiserver gives, it gives word for word.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
import test_validation as corpus  # tests/api's cases (conftest puts tests/api on the path): one corpus
from crd_eval import CrdEvaluator

from mce_operator import api
from mce_operator.cli_tools.crd_eval import is_blocking
from mce_operator.testkit.client import KubeApiError, KubeClient
from mce_operator.testkit.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

NAMESPACE = "corpus"
STRICT = {"fieldValidation": "Strict"}  # what kubectl apply/create send by default since 1.27
# The apiserver's note when a blocking schema error kept it from running the CEL rules.
NOT_CHECKED = "some validation rules were not checked because the object was invalid"


@pytest.fixture(scope="module")
def client(plane: ControlPlane, crd_applied: str) -> Iterator[KubeClient]:
    client = plane.client()
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    yield client


@pytest.fixture(scope="module")
def evaluator() -> CrdEvaluator:
    return CrdEvaluator.from_file()


def _named(obj: dict[str, Any], name: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"] = {"name": name, "namespace": NAMESPACE}
    return obj


def _said(error: KubeApiError) -> tuple[list[str], bool]:
    """The apiserver's messages as ``field: message`` (the evaluator's shape), and whether it noted that
    the CEL rules were not run."""
    status = error.body
    if error.status == 400:  # strict decoding: one message listing the unknown fields; nothing else checked
        fields = re.findall(r'unknown field "([^"]+)"', status["message"])
        assert "strict decoding error" in status["message"] and fields, status
        return [f'{name}: unknown field "{name}"' for name in fields], False
    assert error.status == 422, status
    causes = [f"{c.get('field', '<nil>')}: {c['message']}" for c in status["details"]["causes"]]
    blocked = [c for c in causes if NOT_CHECKED in c]
    return [c for c in causes if c not in blocked], bool(blocked)


def _refused(client: KubeClient, obj: dict[str, Any]) -> KubeApiError:
    with pytest.raises(KubeApiError) as refused:
        client.create(obj, params=STRICT)
    return refused.value


def _agrees(evaluator_problems: list[Any], said: list[str], blocked: bool, status: int) -> None:
    offline = {str(problem) for problem in evaluator_problems}
    assert set(said) <= offline, f"the apiserver said {sorted(set(said) - offline)}; the evaluator did not"
    if status == 422:
        assert blocked == any(is_blocking(p) for p in evaluator_problems)


@pytest.mark.parametrize("case", corpus.INVALID, ids=lambda case: case.id)
def test_the_apiserver_refuses_each_invalid_resource_naming_the_field(
    client: KubeClient, evaluator: CrdEvaluator, case: corpus.Invalid
) -> None:
    obj = _named(corpus.resource(corpus.spec_with(case.changes)), f"invalid-{corpus.INVALID.index(case)}")
    refused = _refused(client, obj)
    said, blocked = _said(refused)
    assert corpus._one_message_has(said, case.crd), f"expected one message with {case.crd}, got {said}"
    _agrees(evaluator.create_problems(obj), said, blocked, refused.status)


@pytest.mark.parametrize("obj", corpus.VALID_RESOURCES)
def test_the_apiserver_accepts_each_valid_resource_with_the_models_defaults(
    client: KubeClient, evaluator: CrdEvaluator, obj: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    name = "valid-" + re.sub(r"[^a-z0-9]+", "-", request.node.callspec.id.lower()).strip("-")
    obj = _named(obj, name[:63].rstrip("-"))
    stored = client.create(obj, params=STRICT)
    assert evaluator.create(obj) == []
    # The apiserver's pruning and defaulting is the evaluator's, and means to the models what the user wrote.
    assert stored["spec"] == evaluator.prune_and_default(obj)["spec"]
    assert api.parse_spec(stored["spec"]) == api.parse_spec(obj["spec"])


def test_the_defaults_the_apiserver_stores_are_the_models_defaults(client: KubeClient) -> None:
    stored = client.create(_named(corpus.resource(corpus.base_spec()), "defaults"), params=STRICT)["spec"]
    added = {key: value for key, value in stored.items() if key not in corpus.base_spec()}
    model = api.parse_spec(corpus.base_spec()).model_dump(by_alias=True, mode="json")
    assert added == {key: model[key] for key in added}
    assert added == {
        "mode": "Serial",
        "initialInstanceCount": 1,
        "variantName": "AllTraffic",
        "enableNetworkIsolation": False,
        "deletionPolicy": "Delete",
    }


@pytest.mark.parametrize("case", corpus.UPDATES, ids=lambda case: case.id)
def test_the_transition_rules_hold_on_update(
    client: KubeClient, evaluator: CrdEvaluator, case: corpus.Update
) -> None:
    name = f"update-{corpus.UPDATES.index(case)}"
    old = _named(corpus.resource(corpus.spec_with(case.old)), name)
    stored = client.create(old, params=STRICT)
    new = copy.deepcopy(stored)
    for path, value in case.new.items():
        corpus._apply(new["spec"], path, value)
    if case.allowed:
        client.replace(new)  # a PUT with the stored resourceVersion, as kubectl replace sends
        assert evaluator.update(stored, new) == []
        return
    with pytest.raises(KubeApiError) as refused:
        client.replace(new)
    said, blocked = _said(refused.value)
    assert corpus._one_message_has(said, case.crd), f"expected one message with {case.crd}, got {said}"
    _agrees(evaluator.update_problems(stored, new), said, blocked, refused.value.status)


def test_every_cel_rule_fires_in_the_apiserver(client: KubeClient, evaluator: CrdEvaluator) -> None:
    """Each rule compiles in the real apiserver and some corpus case breaks it there."""
    said: list[str] = []
    for index, case in enumerate(corpus.INVALID):
        obj = _named(corpus.resource(corpus.spec_with(case.changes)), f"rule-{index}")
        said += _said(_refused(client, obj))[0]
    for index, case in enumerate(corpus.UPDATES):
        if case.allowed:
            continue
        stored = client.create(_named(corpus.resource(corpus.spec_with(case.old)), f"r-update-{index}"))
        for path, value in case.new.items():
            corpus._apply(stored["spec"], path, value)
        with pytest.raises(KubeApiError) as refused:
            client.replace(stored)
        said += _said(refused.value)[0]
    rules = corpus._all_rules(evaluator.schema)
    assert [rule["message"] for rule in rules if not any(rule["message"] in s for s in said)] == []
