"""The CRD on a real apiserver: accepted (structural schema, CEL compiled within its cost budget),
Established, explained by `kubectl explain`, and shown by `kubectl get mce` with its printer columns."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from conftest import CRD_NAME, ROOT, Kubectl

from mce_operator import api
from mce_operator.testkit.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


def _words(text: str) -> str:
    return " ".join(text.split())


def test_kubectl_apply_server_side_accepts_the_crd_and_it_becomes_established(
    kubectl: Kubectl, crd_applied: str
) -> None:
    expected = f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME} serverside-applied"
    assert crd_applied.strip() == expected
    crd = kubectl.json("get", "crd", CRD_NAME)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["NamesAccepted"] == "True" and conditions["Established"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == list(api.SHORT_NAMES)
    assert crd["status"]["acceptedNames"]["categories"] == list(api.CATEGORIES)


def _described(model: Any) -> dict[str, str]:
    return {info.alias or name: str(info.description) for name, info in model.model_fields.items()}


@pytest.mark.parametrize(
    "path,model",
    [("mce.spec", api.MultiContainerEndpointSpec), ("mce.spec.containers", api.Container)],
)
def test_kubectl_explain_prints_every_fields_description(
    kubectl: Kubectl, crd_applied: str, path: str, model: Any
) -> None:
    # The apiserver publishes the schema as OpenAPI v3; kubectl explain reads it from there.
    explained = _words(kubectl("explain", path).stdout)
    for field, description in _described(model).items():
        assert re.search(rf"\b{field}\s+<", explained), field
        assert _words(description) in explained, field


def test_kubectl_get_shows_the_printer_columns_from_status(
    plane: ControlPlane, kubectl: Kubectl, crd_applied: str, namespace: str
) -> None:
    manifest = yaml.safe_load((ROOT / "examples" / "direct.yaml").read_text())
    manifest["metadata"]["namespace"] = namespace
    kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    name = manifest["metadata"]["name"]
    # The status subresource, written as the operator does (merge patch on /status).
    status = {
        "containerCount": 2,
        "endpointStatus": "InService",
        "endpointName": "fraud-prod",
        "conditions": [{"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}],
    }
    plane.client().patch(api.PLURAL, namespace, name, {"status": status}, subresource="status")
    table = kubectl("get", "mce", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "MODE", "CONTAINERS", "STATUS", "READY", "ENDPOINT", "AGE"]
    assert table[1].split()[:6] == [name, "Direct", "2", "InService", "True", "fraud-prod"]
    assert re.fullmatch(r"\d+s", table[1].split()[6])
    # The category and the full names reach the same objects.
    assert kubectl("get", "sagemaker", "-n", namespace, "-o", "name").stdout.split() == [
        f"multicontainerendpoint.{api.GROUP}/{name}"
    ]
