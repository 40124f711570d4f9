"""Fixtures of the test kit's own tests: a small CRD of our own and a running in-memory API."""

from collections.abc import Iterator
from typing import Any

import pytest

from mce_operator.testkit import KubeServer

GROUP, VERSION, PLURAL = "testkit.mce.dev", "v1", "widgets"


def widget_crd(*, status_subresource: bool = True) -> dict[str, Any]:
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if status_subresource:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL,
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
                "categories": ["testkit"],
            },
            "versions": [version],
        },
    }


def widget(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {"size": 1},
    }


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    with KubeServer(crds=[widget_crd()]) as server:
        yield server
